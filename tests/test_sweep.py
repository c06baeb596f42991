"""`pkd sweep`: hostile spaces stopped before any training, a real sweep of configs/tiny.yaml killed and continued
without a duplicate trial, two workers sharing one study, the shared teacher, `pkd pareto`."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import time
from pathlib import Path

import pytest

from pkd import sweep as pkd_sweep
from pkd.config import ConfigError
from pkd.runs import Run, RunError, State, list_runs
from tests.pkd_process import ROOT, TINY, child_env, pkd, pkd_ok, start

SHIPPED_TEACHER = ROOT / "pretrained" / "mnist" / "teacher.pt"
FAST = ["data.train_limit=256", "data.val_limit=128", "data.test_limit=128", "teacher.optim.epochs=1",
        "students.optim.epochs=1", "students.optim.batch_size=64"]
SPACE = {"params": {"distill.alpha": {"low": 0.2, "high": 0.8}},
         "schedule": {"students": {"low": 1, "high": 2}, "d_model": [4, 8]}}
TIMEOUT = 420


def write_space(tmp_path: Path, space: dict, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(space))  # JSON is YAML
    return path


def env() -> dict:
    return child_env(OMP_NUM_THREADS="1")  # several trainings at once on a shared 2-core machine


def study_trials(folder: Path) -> list:
    return pkd_sweep.Sweep(folder).study().get_trials(deepcopy=False)


def wait_for(condition, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def consoles(folder: Path) -> str:
    """Every trial's console log, for a failure message."""
    return "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in sorted(folder.glob("*/console.log")))


# ------------------------------------------------------------------------------------------------ hostile spaces

HOSTILE = {
    "unknown-section": ({"parms": {}}, r"unknown key 'parms'"),
    "unknown-field": ({"params": {"distill.alfa": [0.1]}}, r"params\.distill\.alfa: unknown config key"),
    "teacher-field": ({"params": {"teacher.optim.epochs": [1, 2]}}, r"params\.teacher\.optim\.epochs.*cannot be searched"),
    "empty-range": ({"params": {"distill.alpha": {"low": 0.9, "high": 0.1}}}, r"params\.distill\.alpha: empty range"),
    "no-choices": ({"schedule": {"d_model": []}}, r"schedule\.d_model: an empty list of choices"),
    "wrong-type": ({"params": {"distill.temperature": ["hot", 2]}}, r"params\.distill\.temperature\[0\]: expected a number"),
    "range-on-text": ({"params": {"distill.mode": {"low": 1, "high": 2}}}, r"params\.distill\.mode: a str field"),
    "out-of-config-range": ({"params": {"distill.alpha": {"low": 0.5, "high": 1.5}}},
                            r"params\.distill\.alpha: 1\.5 is not allowed: distill\.alpha: 1\.5 must lie in \[0, 1\]"),
    "too-many-students": ({"schedule": {"students": {"low": 1, "high": 40}}}, r"schedule\.students: .*at most 32"),
    "too-wide": ({"schedule": {"d_model": [8, 4096]}}, r"schedule\.d_model: the largest students .*d_model.*4096"),
    "too-many-parameters": ({"schedule": {"d_model": [8, 1024], "n_layers": {"low": 1, "high": 32}}},
                            r"space schedule: the largest students it allows \(d_model 1024, n_layers 32\).*"
                            r"parameters exceed the maximum"),
    "searches-nothing": ({}, r"searches nothing"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_space_is_refused_before_anything_is_created(tmp_path, name):
    space, message = HOSTILE[name]
    folder = tmp_path / "sweep"
    with pytest.raises((pkd_sweep.SweepError, ConfigError), match=message):
        pkd_sweep.open_sweep(folder, TINY, write_space(tmp_path, space), FAST)
    assert not folder.exists()


def test_cli_refuses_an_oversized_space_in_one_line_before_training(tmp_path):
    space = write_space(tmp_path, HOSTILE["too-many-parameters"][0])
    runs = tmp_path / "runs"
    proc = pkd("sweep", "--config", TINY, "--space", str(space), "--trials", "2", "--runs-dir", str(runs), *FAST,
               env=env(), timeout=300)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: space schedule: the largest students") and "n_layers 32" in line, proc.stderr
    assert not runs.exists() or not any(runs.iterdir())


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


# ------------------------------------------------------------------------------------------------ the shared teacher

@pytest.mark.skipif(not SHIPPED_TEACHER.is_file(), reason="needs the shipped teacher pretrained/mnist/teacher.pt")
def test_a_referenced_teacher_that_changed_or_vanished_is_refused_in_one_line(tmp_path):
    teacher = tmp_path / "shared" / "teacher.pt"
    teacher.parent.mkdir()
    shutil.copy(SHIPPED_TEACHER, teacher)
    run = Run.create_at(tmp_path / "run", {"name": "x", "teacher": {"arch": "mnist_cnn"}})
    run.reference_teacher(teacher)
    assert run.has_teacher() and run.teacher_path() == teacher.resolve()
    assert run.load_teacher()["spec"]["arch"] == "mnist_cnn"
    moved = tmp_path / "moved"
    shutil.copytree(run.path, moved)  # a copy on the same machine still finds it (absolute path)
    assert Run(moved).teacher_path() == teacher.resolve()
    with teacher.open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(RunError, match=r"teacher-ref\.json: the shared teacher .* changed after"):
        run.load_teacher()
    teacher.unlink()
    with pytest.raises(RunError, match=r"teacher-ref\.json: the shared teacher .* is missing"):
        run.load_teacher()
    with pytest.raises(RunError, match="not a pkd"):
        Run.create_at(tmp_path / "other", {"name": "y"}).reference_teacher(tmp_path / "run" / "manifest.json")
