"""Distillation engine: the loss, re-weighting, anytime ensembles, and real subprocess runs of configs/tiny.yaml."""

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from pkd.distill import boost_weights, kd_loss
from pkd.models.ensemble import Ensemble
from pkd.runs import Run

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.yaml")


def pkd(*args, check=True, timeout=600):
    """Run `python -m pkd ARGS` in a real subprocess from the repo root."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "pkd", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"pkd {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


# ----------------------------------------------------------------------------------------------- loss

def test_kd_loss_formula():
    torch.manual_seed(0)
    s, t = torch.randn(6, 10), torch.randn(6, 10)
    y = torch.randint(0, 10, (6,))
    T, alpha = 3.0, 0.25
    out = kd_loss(s, t, y, alpha, T)
    ce = F.cross_entropy(s, y)
    kl = F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), log_target=True, reduction="batchmean") * T * T
    assert torch.allclose(out["hard"], ce) and torch.allclose(out["soft"], kl, atol=1e-6)
    assert torch.allclose(out["loss"], alpha * ce + (1 - alpha) * kl)
    assert kd_loss(t, t, y, 0.0, T)["loss"].abs() < 1e-6  # matching the teacher costs nothing
    w = torch.tensor([2.0, 0, 0, 0, 0, 0])
    weighted = kd_loss(s, t, y, 1.0, T, weights=w)["loss"]
    assert torch.allclose(weighted, 2 * F.cross_entropy(s[:1], y[:1]) / 6)


def test_boost_weights_favour_mistakes():
    log_probs = torch.log(torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.5, 0.5]]))
    w = boost_weights(log_probs, torch.tensor([0, 0, 0]), beta=1.0)
    assert math.isclose(float(w.mean()), 1.0, rel_tol=1e-6)
    assert w[1] > w[2] > w[0]
    assert torch.allclose(boost_weights(log_probs, torch.tensor([0, 0, 0]), beta=0.0), torch.ones(3))


# ----------------------------------------------------------------------------------------------- ensemble

class Fixed(nn.Module):
    """A 'student' that returns fixed logits per sample (to check the ensemble's arithmetic)."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits, dtype=torch.float32))
        self.calls = 0

    def forward(self, x):
        self.calls += len(x)
        return self.logits[x[:, 0, 0, 0].long()]


def make_ensemble(mode="residual"):
    a = Fixed([[4.0, 0.0], [0.0, 0.1]])  # sample 0: confident class 0; sample 1: unsure
    b = Fixed([[0.0, 0.0], [0.0, 4.0]])
    return Ensemble([a, b], mode=mode, student_flops=[10, 100])


def test_ensemble_prefixes_and_modes():
    x = torch.arange(2.0).view(2, 1, 1, 1)
    res = make_ensemble("residual")
    lp = res.forward_prefix(x, 2)
    assert torch.allclose(lp, torch.log_softmax(torch.tensor([[4.0, 0.0], [0.0, 4.1]]), -1))
    ind = make_ensemble("independent")
    probs = (torch.softmax(torch.tensor([[4.0, 0.0], [0.0, 0.1]]), -1) + torch.softmax(torch.zeros(2, 2), -1)) / 2
    probs[1] = (torch.softmax(torch.tensor([0.0, 0.1]), -1) + torch.softmax(torch.tensor([0.0, 4.0]), -1)) / 2
    assert torch.allclose(ind.forward_prefix(x, 2).exp(), probs, atol=1e-6)
    assert res.cumulative_flops() == [10, 110]
    with pytest.raises(ValueError, match="out of range"):
        res.forward_prefix(x, 3)
    with pytest.raises(ValueError, match="mode"):
        Ensemble([nn.Identity()], mode="boost")


def test_anytime_predict():
    x = torch.arange(2.0).view(2, 1, 1, 1)
    ens = make_ensemble()
    p = ens.predict(x, k=1)
    assert p.k_used.tolist() == [1, 1] and p.flops.tolist() == [10, 10]
    p = ens.predict(x, flop_budget=50)
    assert p.k_used.tolist() == [1, 1]
    p = ens.predict(x, flop_budget=1000)
    assert p.k_used.tolist() == [2, 2] and p.classes.tolist() == [0, 1]
    with pytest.raises(ValueError, match="budget"):
        ens.predict(x, flop_budget=5)
    ens = make_ensemble()
    p = ens.predict(x, confidence=0.9)
    assert p.k_used.tolist() == [1, 2] and p.flops.tolist() == [10, 110]  # confident sample 0 stops early
    assert ens.students[1].calls == 1  # the second student only saw the unsure sample
    assert p.classes.tolist() == [0, 1]
    with pytest.raises(ValueError):
        ens.predict(x, confidence=1.5)


def test_learned_prev_scale_rescales_the_ensemble_before_each_student():
    """E_k = s_k * E_(k-1) + z_k: in every prefix, in predict (also with early exit) and nowhere in independent."""
    x = torch.arange(2.0).view(2, 1, 1, 1)
    a, b = make_ensemble().students
    ens = Ensemble([a, b], mode="residual", student_flops=[10, 100], prev_scales=[1.0, 0.25])
    expected = torch.log_softmax(0.25 * a.logits + b.logits, -1)  # rows are samples 0 and 1
    first, second = ens.all_prefixes(x)
    assert torch.allclose(first, torch.log_softmax(a.logits, -1)) and torch.allclose(second, expected)
    assert torch.allclose(ens.predict(x, k=2).probs, expected.exp())
    p = ens.predict(x, confidence=0.9)  # sample 0 stops at k=1, sample 1 goes on with the scaled sum
    assert p.k_used.tolist() == [1, 2] and torch.allclose(p.probs[1], expected[1].exp())
    assert torch.allclose(make_ensemble().forward_prefix(x, 2),
                          Ensemble([a, b], student_flops=[10, 100], prev_scales=[1.0, 1.0]).forward_prefix(x, 2))
    for bad in ([1.0], [1.0, float("nan")]):
        with pytest.raises(ValueError, match="prev_scales"):
            Ensemble([a, b], prev_scales=bad)
    with pytest.raises(ValueError, match="residual"):
        Ensemble([a, b], mode="independent", prev_scales=[1.0, 0.5])


# ----------------------------------------------------------------------------------------------- real runs

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "tiny"
    pkd("train", "--config", TINY, "--run-dir", str(path), "--no-progress")
    return Run(path)


def test_tiny_run_end_to_end(tiny_run):
    run = tiny_run
    assert run.state() == "done"
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


def test_saved_ensemble_uses_the_learned_scales(tiny_run):
    """The loaded ensemble's prefix 2 is s_2 * z_1 + z_2 of the saved students (what training evaluated)."""
    from pkd.data import get_dataset_spec, load_split
    from pkd.distill import load_ensemble

    ens = load_ensemble(tiny_run)
    x = get_dataset_spec("mnist").normalize(load_split("mnist", "test").images[:64])
    z1, z2 = (student(x) for student in ens.students)
    expected = torch.log_softmax(ens.prev_scales[1] * z1 + z2, -1)
    assert torch.allclose(ens.forward_prefix(x, 2), expected, atol=1e-5)
    assert ens.prev_scales == [tiny_run.load_student(k)["prev_scale"] for k in (1, 2)]


def test_augmented_students_learn_on_the_scaled_frozen_ensemble(tmp_path):
    """students.optim.augment: targets and the frozen students' scaled sum are computed per shifted batch; the run
    finishes, student 2 learns its scale, and `pkd eval` reproduces what training reported."""
    path = tmp_path / "augmented"
    pkd("train", "--config", TINY, "--run-dir", str(path), "--no-progress", "students.optim.augment=true",
        "students.optim.epochs=1", "data.train_limit=256")
    run = Run(path)
    assert run.state() == "done" and run.load_student(2)["prev_scale"] != 1.0
    before = run.prefix_table()
    pkd("eval", str(path))
    for old, new in zip(before, run.prefix_table(), strict=True):
        assert new["prefix_acc"] == pytest.approx(old["prefix_acc"], abs=1e-6)


def test_independent_run_refuses_a_learned_scale(tmp_path):
    """A student file with a residual scale cannot slip into an independent run (it would change its answers)."""
    from pkd import distill
    from pkd.config import load_config
    from pkd.data import get_dataset_spec
    from pkd.runs import RunError

    cfg = load_config(TINY, ["distill.mode=independent", "distill.learn_prev_scale=false"])
    spec = get_dataset_spec("mnist")
    run = Run.create_at(tmp_path / "ind", cfg.to_dict())
    for k, s_spec in enumerate(distill.student_specs(cfg, spec), start=1):
        run.save_student(k, distill.build_model(s_spec).state_dict(), s_spec, prev_scale=1.0 if k == 1 else 0.5)
    assert distill.load_ensemble(run, k=1).prev_scales == [1.0]
    with pytest.raises(RunError, match="student_02.pt: has a residual prev_scale"):
        distill.load_ensemble(run)


def test_plain_residual_sums_logits(tmp_path):
    """distill.learn_prev_scale=false is B-DISTIL's plain sum: every saved scale is exactly 1."""
    path = tmp_path / "plain"
    pkd("train", "--config", TINY, "--run-dir", str(path), "--no-progress", "distill.learn_prev_scale=false",
        "students.optim.epochs=1", "data.train_limit=256")
    run = Run(path)
    assert [run.load_student(k)["prev_scale"] for k in (1, 2)] == [1.0, 1.0]
    assert [r["prev_scale"] for r in run.prefix_table()] == [1.0, 1.0]


def test_eval_reproduces_table(tiny_run):
    before = tiny_run.prefix_table()
    out = pkd("eval", str(tiny_run.path)).stdout
    after = tiny_run.prefix_table()
    for a, b in zip(before, after):
        assert a["prefix_acc"] == pytest.approx(b["prefix_acc"], abs=1e-9)
        assert a["solo_acc"] == pytest.approx(b["solo_acc"], abs=1e-9)
        assert a["cumulative_flops"] == b["cumulative_flops"]
    assert "prefix acc" in out


def test_runs_and_predict_cli(tiny_run, tmp_path):
    out = pkd("runs", str(tiny_run.path.parent)).stdout
    assert tiny_run.name in out and "done" in out
    from PIL import Image

    from pkd.data import load_split
    digit = load_split("mnist", "test").images[0, 0]  # a 7
    Image.fromarray((digit.numpy() * 255).astype("uint8")).resize((140, 140)).save(tmp_path / "digit.png")
    out = pkd("predict", str(tiny_run.path), str(tmp_path / "digit.png"), "--k", "2").stdout
    assert "prediction:" in out and "FLOPs" in out
    Image.new("L", (50, 50)).save(tmp_path / "blank.png")
    proc = pkd("predict", str(tiny_run.path), str(tmp_path / "blank.png"), check=False)
    assert proc.returncode == 2 and "blank" in proc.stdout
    (tmp_path / "notimage.png").write_text("hello")
    proc = pkd("predict", str(tiny_run.path), str(tmp_path / "notimage.png"), check=False)
    assert proc.returncode == 2 and "error:" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("overrides, field", [
    (["students.common={tokens: patch, patch: 5}"], "patch"),
    (["students.schedule=[{d_model: 0}]"], "d_model"),
    (["teacher.checkpoint=/nonexistent/teacher.pt"], "teacher.checkpoint"),
    (["students.schedule=[{widht: 3}]"], "widht"),
    (["distill.alpha=2"], "distill.alpha"),
])
def test_bad_configs_stop_before_training(tmp_path, overrides, field):
    proc = pkd("train", "--config", TINY, "--run-dir", str(tmp_path / "r"), *overrides, check=False)
    assert proc.returncode == 2, proc.stderr
    assert field in proc.stderr and proc.stderr.startswith("error:")
    assert not (tmp_path / "r").exists()  # nothing was created


def test_cuda_without_gpu_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = pkd("train", "--config", TINY, "--run-dir", str(tmp_path / "r"), "--device", "cuda", check=False)
    assert proc.returncode == 2 and "no CUDA GPU" in proc.stderr and not (tmp_path / "r").exists()


def test_resume_after_kill_matches_uninterrupted(tiny_run, tmp_path):
    """SIGKILL in the middle of student 2, resume: the final accuracies equal the uninterrupted run's."""
    path = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "pkd", "train", "--config", TINY, "--run-dir", str(path),
                             "--no-progress"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
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
    assert run.state() == "died"  # a killed run never reads as running
    assert run.students_saved() == 1
    pkd("resume" if False else "train", "--resume", str(path), "--no-progress")
    assert run.state() == "done"
    expected = tiny_run.prefix_table()
    got = run.prefix_table()
    assert [r["prefix_acc"] for r in got] == [r["prefix_acc"] for r in expected]
    assert [r["solo_acc"] for r in got] == [r["solo_acc"] for r in expected]
    epochs = [r for r in run.metrics() if r["event"] == "epoch" and r["stage"] == "student" and r["student"] == 2]
    assert len(epochs) == 2  # epoch 1 from before the kill, epoch 2 after resume: nothing repeated or lost
