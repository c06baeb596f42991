"""Process liveness: is the process that claims a run still the one alive (pid reuse guarded by start time)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


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


def lock_busy(path: Path) -> bool:
    """Some process holds the flock on `path` right now (probed with a shared, non-blocking lock; never waits)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)
