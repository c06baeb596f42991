"""`pkd sweep`'s workers: a real sweep of configs/tiny.yaml killed and continued without a duplicate trial, two
workers sharing one study, a stop request in the folder, `pkd pareto` on the result."""

from __future__ import annotations

import csv
import signal
from pathlib import Path

import pytest

from pkd import sweep as pkd_sweep
from pkd.runs import Run, State, list_runs
from tests.pkd_process import TINY, pkd, pkd_ok, start
from tests.sweep.sweeping import (FAST, SHIPPED_TEACHER, SPACE, TIMEOUT, consoles, env, study_trials, wait_for,
                                  write_space)

# ------------------------------------------------------------------------------------------------ real sweeps

def test_killed_sweep_continues_to_three_trials_without_a_duplicate(tmp_path):
    """End to end: a base run trains the teacher; SIGKILL the sweep while trial 1 trains (its training process
    stops with it); the same command with 2 workers adopts trial 1, resumes its run and adds trial 2."""
    folder, space = tmp_path / "sweep", write_space(tmp_path, SPACE)
    proc = start("sweep", "--config", TINY, "--space", str(space), "--trials", "3", "--sweep-dir", str(folder),
                 "--no-kernel-build", *FAST, env=env())
    try:
        wait_for(lambda: Run(folder / "trial-000").state() == State.DONE and
                 (folder / "trial-001" / "status.json").is_file() or proc.poll() is not None, "trial 1 to start")
        assert proc.poll() is None, consoles(folder)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    wait_for(lambda: not Run(folder / "trial-001").is_active(), "trial 1's training to stop with the sweep", 120)
    assert [t.state.name for t in study_trials(folder)] == ["COMPLETE", "RUNNING"]

    out = pkd("sweep", "--sweep-dir", str(folder), "--trials", "3", "--workers", "2", "--no-kernel-build", env=env(),
              timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr[-3000:] + consoles(folder)
    trials = study_trials(folder)
    assert [(t.number, t.state.name, t.user_attrs["run"]) for t in trials] == \
        [(n, "COMPLETE", f"trial-{n:03d}") for n in range(3)]
    assert sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) == \
        ["base", "trial-000", "trial-001", "trial-002"]
    assert "takes it over" in out.stderr and "resuming" in out.stderr
    assert "Pareto front" in out.stdout

    base_teacher = Run(folder / "base").teacher_path()
    for n in range(3):
        run = Run(folder / f"trial-{n:03d}")
        assert run.state() == State.DONE and len(run.prefix_table()) == run.students_planned()
        assert run.teacher_path() == base_teacher and not (run.path / "teacher.pt").exists()  # shared, not copied
        summary = run.summary()
        assert {"anytime", "anytime_val_fitted", "anytime_auc"} <= set(summary)
        assert 0 <= summary["anytime_auc"]["val"] <= 1 and summary["anytime_val_fitted"][-1]["confidence"] is None
        values = trials[n].values
        last = run.prefix_table()[-1]
        assert values == [last["prefix_val_acc"], last["cumulative_flops"]]  # validation drives the search

    listed = pkd_ok("runs", str(folder), env=env()).stdout
    assert all(name in listed for name in ("base", "trial-000", "trial-001", "trial-002"))
    pkd_ok("eval", str(folder / "trial-001"), env=env(), timeout=300)  # evaluates with the shared teacher
    table = tmp_path / "front.csv"
    out = pkd_ok("pareto", str(folder), "--csv", str(table), env=env()).stdout
    rows = list(csv.DictReader(table.open()))
    expected = pkd_sweep.front(pkd_sweep.prefix_points(list_runs(folder)), "val")
    assert [(Path(r["run"]).name, int(r["k"])) for r in rows] == [(Path(p["run"]).name, p["k"]) for p in expected]
    assert rows and all(Path(r["run"]).name in out for r in rows)


@pytest.mark.skipif(not SHIPPED_TEACHER.is_file(), reason="needs the shipped teacher pretrained/mnist/teacher.pt")
def test_two_workers_started_at_once_share_one_study(tmp_path):
    """Two `pkd sweep` commands at once on one folder (as on two machines): one study, 3 trials, none lost or
    repeated; the teacher is BASE's checkpoint, shared by reference (no base run, no copies)."""
    folder, space = tmp_path / "sweep", write_space(tmp_path, SPACE)
    args = ["sweep", "--config", TINY, "--space", str(space), "--trials", "3", "--sweep-dir", str(folder),
            "--no-kernel-build", *FAST, f"teacher.checkpoint={SHIPPED_TEACHER}"]
    workers = [start(*args, env=env()), start(*args, env=env())]
    try:
        codes = [w.wait(timeout=TIMEOUT) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    assert codes == [0, 0], consoles(folder)
    trials = study_trials(folder)
    assert [(t.number, t.state.name) for t in trials] == [(n, "COMPLETE") for n in range(3)]
    assert sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) == \
        ["trial-000", "trial-001", "trial-002"]
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers trained trials
    commands = [tuple(Run(folder / f"trial-{n:03d}").manifest()["command"]) for n in range(3)]
    assert len(set(commands)) == 3
    for n in range(3):
        run = Run(folder / f"trial-{n:03d}")
        assert run.teacher_path() == SHIPPED_TEACHER.resolve() and run.load_teacher()["spec"]["arch"] == "mnist_cnn"


@pytest.mark.skipif(not SHIPPED_TEACHER.is_file(), reason="needs the shipped teacher pretrained/mnist/teacher.pt")
def test_a_stop_request_in_the_folder_reaches_a_worker_without_a_signal(tmp_path):
    """Stop as from another machine: only the folder's stop request, no signal. The worker stops its trial (a
    checkpoint, resumable) and exits 3; a worker started afterwards is not affected and finishes the trial."""
    folder, space = tmp_path / "sweep", write_space(tmp_path, SPACE)
    args = ["sweep", "--config", TINY, "--space", str(space), "--trials", "1", "--sweep-dir", str(folder),
            "--no-kernel-build", *FAST, "students.optim.epochs=3", f"teacher.checkpoint={SHIPPED_TEACHER}"]
    worker = start(*args, env=env())
    try:
        wait_for(lambda: Run(folder / "trial-000").is_active() or worker.poll() is not None, "trial 0 to train")
        pkd_sweep.request_stop(pkd_sweep.Sweep(folder))
        assert worker.wait(timeout=120) == 3, consoles(folder)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert Run(folder / "trial-000").state() in (State.STOPPED, State.DONE)
    assert [t.state.name for t in study_trials(folder)] in (["RUNNING"], ["COMPLETE"])
    out = pkd(*args, env=env(), timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr[-3000:] + consoles(folder)
    assert [t.state.name for t in study_trials(folder)] == ["COMPLETE"]
    assert Run(folder / "trial-000").state() == State.DONE
