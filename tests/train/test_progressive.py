"""Progressive training end to end: real `python -m pkd train` runs of configs/tiny.yaml (conftest's tiny_run)."""

import math
import signal
import time

import pytest
import torch

from pkd.config import DistillConfig
from pkd.runs import Run, State
from pkd.train.losses import kd_loss
from pkd.train.progressive import StudentObjective
from tests.pkd_process import TINY, pkd, pkd_ok, start


def test_tiny_run_end_to_end(tiny_run):
    run = tiny_run
    assert run.state() == State.DONE
    rows = run.prefix_table()
    assert [r["k"] for r in rows] == [1, 2]
    assert rows[1]["cumulative_flops"] == rows[0]["student_flops"] + rows[1]["student_flops"]
    summary = run.summary()
    t_flops = summary["teacher"]["flops"]
    assert math.isclose(rows[1]["share_of_teacher"], rows[1]["cumulative_flops"] / t_flops, rel_tol=1e-9)
    assert summary["teacher"]["test_acc"] > 0.5  # one epoch on 1k digits is already far above chance
    assert rows[-1]["prefix_acc"] > 0.2
    assert len(summary["anytime"]) > 3
    events = [r["event"] for r in run.metrics()]
    assert events.count("student_done") == 2 and "teacher_done" in events
    for name in ("manifest.json", "config.yaml", "teacher.pt", "train.log", "students/student_01.pt",
                 "students/student_02.pt"):
        assert (run.path / name).is_file(), name
    assert not (run.path / "checkpoint.pt").exists()
    manifest = run.manifest()
    assert manifest["seed"] == 0 and "torch" in manifest["versions"]
    # tiny.yaml learns s_k (distill.learn_prev_scale): student 1 has nothing before it, student 2 learned a scale
    scales = [run.load_student(k)["prev_scale"] for k in (1, 2)]
    assert scales[0] == 1.0 and scales[1] != 1.0 and 0.0 < scales[1] < 2.0
    assert [r["prev_scale"] for r in rows] == pytest.approx(scales)


def test_augmented_students_learn_on_the_scaled_frozen_ensemble(tmp_path):
    """students.optim.augment: targets and the frozen students' scaled sum are computed per shifted batch; the run
    finishes, student 2 learns its scale, and `pkd eval` reproduces what training reported."""
    path = tmp_path / "augmented"
    pkd_ok("train", "--config", TINY, "--run-dir", str(path), "--no-progress", "students.optim.augment=true",
        "students.optim.epochs=1", "data.train_limit=256")
    run = Run(path)
    assert run.state() == State.DONE and run.load_student(2)["prev_scale"] != 1.0
    before = run.prefix_table()
    pkd_ok("eval", str(path))
    for old, new in zip(before, run.prefix_table(), strict=True):
        assert new["prefix_acc"] == pytest.approx(old["prefix_acc"], abs=1e-6)


def test_plain_residual_sums_logits(tmp_path):
    """distill.learn_prev_scale=false is B-DISTIL's plain sum: every saved scale is exactly 1."""
    path = tmp_path / "plain"
    pkd_ok("train", "--config", TINY, "--run-dir", str(path), "--no-progress", "distill.learn_prev_scale=false",
        "students.optim.epochs=1", "data.train_limit=256")
    run = Run(path)
    assert [run.load_student(k)["prev_scale"] for k in (1, 2)] == [1.0, 1.0]
    assert [r["prev_scale"] for r in run.prefix_table()] == [1.0, 1.0]


def test_solo_weight_blends_the_ensembles_loss_with_the_students_own():
    """distill.solo_weight w: residual student k's loss is (1 - w) * L(s_k * F_(k-1) + z_k) + w * L(z_k); student 1
    (nothing before it) keeps the plain loss."""
    torch.manual_seed(0)
    z, t, prev = torch.randn(8, 6), torch.randn(8, 6), torch.randn(8, 6) * 2  # (B, C) student, teacher, F_(k-1)
    labels, idx, scale = torch.randint(0, 6, (8,)), torch.arange(8), torch.tensor(0.7)
    distill = DistillConfig(alpha=0.4, temperature=3.0, solo_weight=0.25)

    def loss(logits):
        return kd_loss(logits, t, labels, 0.4, 3.0)["loss"]

    def objective(prev_logits):
        return StudentObjective(distill, labels, None, t, prev_logits, [], scale, None)(z, idx, None)

    blended = objective(prev)
    assert torch.allclose(blended["loss"], 0.75 * loss(scale * prev + z) + 0.25 * loss(z))
    assert torch.allclose(blended["solo"], loss(z))
    assert torch.allclose(objective(None)["loss"], loss(z)) and "solo" not in objective(None)
    plain = StudentObjective(DistillConfig(alpha=0.4, temperature=3.0), labels, None, t, prev, [], scale, None)
    assert torch.allclose(plain(z, idx, None)["loss"], loss(scale * prev + z))


