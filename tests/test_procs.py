"""pkd.procs: a pkd child's command line and environment, a real `python -m pkd` child spawned and reaped, a child
that dies with its parent, liveness and lock files."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pkd.procs import (PACKAGE_ROOT, child_env, local_holder, lock_busy, pkd_command, proc_start_time,
                       process_alive, record_holder, spawn, take_lock, torchrun_command)

PKD = [sys.executable, "-m", "pkd"]


def wait_for(condition, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_the_flags_of_a_training_child_come_after_its_arguments_and_before_the_overrides():
    assert pkd_command("train", "--resume", "r") == [*PKD, "train", "--resume", "r"]
    assert pkd_command("train", "--config", "c.yaml", device="cpu", build_kernel=False, processes=2,
                       after=["distill.alpha=0.5"]) == \
        [*PKD, "train", "--config", "c.yaml", "--device", "cpu", "--no-kernel-build", "--nproc", "2",
         "distill.alpha=0.5"]
    assert pkd_command("sweep", device=None, build_kernel=True, processes=1) == [*PKD, "sweep"]
    assert torchrun_command(2, ["train", "--config", "c.yaml"]) == \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "pkd", "train",
         "--config", "c.yaml"]


def test_a_child_finds_the_package_from_anywhere_and_prints_unbuffered(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    env = child_env()
    assert env["PYTHONPATH"] == os.pathsep.join([str(PACKAGE_ROOT), "/elsewhere"])
    assert env["PYTHONUNBUFFERED"] == "1" and "OMP_NUM_THREADS" not in env
    monkeypatch.delenv("PYTHONPATH")
    assert child_env(threads=3)["PYTHONPATH"] == str(PACKAGE_ROOT) and child_env(threads=3)["OMP_NUM_THREADS"] == "3"


def test_a_detached_pkd_child_appends_to_its_console_and_is_reaped(tmp_path):
    console = tmp_path / "console.log"
    console.write_bytes(b"earlier output\n")
    command = pkd_command("backends")
    proc = spawn(command, console=console, env=child_env(), detach=True)
    wait_for(lambda: proc.returncode is not None, "the reaper thread to collect the child")  # nobody else waits
    assert proc.returncode == 0, console.read_text()
    with pytest.raises(ChildProcessError):
        os.waitpid(proc.pid, os.WNOHANG)  # already reaped: no zombie left behind
    text = console.read_text()
    assert text.startswith(f"earlier output\n$ {' '.join(command)}\n") and "scan backend on cpu:" in text


def test_a_detached_child_runs_in_its_own_session_from_the_package_root(tmp_path):
    console = tmp_path / "out.log"
    code = "import os; print(os.getsid(0) == os.getpid(), os.getcwd(), os.environ.get('PKD_PROBE'))"
    proc = spawn([sys.executable, "-c", code], console=console, env={**os.environ, "PKD_PROBE": "yes"}, detach=True)
    wait_for(lambda: proc.returncode is not None, "the child to end")
    assert console.read_text().splitlines()[-1] == f"True {PACKAGE_ROOT} yes"


def test_a_waited_child_returns_its_exit_code_and_reads_no_stdin(tmp_path):
    console = tmp_path / "console.log"
    proc = spawn(pkd_command("no-such-command"), console=console, env=child_env())
    assert proc.wait(timeout=120) == 2  # argparse's exit status, passed through
    assert "invalid choice" in console.read_text()
    proc = spawn([sys.executable, "-c", "import sys; print(repr(sys.stdin.read()))"], console=console)
    assert proc.wait(timeout=60) == 0 and console.read_text().splitlines()[-1] == "''"


def test_a_child_started_to_die_with_its_parent_stops_when_the_parent_is_killed():
    code = ("import sys, time; from pkd.procs import spawn; "
            "child = spawn([sys.executable, '-c', 'import time; time.sleep(120)'], die_with_parent=True); "
            "print(child.pid, flush=True); time.sleep(120)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=child_env())
    try:
        pid = int(parent.stdout.readline())
        assert process_alive(pid)
    finally:
        parent.kill()
        parent.wait(timeout=60)
    wait_for(lambda: not process_alive(pid), "the orphan to get SIGTERM", timeout=30)


def test_a_lock_file_is_held_by_one_descriptor_and_names_its_live_holder(tmp_path):
    path = tmp_path / "trial.lock"
    assert not lock_busy(path) and local_holder(path) is None  # no file yet
    fd = take_lock(path)
    try:
        assert lock_busy(path) and take_lock(path, blocking=False) is None  # a second holder is refused
        assert local_holder(path) is None  # held, but nobody's record in it yet
        record_holder(fd)
        assert local_holder(path) == os.getpid()
    finally:
        os.close(fd)
    assert not lock_busy(path) and local_holder(path) is None  # the record stays, the holder is gone
    link = tmp_path / "link.lock"
    link.symlink_to(path)
    with pytest.raises(OSError):
        take_lock(link)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="start times are read from /proc")
def test_liveness_is_guarded_by_the_start_time():
    me = os.getpid()
    assert process_alive(me) and process_alive(me, proc_start_time(me))
    assert not process_alive(me, proc_start_time(me) + 1)  # the same pid, another process
    assert not process_alive(None) and not process_alive(0)


def test_each_test_worker_and_the_processes_it_starts_compute_on_one_thread():
    """tests/conftest.py: two xdist workers on two cores, one thread each, children included (OMP_NUM_THREADS)."""
    import torch

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip("one test process (-n 0): torch keeps its default thread count")
    threads = int(os.environ.get("PKD_TEST_THREADS", "1"))
    assert torch.get_num_threads() == threads and os.environ["OMP_NUM_THREADS"] == str(threads)
    child = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=child_env(),
                           capture_output=True, text=True, check=True)
    assert int(child.stdout) == threads
