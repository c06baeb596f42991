"""What the app calls to run sweeps: start one as a detached `python -m pkd sweep` process, ask its workers to
stop, and read what it printed. No Streamlit here, and nothing of the training side (pkd.train): the app imports
this through pkd.sweep's face.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from pkd.procs import child_env, local_holder, pkd_command, spawn
from pkd.runs import RunError, atomic_write_bytes, new_run_dir, printable
from pkd.runs.place import tail_bytes
from pkd.sweep.folder import LOCKS_DIR, STOP_FILE, SWEEP_LOG, Sweep, held, stop_generation
from pkd.sweep.space import SweepError

_STARTED: dict[str, subprocess.Popen] = {}  # sweep path -> the process start_sweep started for it (the app)


def start_sweep(n_trials: int, base_path: str | os.PathLike | None = None, space_path: str | os.PathLike | None = None,
                runs_dir: str | os.PathLike | None = None, sweep_dir: str | os.PathLike | None = None,
                workers: int = 1, device: str | None = None, build_kernel: bool = True,
                wait_s: float = 120.0) -> Sweep:
    """`python -m pkd sweep` as a detached process (it outlives the app; output in <sweep>/sweep.log): a new sweep
    in a new folder of `runs_dir` from BASE and SPACE, or more trials of the sweep in `sweep_dir`. Waits until the
    sweep exists; SweepError with its last output line when it stops first."""
    if sweep_dir is None:
        base_path, space_path = Path(base_path).resolve(), Path(space_path).resolve()
        path = new_run_dir(Path(runs_dir).resolve(), f"sweep-{base_path.stem}")
        command = ["--config", str(base_path), "--space", str(space_path)]
    else:
        path, command = Path(sweep_dir).resolve(), []
    command = pkd_command("sweep", "--sweep-dir", str(path), "--trials", str(int(n_trials)), "--workers",
                          str(int(workers)), *command, device=device, build_kernel=build_kernel)
    proc = spawn(command, console=path / SWEEP_LOG, env=child_env(), detach=True)
    _STARTED[str(path)] = proc
    sweep, deadline = Sweep(path), time.monotonic() + wait_s
    while not sweep.exists() and time.monotonic() < deadline:
        if proc.poll() is not None:
            lines = log_tail(sweep)
            raise SweepError(f"the sweep did not start: {lines[-1] if lines else f'exit {proc.returncode}'}")
        time.sleep(0.1)
    return sweep


def request_stop(sweep: Sweep) -> None:
    """Ask every worker of the sweep, on any machine sharing its folder, to stop: they poll the stop-request file
    about once a second and stop like on SIGTERM. Workers started afterwards are not affected."""
    with held(sweep.path / LOCKS_DIR / "stop.lock"):
        atomic_write_bytes(sweep.path / STOP_FILE, f"{stop_generation(sweep.path) + 1}\n".encode())


def stop_sweep(sweep: Sweep) -> int:
    """Ask every worker of the sweep to stop: a stop request in its folder (workers on other machines see it
    within about a second) and SIGTERM to this machine's workers at once (the trial saves a checkpoint and stays
    running in the journal, to be resumed); returns how many local processes were signalled. A recycled pid is
    never hit: the holder's recorded start time must match."""
    request_stop(sweep)
    signalled = set()
    folder = sweep.path / LOCKS_DIR
    for lock in sorted(folder.glob("*.lock")) if folder.is_dir() else []:
        pid = local_holder(lock)  # a live process of this machine that holds the lock now
        if pid is not None and pid not in signalled:
            os.kill(pid, signal.SIGTERM)
            signalled.add(pid)
    proc = _STARTED.get(str(sweep.path))
    if proc is not None and proc.poll() is None and proc.pid not in signalled:
        proc.terminate()
        signalled.add(proc.pid)
    return len(signalled)


def log_tail(sweep: Sweep, max_chars: int = 4000) -> list[str]:
    """The last lines of the sweep's sweep.log (what a sweep started from the app printed)."""
    try:  # never blocks: a FIFO or a device in its place is not read
        text = tail_bytes(sweep.path / SWEEP_LOG, max_chars).decode("utf-8", errors="replace")
    except (OSError, RunError) as exc:
        return [printable(f"(sweep.log cannot be read: {exc})", 300)]
    return [printable(line, 300) for line in text.splitlines() if line.strip()]
