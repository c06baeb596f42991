"""Finding runs on disk: listing the runs in folders (and the trials of sweep folders there), resolving a run
from a name or a path, a run's path inside a runs folder (never outside it), and deleting a run.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from pkd.runs.files import GROUP_FILE, MANIFEST_FILE, SWEEP_FILE, RunError, State, check_run_name
from pkd.runs.run import Run
from pkd.runs.schema import Manifest

logger = logging.getLogger(__name__)


def list_runs(runs_dirs: list[str | os.PathLike] | str | os.PathLike) -> list[Run]:
    """Every run directory (has a manifest) directly inside the given folders or inside a sweep folder there (one
    holding sweep.json: its trials) or a seed group there (one holding group.json: its members), each once, newest
    first."""
    if isinstance(runs_dirs, (str, os.PathLike)):
        runs_dirs = [runs_dirs]
    found: dict[Path, Run] = {}
    for folder in map(Path, runs_dirs):
        if _is_run_dir(folder):
            found.setdefault(folder.resolve(), Run(folder))
            continue
        for child in _children(folder):
            if _is_run_dir(child):
                found.setdefault(child.resolve(), Run(child))
            elif is_sweep_dir(child) or is_group_dir(child):  # trials / members: ordinary runs, one level down
                found.update((c.resolve(), Run(c)) for c in _children(child) if _is_run_dir(c))

    def created(run: Run) -> float:
        try:
            return float(run.manifest().get(Manifest.CREATED, 0))
        except (OSError, RunError, TypeError, ValueError):
            return 0.0

    return sorted(found.values(), key=created, reverse=True)


def _children(folder: Path) -> list[Path]:
    """The entries of a folder that are not symbolic links, sorted ([] with a warning when it cannot be read)."""
    try:
        return [child for child in sorted(folder.iterdir()) if not child.is_symlink()] if folder.is_dir() else []
    except OSError as exc:
        logger.warning("%s: cannot list runs here (%s)", folder, exc.strerror or exc)
        return []


def is_sweep_dir(path: Path) -> bool:
    """A folder holding a sweep.json file (pkd/sweep/ sweeps)."""
    try:
        return path.is_dir() and (path / SWEEP_FILE).is_file()
    except OSError:
        return False


def is_group_dir(path: Path) -> bool:
    """A folder holding a group.json file (a seed group, pkd/groups.py)."""
    try:
        return path.is_dir() and (path / GROUP_FILE).is_file()
    except OSError:
        return False


def _is_run_dir(path: Path) -> bool:
    """A folder holding a manifest.json file (False, not an error, for anything unreadable)."""
    try:
        return path.is_dir() and (path / MANIFEST_FILE).is_file()
    except OSError:
        return False


def resolve_run(name_or_path: str | os.PathLike, runs_dir: str | os.PathLike | None = None) -> Run:
    """A Run from a path to its directory, or from a bare run name inside `runs_dir`."""
    text = str(name_or_path)
    if "\x00" in text:
        check_run_name(text)  # refuses it with the naming rule, before any path call chokes on the NUL
    path = Path(text).resolve()
    if not path.is_dir() and os.sep not in text and runs_dir is not None:
        path = Path(runs_dir).resolve() / check_run_name(text)
    if not path.is_dir():
        raise RunError(f"run {text!r} not found; list runs with `python -m pkd runs`")
    if not (path / MANIFEST_FILE).is_file():
        raise RunError(f"{path}: not a pkd run directory (no {MANIFEST_FILE})")
    return Run(path)


def _is_dir(path: Path) -> bool:
    """is_dir that answers False for names the OS refuses (too long, bad bytes) instead of raising."""
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def safe_child(runs_dir: str | os.PathLike, name: str) -> Path:
    """Path of run `name` inside `runs_dir`, refusing traversal, absolute paths and symlinks out of it."""
    root = Path(runs_dir).resolve()
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\x00" in name \
            or not _is_dir(root / name):
        check_run_name(name)  # a name that is no folder here must follow the naming rule (message says it)
    path = root / name
    if path.is_symlink() or path.resolve().parent != root:
        raise RunError(f"run {name!r} does not lie inside {root}; refusing")
    return path


def delete_run(runs_dir: str | os.PathLike, name: str) -> None:
    """Delete run `name` inside `runs_dir`, or `sweep/trial` one folder down (a sweep's trial); refuses anything
    else (links, traversal, deeper paths) and runs whose process is alive."""
    parts = name.split("/") if isinstance(name, str) else [name]
    if len(parts) > 2:
        raise RunError(f"run {name!r} does not lie inside {Path(runs_dir).resolve()}; refusing")
    path = Path(runs_dir)
    for part in parts:
        path = safe_child(path, part)
    if not (path / MANIFEST_FILE).is_file():
        raise RunError(f"{path}: not a pkd run directory; refusing to delete it")
    if Run(path).state() == State.RUNNING or Run(path).writer_alive():
        raise RunError(f"run {name!r} is still running; stop it before deleting it")
    shutil.rmtree(path)