def test_prefix_loss_mean_reads_the_prefix_at_one_students_temperature():
    """distill.prefix_loss: mean: residual student k's ensemble term is L(F_k / k), F_k = s_k * F_(k-1) + z_k; its
    solo term and student 1's loss are unchanged."""
    torch.manual_seed(0)
    z, t, prev = torch.randn(8, 6), torch.randn(8, 6), torch.randn(8, 6) * 2  # (B, C) student, teacher, F_(k-1)
    labels, idx, scale = torch.randint(0, 6, (8,)), torch.arange(8), torch.tensor(0.7)
    distill = DistillConfig(alpha=0.4, temperature=3.0, solo_weight=0.25, prefix_loss="mean")

    def loss(logits):
        return kd_loss(logits, t, labels, 0.4, 3.0)["loss"]

    third = StudentObjective(distill, labels, None, t, prev, [], scale, None, k=3)(z, idx, None)
    assert torch.allclose(third["loss"], 0.75 * loss((scale * prev + z) / 3) + 0.25 * loss(z))
    first = StudentObjective(distill, labels, None, t, None, [], scale, None, k=1)(z, idx, None)
    assert torch.allclose(first["loss"], loss(z))


def test_solo_weight_and_prefix_loss_reach_real_runs(tmp_path):
    """Real runs: the solo loss is logged for residual students only, and prefix_loss=mean changes student 2's
    training (not student 1's, which has no prefix before it)."""
    epochs = {}
    for prefix_loss in ("sum", "mean"):
        path = tmp_path / prefix_loss
        pkd_ok("train", "--config", TINY, "--run-dir", str(path), "--no-progress", "distill.solo_weight=0.5",
            f"distill.prefix_loss={prefix_loss}", "students.optim.epochs=1", "data.train_limit=256")
        epochs[prefix_loss] = {r["student"]: r for r in Run(path).metrics()
                               if r["event"] == "epoch" and r["stage"] == "student"}
        assert "train_solo" not in epochs[prefix_loss][1] and 0 < epochs[prefix_loss][2]["train_solo"] < 10
    assert epochs["sum"][1]["train_loss"] == epochs["mean"][1]["train_loss"]
    assert epochs["sum"][2]["train_hard"] != pytest.approx(epochs["mean"][2]["train_hard"], rel=1e-3)


@pytest.mark.parametrize("overrides, field", [
    (["students.common={tokens: patch, patch: 5}"], "patch"),
    (["students.schedule=[{d_model: 0}]"], "d_model"),
    (["teacher.checkpoint=/nonexistent/teacher.pt"], "teacher.checkpoint"),
    (["students.schedule=[{widht: 3}]"], "widht"),
    (["distill.alpha=2"], "distill.alpha"),
])
def test_bad_configs_stop_before_training(tmp_path, overrides, field):
    proc = pkd("train", "--config", TINY, "--run-dir", str(tmp_path / "r"), *overrides)
    assert proc.returncode == 2, proc.stderr
    assert field in proc.stderr and proc.stderr.startswith("error:")
    assert not (tmp_path / "r").exists()  # nothing was created


def test_cuda_without_gpu_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = pkd("train", "--config", TINY, "--run-dir", str(tmp_path / "r"), "--device", "cuda")
    assert proc.returncode == 2 and "no CUDA GPU" in proc.stderr and not (tmp_path / "r").exists()


def test_resume_after_kill_matches_uninterrupted(tiny_run, tmp_path):
    """SIGKILL in the middle of student 2, resume: the final accuracies equal the uninterrupted run's."""
    path = tmp_path / "killed"
    proc = start("train", "--config", TINY, "--run-dir", str(path), "--no-progress")
    run = Run(path)
    deadline = time.time() + 300
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        status = run.status(raw=True) if (path / "status.json").exists() else {}
        if status.get("stage") == "student" and status.get("student") == 2 and status.get("epoch", 0) >= 1:
            proc.send_signal(signal.SIGKILL)
            killed_at = dict(status)
            break
        time.sleep(0.005)
    proc.wait()
    assert killed_at is not None, "the run finished before it could be killed; make tiny.yaml slower"
    assert run.state() == State.DIED  # a killed run never reads as running
    assert run.students_saved() == 1
    pkd_ok("train", "--resume", str(path), "--no-progress")
    assert run.state() == State.DONE
    expected = tiny_run.prefix_table()
    got = run.prefix_table()
    assert [r["prefix_acc"] for r in got] == [r["prefix_acc"] for r in expected]
    assert [r["solo_acc"] for r in got] == [r["solo_acc"] for r in expected]
    epochs = [r for r in run.metrics() if r["event"] == "epoch" and r["stage"] == "student" and r["student"] == 2]
    assert len(epochs) == 2  # epoch 1 from before the kill, epoch 2 after resume: nothing repeated or lost
