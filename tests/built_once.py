"""Expensive fixtures built once per test session, whichever pytest-xdist worker asks first.

`--dist worksteal` hands a module's last tests to the other worker when that one runs dry, and a module-scoped fixture
is then built a second time there (the video runs of tests/train/test_video_run.py: 25-30 s twice in every CI run).
`built_once` builds into a folder both workers share, under an flock: the first builds, the other waits for it and
reads the result. What it builds is read-only for its tests: copy a run before changing it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

DONE_MARK = ".built"


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """The folder `name`, made by `build(folder)` once per session and shared by xdist's workers (with one process,
    a folder of that process). A build that failed half way is cleared and made again by the next worker that asks,
    so its error shows there too."""
    base = tmp_path_factory.getbasetemp()
    in_worker = "PYTEST_XDIST_WORKER" in os.environ  # set by pytest-xdist in each worker (gw0, gw1, ...)
    shared = base.parent if in_worker else base  # xdist: <session>/popen-gwN; the session's folder
    folder = shared / f"built-{name}"
    with open(shared / f"built-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, however the build ends
        if not (folder / DONE_MARK).is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            (folder / DONE_MARK).touch()
    return folder
