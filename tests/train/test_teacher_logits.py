"""The teacher-logits cache: a run distilling another run's teacher reads that run's logits instead of recomputing
them, with figures identical to computing them; a cache made otherwise, or damaged or hostile, is never used."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from pkd.runs import Run, read_teacher_logits, save_tensors, teacher_logits_beside
from tests.pkd_process import train_tiny

READ = "teacher logits read from"


def test_a_run_reuses_the_teachers_logits_with_identical_results(tiny_run, tmp_path: Path) -> None:
    source = Path(tiny_run.path)
    assert read_teacher_logits(teacher_logits_beside(source / "teacher.pt"), _key_of(source)) is not None
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(source / "teacher.pt", alone / "teacher.pt")  # the same teacher with no cache beside it
    cached = train_tiny(tmp_path / "cached", f"teacher.checkpoint={source / 'teacher.pt'}", "teacher.optim.epochs=0")
    computed = train_tiny(tmp_path / "computed", f"teacher.checkpoint={alone / 'teacher.pt'}",
                          "teacher.optim.epochs=0")
    assert READ in (cached / "train.log").read_text()
    assert READ not in (computed / "train.log").read_text()
    assert (cached / "prefix.csv").read_text() == (computed / "prefix.csv").read_text()
    assert not (cached / "teacher_logits.pt").exists()  # read from the teacher's run, not copied
    assert (computed / "teacher_logits.pt").is_file()
    assert not (alone / "teacher_logits.pt").exists()  # nothing written beside the user's file


def _key_of(run_dir: Path) -> dict:
    return torch.load(run_dir / "teacher_logits.pt", weights_only=True)["key"]


KEY = {"teacher": "ab" * 32, "device": "cpu", "precision": "float32",
       "splits": {"train": {"n": 3, "sha256": "cd" * 32}, "val": {"n": 2, "sha256": "ef" * 32}}}


def _write(path: Path, key: dict, logits: dict) -> Path:
    save_tensors(path, {"key": key, "logits": logits})
    return path


def test_a_matching_cache_is_read(tmp_path: Path) -> None:
    logits = {"train": torch.randn(3, 10), "val": torch.randn(2, 10)}
    got = read_teacher_logits(_write(tmp_path / "c.pt", KEY, logits), KEY)
    assert got is not None and torch.equal(got["train"], logits["train"]) and torch.equal(got["val"], logits["val"])


@pytest.mark.parametrize("change", ["teacher", "device", "precision", "split data", "split size"])
def test_a_cache_made_otherwise_is_ignored(tmp_path: Path, change: str) -> None:
    logits = {"train": torch.randn(3, 10), "val": torch.randn(2, 10)}
    other = {**KEY, "splits": {**KEY["splits"]}}
    if change == "teacher":
        other["teacher"] = "00" * 32
    elif change in ("device", "precision"):
        other[change] = "cuda" if change == "device" else "bfloat16"
    elif change == "split data":
        other["splits"]["train"] = {"n": 3, "sha256": "11" * 32}
    else:
        other["splits"]["val"] = {"n": 5, "sha256": "ef" * 32}
    assert read_teacher_logits(_write(tmp_path / "c.pt", KEY, logits), other) is None


@pytest.mark.parametrize("logits", [
    {"train": torch.randn(3, 10)},  # a split missing
    {"train": torch.randn(4, 10), "val": torch.randn(2, 10)},  # wrong row count
    {"train": torch.randn(3, 10).double(), "val": torch.randn(2, 10)},  # wrong dtype
    {"train": torch.full((3, 10), float("nan")), "val": torch.randn(2, 10)},  # not finite
    {"train": "text", "val": torch.randn(2, 10)},
])
def test_a_damaged_cache_is_ignored(tmp_path: Path, logits: dict) -> None:
    assert read_teacher_logits(_write(tmp_path / "c.pt", KEY, logits), KEY) is None


def test_a_hostile_or_truncated_cache_is_ignored_without_running_it(tmp_path: Path) -> None:
    import pickle

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    hostile = tmp_path / "hostile.pt"
    hostile.write_bytes(pickle.dumps({"key": KEY, "logits": Evil()}))
    assert read_teacher_logits(hostile, KEY) is None and not marker.exists()
    good = _write(tmp_path / "good.pt", KEY, {"train": torch.randn(3, 10), "val": torch.randn(2, 10)})
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:100])
    assert read_teacher_logits(tmp_path / "cut.pt", KEY) is None
    assert read_teacher_logits(tmp_path / "missing.pt", KEY) is None
