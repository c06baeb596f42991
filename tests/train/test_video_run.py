"""Video mode end to end: real `python -m pkd train` runs of configs/tiny-video.yaml (Moving MNIST clips, a ViFi-CLIP
teacher trained in its two stages, Mamba students reading the frames in order), `pkd eval` reproducing them, the
reversal test, and SIGKILLs at the teacher's stage boundary and in the student stage followed by `--resume`."""

from __future__ import annotations

import json
import shutil
import signal

import pytest
import torch

from pkd.artifacts import load_ensemble, load_teacher
from pkd.config import ConfigError, load_config
from pkd.data import load_split
from pkd.data.moving_mnist import reverse_clips
from pkd.models.clip import ViFiCLIP
from pkd.runs import Run, RunError, State
from tests.built_once import built_once
from tests.pkd_process import ROOT, child_env, pkd, pkd_ok, start

TINY_VIDEO = str(ROOT / "configs" / "tiny-video.yaml")
ARGS = ("--no-progress", "--no-kernel-build")
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # tiny models: one thread is faster, far faster on a busy machine


def train_args(path) -> tuple[str, ...]:
    return ("train", "--config", TINY_VIDEO, "--run-dir", str(path), *ARGS)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The uninterrupted reference run and the run killed twice and resumed (see _train_both), made once per session:
    both xdist workers read them."""
    base = built_once(tmp_path_factory, "video", _train_both)
    return Run(base / "reference"), Run(base / "killed")


def _train_both(base) -> None:
    """The reference run (in the background) and a run killed twice and resumed (in the foreground): first while
    stage 2 of the teacher writes its first checkpoint (stage 1's last one stays), then, resumed, while student 1
    writes its checkpoint; the second resume finishes it."""
    reference = start(*train_args(base / "reference"), env=child_env(**ONE_THREAD))
    killed = base / "killed"
    first = pkd(*train_args(killed), env=child_env(PKD_FAULT="kill:checkpoint.pt:2", **ONE_THREAD))
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    status = Run(killed).status()
    assert status["stage"] == "teacher" and status["phase"] == "finetune"
    second = pkd("train", "--resume", str(killed), *ARGS, env=child_env(PKD_FAULT="kill:checkpoint.pt:2",
                                                                          **ONE_THREAD))
    assert second.returncode == -signal.SIGKILL, second.stderr[-2000:]
    assert Run(killed).status()["stage"] == "student" and Run(killed).has_teacher()
    pkd_ok("train", "--resume", str(killed), *ARGS, env=child_env(**ONE_THREAD))
    assert reference.wait(timeout=600) == 0


def test_a_video_run_is_an_ordinary_run(runs):
    run, _ = runs
    assert run.state() == State.DONE
    summary = run.summary()
    assert summary["dataset"] == "moving_mnist_small" and summary["teacher"]["arch"] == "vifi_clip"
    assert [r["k"] for r in run.prefix_table()] == [1, 2] and len(summary["anytime"]) > 3
    assert "anytime_auc" in summary and run.load_student(2)["prev_scale"] != 1.0
    video = summary["video"]
    assert video["n"] == 256 and video["teacher_reversal_change"] == 0.0  # ViFi-CLIP's mean is blind to order
    assert len(video["prefix_reversal_change"]) == len(video["prefix_digit_acc"]) == 2
    phases = [r.get("phase") for r in run.metrics() if r["event"] == "epoch" and r["stage"] == "teacher"]
    assert phases == ["pretrain", "finetune"]  # ViFi-CLIP's two stages, each an epoch of tiny-video.yaml
    assert run.status()["stage"] == "student" and run.status().get("phase") is None  # no teacher phase left over


def test_killed_at_the_teacher_stage_boundary_and_in_a_student_resumes_to_the_same_figures(runs):
    reference, killed = runs
    assert killed.state() == State.DONE
    assert killed.prefix_table() == reference.prefix_table()
    assert killed.summary()["video"] == reference.summary()["video"]
    for k in (1, 2):
        a, b = reference.load_student(k)["state_dict"], killed.load_student(k)["state_dict"]
        assert all(torch.equal(a[name], b[name]) for name in a)
    epochs = [(r["stage"], r.get("phase"), r["student"], r["epoch"]) for r in killed.metrics() if r["event"] == "epoch"]
    assert len(epochs) == len(set(epochs)) == 4  # every epoch logged once, none lost by the kills


def test_eval_reproduces_prefix_table_and_video_figures(runs, tmp_path):
    reference, _ = runs
    copy = tmp_path / "copy"
    shutil.copytree(reference.path, copy)
    before_rows, before = reference.prefix_table(), reference.summary()
    out = pkd_ok("eval", str(copy), env=child_env(**ONE_THREAD)).stdout
    after = Run(copy).summary()
    for old, new in zip(before_rows, Run(copy).prefix_table(), strict=True):
        for key in ("prefix_acc", "solo_acc", "prefix_val_acc", "cumulative_flops"):
            assert new[key] == pytest.approx(old[key], abs=1e-9), key
    assert after["video"] == before["video"]
    assert "reversal test (256 test clips" in out and "teacher 0.0000" in out and "digit identity" in out


def test_saved_teacher_reloads_strictly_and_ignores_time_order(runs):
    run, _ = runs
    teacher = load_teacher(run)
    assert isinstance(teacher, ViFiCLIP) and len(teacher.class_names) == 60
    spec = run.load_teacher()["spec"]
    assert spec["params"]["class_names"][0] == "0 moving left" and spec["params"]["image_size"] == 40
    test = load_split("moving_mnist_small", "test")
    data_spec = test.spec
    x = data_spec.normalize(test.inputs[:32])  # (32, T, 1, 40, 40)
    with torch.no_grad():
        assert torch.equal(teacher(x), teacher(reverse_clips(x)))  # bit for bit
        logits = teacher(data_spec.normalize(test.inputs[:256]))
    accuracy = float((logits.argmax(-1) == test.labels[:256]).double().mean())
    assert accuracy == pytest.approx(run.summary()["teacher"]["test_acc"], abs=1e-9)
    assert len(load_ensemble(run).students) == 2


def test_a_damaged_video_summary_is_one_line(runs, tmp_path):
    copy = tmp_path / "damaged"
    shutil.copytree(runs[0].path, copy)
    summary = json.loads((copy / "summary.json").read_text())
    for bad, field in (("x", "video is 'x'"), ({**summary["video"], "teacher_reversal_change": 2},
                                                 "video.teacher_reversal_change"),
                       ({**summary["video"], "prefix_digit_acc": [0.5, "a"]}, "video.prefix_digit_acc[1]")):
        (copy / "summary.json").write_text(json.dumps({**summary, "video": bad}))
        with pytest.raises(RunError, match=field.replace("[", r"\[")) as info:
            Run(copy).summary()
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("overrides, field", [
    (["teacher.pretrain.epochs=2"], "teacher.pretrain.epochs"),  # an image teacher has no image-text stage
    (["teacher.pretrain.lr=0"], "teacher.pretrain.lr"),
    (["teacher.pretrain.batch_size=0"], "teacher.pretrain.batch_size"),
])
def test_bad_pretrain_settings_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field):
        load_config(ROOT / "configs" / "tiny.yaml", overrides)


def test_teacher_checkpoint_loads_a_video_teacher_and_its_logits_cache(runs, tmp_path):
    """teacher.checkpoint with vifi_clip: another run's teacher.pt (its logits cache is read, the figures are the
    same) and a user's bare open_clip state dict as safetensors (load_clip_weights), which gives the same logits."""
    from safetensors.torch import save_file

    from pkd.models import build_model
    from pkd.models.clip import load_clip_weights

    reference = runs[0]
    path = tmp_path / "from-teacher"
    pkd_ok(*train_args(path), f"teacher.checkpoint={reference.teacher_path()}", "teacher.pretrain.epochs=0",
           env=child_env(**ONE_THREAD))
    run = Run(path)
    assert run.summary()["teacher"] == reference.summary()["teacher"]
    assert run.summary()["video"]["teacher_digit_acc"] == reference.summary()["video"]["teacher_digit_acc"]
    assert "teacher logits read from" in (path / "train.log").read_text()
    teacher = load_teacher(reference)
    weights = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in teacher.clip.state_dict().items()}, str(weights))
    fresh = build_model(reference.load_teacher()["spec"]).eval()
    load_clip_weights(fresh, weights)
    test = load_split("moving_mnist_small", "test")
    x = test.spec.normalize(test.inputs[:16])  # (16, T, 1, 40, 40)
    with torch.no_grad():
        assert torch.equal(fresh(x), teacher(x))


