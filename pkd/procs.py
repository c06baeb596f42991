"""Child processes and liveness: the one place that starts and reaps `python -m pkd` children, and tells whether a
process is alive (pid reuse guarded by start time) or holds a lock file (flock).

Every child is an ordinary `python -m pkd ...` process: the app's training runs and sweeps (detached in their own
session, so that they outlive the app, a browser reload or a server restart), a sweep's trials and extra workers
(they die with the worker that started them), and `train --nproc`'s torchrun. A detached child is reaped in a
daemon thread so that a finished child never lingers as a zombie (a zombie still answers `os.kill(pid, 0)`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import BinaryIO, Sequence

PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # the folder holding the `pkd` package


# ----------------------------------------------------------------------------------------------- starting children

def pkd_command(*args: str, device: str | None = None, build_kernel: bool = True, processes: int = 1,
                after: Sequence[str] = ()) -> list[str]:
    """`python -m pkd ARGS` and the flags of a training child: `--device DEVICE` when one is given,
    `--no-kernel-build` unless `build_kernel`, `--nproc N` when `processes` is not 1; then AFTER (e.g. key=value
    overrides, which must come last)."""
    return [sys.executable, "-m", "pkd", *args, *(["--device", device] if device else []),
            *([] if build_kernel else ["--no-kernel-build"]),
            *(["--nproc", str(int(processes))] if int(processes) != 1 else []), *after]


def torchrun_command(processes: int, argv: Sequence[str]) -> list[str]:
    """`python -m pkd ARGV` in `processes` processes on this machine under `torchrun --standalone`."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
            "-m", "pkd", *argv]


def child_env(threads: int | None = None) -> dict[str, str]:
    """This process's environment for a child: the package importable from any folder (PYTHONPATH), its output
    unbuffered (a console file shows it as it comes), and OMP_NUM_THREADS=threads when given."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _die_with_parent() -> None:
    """In a child, before exec: SIGTERM when the process that started it dies (Linux prctl PR_SET_PDEATHSIG), so
    a SIGKILLed sweep's trial stops cleanly, resumable, instead of training on unseen."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def spawn(command: list[str], *, console: Path | None = None, env: dict[str, str] | None = None,
          stdin: int | None = subprocess.DEVNULL, detach: bool = False,
          die_with_parent: bool = False) -> subprocess.Popen:
    """Start `command` (a pkd_command or torchrun_command).

    Args:
        console: append the child's stdout and stderr to this file, after a `$ command` line (default: ours).
        env: the child's environment (default: ours, unchanged; child_env for a pkd child).
        stdin: subprocess.DEVNULL (default), or None for ours.
        detach: in its own session, run from the package root and reaped in the background: it outlives us.
        die_with_parent: SIGTERM it when we die (Linux), so that it never runs on unseen.

    Returns:
        The child; the caller waits for it unless it is detached.
    """
    with open_console(console) if console is not None else contextlib.nullcontext() as out:
        if out is not None:
            out.write(f"$ {' '.join(command)}\n".encode())
            out.flush()
        proc = subprocess.Popen(command, stdin=stdin, stdout=out, stderr=subprocess.STDOUT if out else None,
                                cwd=str(PACKAGE_ROOT) if detach else None, env=env, start_new_session=detach,
                                close_fds=True, preexec_fn=_die_with_parent if die_with_parent else None)
    if detach:
        reap(proc)
    return proc


def open_console(path: Path) -> BinaryIO:
    """`path` opened for appending a child's output: created if missing, never through a symbolic link (O_NOFOLLOW)
    and never a FIFO or a device (opened non-blocking, checked on the open descriptor), so that a planted link
    cannot carry the output out of its folder and a FIFO cannot block the caller. OSError naming the file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        why = {errno.ELOOP: "it is a symbolic link", errno.ENXIO: "not a regular file: a FIFO"}.get(
            exc.errno, exc.strerror or str(exc))
        raise OSError(exc.errno, f"cannot write the log {path} ({why}); remove it or fix the folder") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, f"cannot write the log {path} (not a regular file); remove it")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "ab")


def reap(proc: subprocess.Popen) -> None:
    """Wait for `proc` in a daemon thread: a child nobody waits for never lingers as a zombie."""
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()


# ----------------------------------------------------------------------------------------------- liveness

def proc_start_time(pid: int) -> int | None:
    """Kernel start time of process `pid` (clock ticks since boot), or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def process_alive(pid: int | None, start_time: int | None = None) -> bool:
    """True when `pid` is a live (non-zombie) process started at `start_time` (guards against pid reuse)."""
    if not pid:
        return False
    if Path("/proc").is_dir():
        started = proc_start_time(int(pid))
        return started is not None and (start_time is None or started == start_time)
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    return True


# ----------------------------------------------------------------------------------------------- lock files

def take_lock(path: Path, blocking: bool = True) -> int | None:
    """An open descriptor holding an exclusive flock on `path` (created; never through a symbolic link), or None
    when another process holds it and `blocking` is False. The kernel drops the lock when the holder dies, however
    it dies. OSError when the file cannot be opened."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or a device planted at the lock's name
        os.close(fd)
        raise OSError(errno.EINVAL, f"lock file {path} is not a regular file; remove it")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError:
        os.close(fd)
        return None
    return fd


def lock_busy(path: Path) -> bool:
    """Some process holds the flock on `path` right now (probed with a shared, non-blocking lock; never waits)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO never blocks us
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def record_holder(fd: int) -> None:
    """Write "<host> <pid> <start time>" of this process into the lock file open as `fd` (what local_holder
    reads)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{socket.gethostname()} {os.getpid()} {proc_start_time(os.getpid())}\n".encode(), 0)


def local_holder(path: Path) -> int | None:
    """The pid recorded in lock file `path` (record_holder) when that process is on this machine, holds the lock
    now and is alive with the recorded start time (a recycled pid is never named); None otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            text = os.read(fd, 4096) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
        finally:
            os.close(fd)
        host, pid, start = text.decode("utf-8").split()
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if host == socket.gethostname() and pid.isdigit() and lock_busy(path) \
            and process_alive(int(pid), int(start) if start.isdigit() else None):
        return int(pid)
    return None
