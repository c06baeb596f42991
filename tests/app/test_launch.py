"""pkd.launch with real child processes: start, fail fast, stop (SIGTERM), resume, pid-reuse guard, reaping."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pkd import launch
from pkd.procs import proc_start_time
from pkd.runs import CONSOLE_FILE, Run, RunError, new_run_dir
from tests.app.trained import TINY_CONFIG

FAST = ["data.train_limit=256", "data.val_limit=128", "data.test_limit=128", "students.optim.epochs=1"]


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def reaped(pid: int) -> bool:
    """The process is gone and not a zombie (its /proc entry has disappeared)."""
    return not Path(f"/proc/{pid}").exists()


def test_start_run_rejects_bad_arguments_before_creating_anything(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        launch.start_run(tmp_path / "missing.yaml", runs_dir=tmp_path)
    with pytest.raises(ValueError, match="device"):
        launch.start_run(TINY_CONFIG, runs_dir=tmp_path, device="tpu")
    with pytest.raises(ValueError, match="key=value"):
        launch.start_run(TINY_CONFIG, ["--evil"], runs_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_start_run_reports_why_a_child_failed_and_reaps_it(tmp_path):
    with pytest.raises(RunError, match="distill.alpha") as info:
        launch.start_run(TINY_CONFIG, ["distill.alpha=5"], runs_dir=tmp_path, build_kernel=False)
    (folder,) = list(tmp_path.iterdir())
    assert [p.name for p in folder.iterdir()] == [CONSOLE_FILE]  # nothing but the child's output
    assert str(folder / CONSOLE_FILE) in str(info.value)
    proc = launch.child_process(Run(folder))
    assert proc is not None and proc.returncode == 2
    wait_for(lambda: reaped(proc.pid), 10, "the reaper thread")


def test_unique_dirs_never_collide(tmp_path):
    first = new_run_dir(tmp_path, "tiny")
    second = new_run_dir(tmp_path, "tiny")
    assert first != second and first.is_dir() and second.is_dir()
    with pytest.raises(RunError, match="not allowed"):
        new_run_dir(tmp_path, "../escape")


def test_stop_run_never_signals_a_recycled_pid(tmp_path):
    run = Run.create_at(tmp_path / "fake", {"name": "fake"})
    me = os.getpid()
    run.write_status(state="running", pid=me, pid_start=proc_start_time(me) + 1)  # same pid, other process
    assert run.state() == "died"
    assert launch.stop_run(run) is False  # and we are still alive
    run.write_status(state="running", pid=2 ** 22 + 12345, pid_start=1)
    assert launch.stop_run(run) is False


def test_resume_refuses_live_and_finished_runs(tmp_path):
    run = Run.create_at(tmp_path / "fake", {"name": "fake"})
    me = os.getpid()
    run.write_status(state="running", pid=me, pid_start=proc_start_time(me))
    with pytest.raises(RunError, match="still running"):
        launch.resume_run(run)
    run.write_status(state="done")
    with pytest.raises(RunError, match="already done"):
        launch.resume_run(run)
    with pytest.raises(ValueError, match="device"):
        launch.resume_run(run, device="tpu")


def test_start_stop_resume_a_real_run(tmp_path):
    """Start, stop mid-teacher, resume: the resumed process continues the same run and trains on."""
    run = launch.start_run(TINY_CONFIG, FAST, runs_dir=tmp_path, device="cpu", name="life", build_kernel=False,
                           threads=1)
    try:
        environ = Path(f"/proc/{launch.child_process(run).pid}/environ").read_bytes().split(b"\0")
        assert b"OMP_NUM_THREADS=1" in environ  # a busy machine: one thread per training process
        assert run.path.parent == tmp_path.resolve() and run.name.startswith("life-")
        assert (run.path / "manifest.json").is_file()  # start_run waited for the child to create the run
        assert run.config()["students"]["optim"]["epochs"] == 1
        wait_for(lambda: "loss" in run.status() or run.state() not in ("created", "running"), 120,
                 "the training loop")
        first_pid = run.status()["pid"]
        assert run.state() == "running"
        assert launch.stop_run(run) is True
        wait_for(lambda: run.state() != "running", 60, "the run to stop")
        assert run.state() == "stopped", launch.console_tail(run)
        wait_for(lambda: reaped(first_pid), 10, "the stopped child to be reaped")
        assert launch.stop_run(run) is False  # nothing left to stop

        epochs_before = sum(1 for r in run.metrics() if r.get("event") == "epoch")
        launch.resume_run(run, device="cpu", build_kernel=False)
        wait_for(lambda: run.status(raw=True).get("pid") not in (None, first_pid)
                 and run.state() in ("running", "done"), 120,
                 "the resumed process to take over the run")
        wait_for(lambda: sum(1 for r in run.metrics() if r.get("event") == "epoch") > epochs_before
                 or run.state() != "running", 300, "the resumed run to finish an epoch")
        assert run.state() in ("running", "done"), launch.console_tail(run)
        console = (run.path / CONSOLE_FILE).read_text()
        assert "--run-dir" in console and "--resume" in console  # both launches logged to one console.log
    finally:
        launch.stop_run(run)
        proc = launch.child_process(run)
        if proc is not None:
            proc.wait(timeout=60)


def test_one_thread_per_process_when_the_machine_is_busy():
    assert launch.threads_for_load(load=1.0, cores=2) == 1 and launch.threads_for_load(load=7.5, cores=16) is None
    assert launch.threads_for_load(load=0.2, cores=2) is None and launch.threads_for_load(load=8.0, cores=16) == 1