def test_a_video_teacher_on_images_stops_before_training(tmp_path):
    proc = pkd("train", "--config", TINY_VIDEO, "--run-dir", str(tmp_path / "r"), "data.dataset=mnist")
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and "teacher.arch: vifi_clip" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_distilling_group_sums_needs_a_dataset_with_groups(tmp_path):
    proc = pkd("train", "--config", str(ROOT / "configs" / "tiny.yaml"), "--run-dir", str(tmp_path / "r"),
               "distill.soft_target=groups", *ARGS)
    assert proc.returncode == 2 and proc.stderr.startswith("error:"), proc.stderr[-2000:]
    assert "distill.soft_target: groups needs a dataset with class groups" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_students_can_distil_only_the_teachers_digit_sums(runs, tmp_path):
    """distill.soft_target=groups: the KL term sees the teacher's probabilities summed per digit (class_groups), a
    coarser target than its 60 classes, so with the same students and teacher the soft loss is lower from the
    first epoch on; the run is otherwise ordinary and `pkd eval` reproduces it."""
    reference = runs[0]
    common = (f"teacher.checkpoint={reference.teacher_path()}", "teacher.pretrain.epochs=0", "distill.alpha=0")

    def first_soft(run: Run) -> float:
        return next(r["train_soft"] for r in run.metrics() if r["event"] == "epoch" and r["student"] == 1)

    paths = {target: tmp_path / target for target in ("classes", "groups")}
    for target, path in paths.items():
        pkd_ok(*train_args(path), *common, f"distill.soft_target={target}", env=child_env(**ONE_THREAD))
    by_class, by_digit = Run(paths["classes"]), Run(paths["groups"])
    assert by_digit.config()["distill"]["soft_target"] == "groups"
    assert first_soft(by_digit) < first_soft(by_class)
    before = by_digit.prefix_table()
    pkd_ok("eval", str(paths["groups"]))
    assert [r["prefix_acc"] for r in by_digit.prefix_table()] == pytest.approx([r["prefix_acc"] for r in before])
