"""The shipped run: re-evaluating its saved weights reproduces its table, and docs/results/ quotes that table."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pkd.runs import Run
from pkd.runs.schema import TeacherRef
from tests.pkd_process import child_env

ROOT = Path(__file__).resolve().parents[1]
# one member of each image seed group; the video groups' members (37 s of CPU an eval) were checked by hand with this
# test (moving-mnist-seeds/seed-3, moving-mnist-independent-seeds/seed-1: passed, 8 December 2026), kept out of the
# suite's time; tests/test_shipped_groups.py checks their records against the docs
RUNS = ["mnist", "mnist-independent", "moving-mnist", "moving-mnist-digits", "fashion-mnist/seed-0",
        "fashion-mnist-independent/seed-0", "mnist-seeds/seed-1", "mnist-independent-seeds/seed-2"]


@pytest.mark.parametrize("name", RUNS)
def test_eval_reproduces_shipped_table(tmp_path, name):
    shipped = Run(ROOT / "pretrained" / name)
    assert shipped.state() == "done"
    copy = tmp_path / name  # eval rewrites prefix.csv: never touch the committed run
    shutil.copytree(shipped.path, copy)
    ref = shipped.teacher_reference()
    if ref:  # a run sharing a shipped teacher: put a copy where its relative path leads from the copy
        target = (copy / ref[TeacherRef.PATH]).resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shipped.teacher_path(), target)
    # one thread: the suite runs two test processes on two cores (two threads each: 2-3x slower on such a machine)
    subprocess.run([sys.executable, "-m", "pkd", "eval", str(copy)], cwd=ROOT, check=True, capture_output=True,
                   env=child_env(OMP_NUM_THREADS="1"), timeout=600)
    for old, new in zip(shipped.prefix_table(), Run(copy).prefix_table(), strict=True):
        for key in ("prefix_acc", "solo_acc", "prefix_val_acc", "cumulative_flops", "share_of_teacher", "prev_scale"):
            # one test image is 1e-4; the run logged float32 accuracies, eval exact fractions
            assert new[key] == pytest.approx(old[key], abs=1e-6), (name, old["k"], key)
    old, new = shipped.summary(), Run(copy).summary()
    assert new.get("drawn") == old.get("drawn")
    assert new.get("photos") == old.get("photos")  # the re-photographed set (Fashion-MNIST runs)
    assert_same_curve(new["anytime"], old["anytime"], name)
    assert new.get("video") == old.get("video")  # reversal test, digit identity (video runs)
    assert_same_curve(new["anytime_val_fitted"], old["anytime_val_fitted"], name)
    # the teacher's accuracies within one clip of 2,000: float rounding in the CLIP towers' kernels differs between
    # CPUs (seen: the shipped video teacher's val accuracy 0.3315 re-measured 0.3310 on one machine, 0.3315 on another)
    assert {**new["teacher"], "val_acc": 0, "test_acc": 0} == {**old["teacher"], "val_acc": 0, "test_acc": 0}
    for key in ("val_acc", "test_acc"):
        assert new["teacher"][key] == pytest.approx(old["teacher"][key], abs=5.1e-4), (name, key)


def assert_same_curve(new: list[dict], old: list[dict], name: str) -> None:
    """An early-exit curve re-measured on this CPU matches the shipped one. The val-fitted thresholds are float32
    probabilities, some near 1 (0.99999...), that differ in the 7th digit between CPUs (one threshold: 0.29944566
    shipped, 0.29944548 on the CI machine, 0.29944554 on a development one); a sample at a threshold then exits one
    student earlier or later, moving a point's mean FLOPs by up to 0.35% and its accuracy by a few samples."""
    assert len(new) == len(old), name
    for a, b in zip(new, old):
        assert a.keys() == b.keys(), name
        assert (a["confidence"] is None) == (b["confidence"] is None), (name, b)
        if b["confidence"] is not None:
            assert a["confidence"] == pytest.approx(b["confidence"], abs=1e-5), (name, b)
        for key in {"budget", "mean_flops", "val_mean_flops"} & b.keys():
            assert a[key] == pytest.approx(b[key], rel=1e-2), (name, key, b)
        for key in {"acc", "val_acc"} & b.keys():  # 25 of 10,000 test images, 5 of 2,000 test clips
            assert a[key] == pytest.approx(b[key], abs=2.5e-3), (name, key, b)


def test_readme_quotes_the_shipped_figures():
    readme = (ROOT / "docs" / "results" / "mnist.md").read_text()  # the README links its full tables there
    run = Run(ROOT / "pretrained" / "mnist")
    teacher = run.summary()["teacher"]
    assert f"{teacher['flops']:,}" in readme and f"{100 * teacher['test_acc']:.2f}%" in readme
    for row in run.prefix_table():
        for figure in (f"{row['student_flops']:,}", f"{row['cumulative_flops']:,}",
                       f"{100 * row['share_of_teacher']:.2f}%", f"{100 * row['prefix_acc']:.2f}%"):
            assert figure in readme, figure
    independent = Run(ROOT / "pretrained" / "mnist-independent").prefix_table()
    assert " / ".join(f"{100 * r['prefix_acc']:.2f}%" for r in independent) in readme


