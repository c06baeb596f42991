"""Hard kills on the newer surfaces (issue 31): a sweep's worker SIGKILLed in the middle of a trial, and `pkd export`
SIGKILLed in the middle of writing its file or its model card. Each is resumed (the same command finishes the work)
or refused cleanly (one line naming the file and --force), with nothing half-written kept and nothing written
outside its place. Real `python -m pkd` processes; the kills are real SIGKILLs ($PKD_FAULT kills the writer halfway
through a write, pkd.runs.io). Listed in tests/cases.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys

import pytest

from pkd.runs import Run, State
from tests.hostile_runs import untrained_run
from tests.pkd_process import ROOT, TINY, child_env, pkd
from tests.sweep.sweeping import FAST, SHIPPED_TEACHER, consoles, env, study_trials, wait_for, write_space


def export(run: Run, k: int, *extra: str, fault: str | None = None) -> subprocess.CompletedProcess:
    environment = child_env(OMP_NUM_THREADS="1", **({"PKD_FAULT": fault} if fault else {}))
    return subprocess.run([sys.executable, "-m", "pkd", "export", str(run.path), "--k", str(k), "--format", "pt2",
                           *extra], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600)


def files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_export_killed_mid_write_is_resumed_or_refused_cleanly(tmp_path):
    run = untrained_run(tmp_path / "run")
    out = run.path / "export"
    # killed halfway through the exported file: only its temp file is left
    killed = export(run, 1, fault="kill:prefix_k1.pt2:1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = files(out)
    assert len(left) == 1 and left[0].startswith(".prefix_k1.pt2.") and left[0].endswith(".tmp"), left
    # the same command again, killed halfway through the model card: the dead export's temp file is gone, the
    # file is whole, its card is not
    killed = export(run, 1, fault="kill:prefix_k1.pt2.card.json:1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert [n for n in files(out) if not n.startswith(".")] == ["prefix_k1.pt2"]
    model = (out / "prefix_k1.pt2").read_bytes()
    # then it refuses in one line, changing nothing (it would replace a file); with --force it finishes
    refused = export(run, 1)
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1 and "prefix_k1.pt2 already exists; pass --force" in lines[0]
    assert (out / "prefix_k1.pt2").read_bytes() == model
    forced = export(run, 1, "--force")
    assert forced.returncode == 0, forced.stderr
    assert files(out) == ["prefix_k1.pt2", "prefix_k1.pt2.card.json", "prefix_k1.pt2.card.md"]  # temps removed
    card = json.loads((out / "prefix_k1.pt2.card.json").read_text())
    assert card["sha256"] == hashlib.sha256((out / "prefix_k1.pt2").read_bytes()).hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing written beside the run


@pytest.mark.skipif(not SHIPPED_TEACHER.is_file(), reason="needs the shipped teacher pretrained/mnist/teacher.pt")
def test_a_sweep_worker_killed_mid_trial_is_adopted_and_resumed(tmp_path):
    """One worker, the shipped teacher shared (no base run): SIGKILL it while its trial trains (the training process
    stops with it, resumable); the same command adopts the trial (its stored overrides checked against the space,
    journal_check) and resumes its run to the end: one trial, complete, in its own folder."""
    folder = tmp_path / "sweep"
    space = write_space(tmp_path, {"params": {"distill.alpha": {"low": 0.2, "high": 0.8}},
                                   "schedule": {"d_model": [4, 8]}})
    args = ["sweep", "--config", TINY, "--space", str(space), "--trials", "1", "--sweep-dir", str(folder),
            "--no-kernel-build", *FAST, "data.train_limit=2048", "students.optim.epochs=30",
            f"teacher.checkpoint={SHIPPED_TEACHER}"]  # seconds of training: a window to kill it in (2 epochs of 256
    # images were over in a tenth of a second once MNIST loaded from its uint8 copy, before the 0.3 s poll saw it)
    worker = subprocess.Popen([sys.executable, "-m", "pkd", *args], cwd=ROOT, env=env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    trial = Run(folder / "trial-000")
    try:
        wait_for(lambda: (trial.path / "status.json").is_file() and trial.status().get("state") == "running"
                 and (trial.path / "metrics.jsonl").is_file() or worker.poll() is not None, "trial 0 to train")
        assert worker.poll() is None, consoles(folder)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=60)
    wait_for(lambda: not trial.is_active(), "trial 0's training to stop with its worker", 120)
    assert [t.state.name for t in study_trials(folder)] == ["RUNNING"]
    stored = study_trials(folder)[0].user_attrs["overrides"]

    out = pkd("sweep", "--sweep-dir", str(folder), "--trials", "1", "--no-kernel-build", env=env(), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:] + consoles(folder)
    assert "takes it over" in out.stderr and "resuming" in out.stderr
    trials = study_trials(folder)
    assert [(t.number, t.state.name, t.user_attrs["overrides"]) for t in trials] == [(0, "COMPLETE", stored)]
    assert trial.state() == State.DONE and len(trial.prefix_table()) == trial.students_planned()
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == [".locks", "trial-000"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["space.yaml", "sweep"]
