"""Start, stop and resume training runs as detached processes (used by the app; no Streamlit here).

A launched run is an ordinary `python -m pkd train` process in its own session, so it outlives the app, a browser
reload or a server restart. Its stdout/stderr go to `<run>/console.log`; everything else in the run directory is
written by the child through `pkd.runs`. This module writes nothing but console.log; pkd.procs starts each child
and reaps it in a daemon thread so that a finished child never lingers as a zombie (a zombie still answers
`os.kill(pid, 0)`).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from pkd.devices import check_device_choice
from pkd.procs import child_env, pkd_command, process_alive, spawn
from pkd.runs import ACTIVE_STATES, CONSOLE_FILE, MANIFEST_FILE, Run, RunError, State, default_runs_dir, new_run_dir
from pkd.runs.place import tail_bytes
from pkd.runs.schema import Status

logger = logging.getLogger(__name__)

START_WAIT_S = 60.0  # how long start_run waits for the child to create its run directory
_CHILDREN: dict[str, subprocess.Popen] = {}  # run path -> process started by this interpreter
_LOCK = threading.Lock()


def threads_for_load(load: float | None = None, cores: int | None = None) -> int | None:
    """Torch threads for a training process started now: 1 when the machine is busy (its 1-minute load average at
    least half its cores), else None (torch's default, one per core). Measured on a busy 2-core machine: 2 threads
    per process are many times slower than 1 (each waits for a free core at every step)."""
    load = os.getloadavg()[0] if load is None else load
    cores = (os.cpu_count() or 1) if cores is None else cores
    return 1 if load >= cores / 2 else None


def _spawn(command: list[str], run_path: Path, threads: int | None = None) -> subprocess.Popen:
    """Start `command` (a pkd_command) detached, output appended to run_path/console.log, reaped in the background;
    `threads`: OMP_NUM_THREADS of the child (None: inherited)."""
    proc = spawn(command, console=run_path / CONSOLE_FILE, env=child_env(threads), detach=True)
    with _LOCK:
        _CHILDREN[str(run_path.resolve())] = proc
    logger.info("started pid %d: %s", proc.pid, " ".join(command))
    return proc


def child_process(run: Run) -> subprocess.Popen | None:
    """The process this interpreter started for `run`, if any (also after it ended)."""
    with _LOCK:
        return _CHILDREN.get(str(Path(run.path).resolve()))


def console_tail(run: Run, max_chars: int = 4000) -> str:
    """The end of the run's console.log ("" if there is none)."""
    try:
        return tail_bytes(Path(run.path) / CONSOLE_FILE, max_chars).decode("utf-8", errors="replace")
    except (OSError, RunError) as exc:  # a FIFO, a device or a folder in its place: never read
        return f"(console.log cannot be read: {exc})"


def _wait_for_run(proc: subprocess.Popen, run: Run, wait_s: float) -> None:
    """Wait until the child wrote the run's manifest; RunError with the console output if it exits first."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if (run.path / MANIFEST_FILE).is_file():
            return
        if proc.poll() is not None:
            if (run.path / MANIFEST_FILE).is_file():
                return
            lines = [line for line in console_tail(run).splitlines() if line.strip()]
            reason = lines[-1] if lines else f"exit status {proc.returncode}"
            raise RunError(f"training did not start: {reason} (full output in {run.path / CONSOLE_FILE})")
        time.sleep(0.05)
    logger.warning("%s: no manifest after %.0f s; the run is still starting", run.path, wait_s)


def start_run(
    config_path: str | os.PathLike,
    overrides: list[str] | tuple[str, ...] = (),
    runs_dir: str | os.PathLike | None = None,
    device: str = "auto",
    name: str | None = None,
    build_kernel: bool = True,
    wait_s: float = START_WAIT_S,
    processes: int = 1,
    threads: int | None = None,
) -> Run:
    """Launch `python -m pkd train` for a new run in a fresh directory and return that run.

    Args:
        config_path: YAML config file.
        overrides: `key=value` config overrides, e.g. ["distill.alpha=0.5"].
        runs_dir: folder for the new run (default $PKD_RUNS_DIR or ./runs).
        device: "auto", "cpu" or "cuda".
        name: folder name prefix (default: the config file's stem).
        build_kernel: let training build the fused CPU scan kernel (about a minute once, then cached).
        wait_s: wait this long for the child to create its run (0: return at once).
        processes: training processes (more than 1: data-parallel under torchrun, `train --nproc`).
        threads: torch threads of each training process (OMP_NUM_THREADS; None: this process's setting), e.g.
            threads_for_load().

    Returns:
        The Run; its directory holds console.log and, once the child has started, the run files.

    Raises:
        FileNotFoundError: the config file does not exist.
        ValueError: unknown device.
        RunError: the child exited before creating its run (the message carries its last output line).
    """
    config_path = Path(config_path).resolve()
    if not config_path.is_file():
        raise FileNotFoundError(f"config file {config_path} not found; see configs/ for examples")
    check_device_choice(device)
    overrides = [str(item) for item in overrides]
    for item in overrides:
        if "=" not in item or item.startswith("-"):
            raise ValueError(f"override {item!r}: expected key=value, e.g. distill.alpha=0.5")
    runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    path = new_run_dir(runs_dir.resolve(), name or config_path.stem)
    (path / CONSOLE_FILE).touch()
    command = pkd_command("train", "--config", str(config_path), "--run-dir", str(path), "--no-progress",
                          device=device, build_kernel=build_kernel, processes=processes, after=overrides)
    proc = _spawn(command, path, threads)
    run = Run(path)
    if wait_s > 0:
        _wait_for_run(proc, run, wait_s)
    return run


def stop_run(run: Run) -> bool:
    """Ask a running run to stop (SIGTERM: it saves a checkpoint and ends as "stopped", resumable).

    Only signals the recorded pid when that process is alive and its start time matches the record, so a
    recycled pid is never hit. Returns True when a signal was sent.
    """
    status = run.status(raw=True)
    pid, started = status.get(Status.PID), status.get(Status.PID_START)
    if State.of(status.get("state")) in ACTIVE_STATES and pid and process_alive(pid, started):
        os.kill(int(pid), signal.SIGTERM)
        logger.info("sent SIGTERM to pid %s (run %s)", pid, run.path)
        return True
    proc = child_process(run)
    if proc is not None and proc.poll() is None:  # started by us but has not recorded its pid yet
        proc.terminate()
        return True
    return False


def resume_run(run: Run, device: str | None = None, build_kernel: bool = True, processes: int = 1,
               threads: int | None = None) -> Run:
    """Continue a stopped, failed or died run in a new detached process (same directory, console.log appended).

    Raises:
        RunError: the run is still running, or has nothing to resume because it is done.
    """
    if device is not None:
        check_device_choice(device)
    if run.is_active():
        raise RunError(f"run {run.name} is still running; stop it before resuming")
    proc = child_process(run)
    if (proc is not None and proc.poll() is None) or run.writer_alive():
        raise RunError(f"run {run.name} is still running; stop it before resuming")
    if run.state() == State.DONE:
        raise RunError(f"run {run.name} is already done; nothing to resume")
    run.check_contained()  # console.log (appended to here, before the child starts) must not lead out of the run
    _spawn(pkd_command("train", "--resume", str(Path(run.path).resolve()), "--no-progress", device=device,
                       build_kernel=build_kernel, processes=processes), Path(run.path), threads)
    return run