def test_shipped_run_meets_the_headline_targets():
    """Issue 15's targets for the shipped run: K >= 5, each prefix above the one before; student 1 >= 97% at <= 1%
    of the teacher's FLOPs; all students at least the teacher's accuracy at <= 25%; early exit fitted on val
    >= 99.2% at <= 3% on average; on the drawn digits student 1 within 5 points of its test accuracy and all
    students within 1 point of the teacher. The independent baseline has the same students' costs; residual is
    above it with all students and in early exit at <= 3% (at k = 2..4 the margin is thin and changes with the
    teacher: see the README)."""
    run = Run(ROOT / "pretrained" / "mnist")
    rows, summary = run.prefix_table(), run.summary()
    teacher = summary["teacher"]
    assert len(rows) >= 5 and all(b["prefix_acc"] > a["prefix_acc"] for a, b in zip(rows, rows[1:]))
    assert rows[0]["share_of_teacher"] <= 0.01 and rows[0]["prefix_acc"] >= 0.97
    assert rows[-1]["share_of_teacher"] <= 0.25 and rows[-1]["prefix_acc"] >= teacher["test_acc"]
    assert any(p["acc"] >= 0.992 and p["mean_flops"] <= 0.03 * teacher["flops"]
               for p in summary["anytime_val_fitted"])
    drawn = summary["drawn"]
    assert drawn["prefix_acc"][0] >= rows[0]["prefix_acc"] - 0.05
    assert drawn["prefix_acc"][-1] >= drawn["teacher_acc"] - 0.01
    independent_run = Run(ROOT / "pretrained" / "mnist-independent")
    independent = independent_run.prefix_table()
    assert len(independent) == len(rows)
    assert [r["cumulative_flops"] for r in independent] == [r["cumulative_flops"] for r in rows]
    assert rows[-1]["prefix_acc"] > independent[-1]["prefix_acc"]

    def early_exit_at_3_percent(summary: dict) -> float:
        return max(p["acc"] for p in summary["anytime_val_fitted"] if p["mean_flops"] <= 0.03 * teacher["flops"])
    assert early_exit_at_3_percent(summary) > early_exit_at_3_percent(independent_run.summary())


def test_shipped_video_run_meets_its_targets():
    """Issue 11's targets as far as pretrained/moving-mnist meets them (the issue note lists the misses): three
    students at <= 25% of the ViFi teacher's FLOPs, each prefix above the one before; the teacher exactly blind to
    time order (reversal change 0) while every prefix changes its answer on >= 90% of reversed clips; the ensemble
    >= 30 points above the teacher on the 60 digit-and-motion classes; the teacher's digit identity >= 97%. The
    independent baseline shares the teacher file (by reference) and the students' costs. (Residual above
    independent, a target, is missed on clips: see the README.)"""
    run = Run(ROOT / "pretrained" / "moving-mnist")
    rows, summary = run.prefix_table(), run.summary()
    teacher, video = summary["teacher"], summary["video"]
    assert run.state() == "done" and teacher["arch"] == "vifi_clip" and video["n"] == 2000
    assert len(rows) == 3 and all(b["prefix_acc"] > a["prefix_acc"] for a, b in zip(rows, rows[1:]))
    assert rows[-1]["share_of_teacher"] <= 0.25
    assert video["teacher_reversal_change"] == 0.0 and min(video["prefix_reversal_change"]) >= 0.9
    assert rows[-1]["prefix_acc"] >= teacher["test_acc"] + 0.30 and video["teacher_digit_acc"] >= 0.97
    independent = Run(ROOT / "pretrained" / "moving-mnist-independent")
    assert independent.state() == "done" and not (independent.path / "teacher.pt").exists()
    assert independent.teacher_path().resolve() == (run.path / "teacher.pt").resolve()  # shared, not copied
    assert [r["cumulative_flops"] for r in independent.prefix_table()] == [r["cumulative_flops"] for r in rows]


def test_shipped_digits_run_beats_the_teacher_on_its_digits():
    """pretrained/moving-mnist-digits (the shipped teacher by reference, students on 50,000 clips): the three
    students at <= 25% of the teacher's FLOPs are at least as right as the teacher on the digit of every test clip,
    >= 30 points above it on the 60 digit-and-motion classes, and change their answer on >= 90% of reversed clips
    where the teacher changes none; docs/results/video.md quotes its table."""
    video_run = Run(ROOT / "pretrained" / "moving-mnist")
    run = Run(ROOT / "pretrained" / "moving-mnist-digits")
    assert run.state() == "done" and not (run.path / "teacher.pt").exists()
    assert run.teacher_path().resolve() == (video_run.path / "teacher.pt").resolve()  # shared, not copied
    rows, summary = run.prefix_table(), run.summary()
    teacher, video = summary["teacher"], summary["video"]
    shared = video_run.summary()["teacher"]  # the same teacher: its accuracies within one clip across CPUs
    assert {k: teacher[k] for k in ("arch", "flops", "params")} == {k: shared[k] for k in ("arch", "flops", "params")}
    assert teacher["test_acc"] == pytest.approx(shared["test_acc"], abs=5.1e-4) and video["n"] == 2000
    assert rows[-1]["share_of_teacher"] <= 0.25 and video["prefix_digit_acc"][-1] >= video["teacher_digit_acc"]
    assert rows[-1]["prefix_acc"] >= teacher["test_acc"] + 0.30
    assert video["teacher_reversal_change"] == 0.0 and min(video["prefix_reversal_change"]) >= 0.9
    readme = (ROOT / "docs" / "results" / "video.md").read_text().replace("**", "")  # the table's bold figures
    for row, digit in zip(rows, video["prefix_digit_acc"], strict=True):
        line = (f"| {row['cumulative_flops']:,} | {100 * row['share_of_teacher']:.2f}% "
                f"| {100 * row['prefix_acc']:.2f}% | {100 * digit:.2f}% |")
        assert line in readme, line
