"""The run listing, kept between sessions.

Every browser tab is a new Streamlit session that runs the whole script, and its sidebar, its link and the pages'
pickers list every run: each run's manifest, status, prefix table and summary read and checked again (with a dozen
shipped runs, a good part of a re-open's server time). These memos keep the answers in one dict per server process,
shared by every session, each with the stat stamps of what it was read from: a file or folder that changed is read
again by the next script run, whichever session it is. An active run's info is never kept (its process may die
without touching a file, and it then reads as died).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable

import streamlit as st

from pkd.runs import Run, list_runs
from pkd.runs.files import (ACTIVE_STATES, GROUP_FILE, MANIFEST_FILE, PREFIX_FILE, STATUS_FILE, SUMMARY_FILE,
                            SWEEP_FILE)
from pkd.runs.schema import RunInfo

INFO_FILES = (MANIFEST_FILE, STATUS_FILE, PREFIX_FILE, SUMMARY_FILE)  # what Run.info() reads
_LOCK = threading.Lock()


@st.cache_resource(show_spinner=False)
def memo() -> dict:
    """The one dict of this server process (every session's script gets the same object; Streamlit's "Clear
    cache" empties it): "runs" -> (stamp, paths), "ids" -> (stamp, ids), run path -> (stamp, info)."""
    return {}


def _stat(path: str | os.PathLike) -> tuple | None:
    """(mtime, size, inode) of a file or folder, None when it is not there: an atomic rewrite (a new inode) or an
    append changes it."""
    try:
        found = os.stat(path)
    except (OSError, ValueError):
        return None
    return found.st_mtime_ns, found.st_size, found.st_ino


def _subfolders(folder: str) -> list[str]:
    try:
        with os.scandir(folder) as entries:
            return sorted(e.path for e in entries if e.is_dir(follow_symlinks=False))
    except (OSError, ValueError):
        return []


def listing_stamp(roots: list[Path]) -> tuple:
    """The stamps of every folder where runs and sweeps are looked for: the roots, the folders in them and those in
    a sweep or seed-group folder. A run or sweep made (its manifest written), renamed or removed changes one."""
    out = []
    for root in map(str, roots):
        out.append((root, _stat(root)))
        for child in _subfolders(root):
            out.append((child, _stat(child)))
            if os.path.isfile(os.path.join(child, SWEEP_FILE)) or os.path.isfile(os.path.join(child, GROUP_FILE)):
                out += [(inner, _stat(inner)) for inner in _subfolders(child)]
    return tuple(out)


def _kept(key: str, stamp: tuple, compute: Callable, keep: Callable = lambda value: True):
    """memo()[key]'s value when it was made with this stamp, else compute() (kept when keep(value))."""
    store = memo()
    with _LOCK:
        hit = store.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    value = compute()
    if keep(value):
        with _LOCK:
            store[key] = (stamp, value)
    return value


def runs_in(roots: list[Path]) -> list[Run]:
    """pkd.runs.list_runs(roots) (newest first), read again only when a folder it looks at has changed."""
    stamp = listing_stamp(roots)
    paths = _kept("runs", (tuple(map(str, roots)), stamp), lambda: [run.path for run in list_runs(roots)])
    return [Run(path) for path in paths]  # a fresh Run for each caller: nothing is shared but the paths


def ids(roots: list[Path], compute: Callable[[], dict[str, str]]) -> dict[str, str]:
    """The URL's run and sweep ids (app.common.url_ids' `compute`), made again only when the listing changed."""
    return dict(_kept("ids", (tuple(map(str, roots)), listing_stamp(roots)), compute))


def info(run: Run) -> dict:
    """run.info(), read again only when the run's folder or a file info reads has changed; an active run's is
    always read (see the module's docstring). A copy: callers may change it."""
    stamp = (_stat(run.path),) + tuple(_stat(Path(run.path) / name) for name in INFO_FILES)
    active = {str(state) for state in ACTIVE_STATES}
    return dict(_kept(str(run.path), stamp, run.info, keep=lambda value: value[RunInfo.STATE] not in active))
