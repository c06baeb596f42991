"""Where pkd may write, and how it reads the files it did not just write itself: the one rule every writer follows.

A write goes into the folder the user named (a run directory, a sweep folder, the folder of a `--csv` or `--out`
file), resolved first; it never goes through a symbolic link, never lands outside that folder, and never replaces a
file that pkd did not create for that purpose unless the user asked (`--force`, whose help names what it
overwrites). The files of a run or a sweep are written by that run or sweep only: an output named on the command
line is refused inside a run directory or a sweep folder, whatever the flags.

Reads of logs and journals never block and are bounded: a FIFO or a device where a file should be is refused before
it is read (opened non-blocking, checked on the open descriptor), and only the last `max_bytes` are read.
"""

from __future__ import annotations

import os
from pathlib import Path

from pkd.procs import process_alive
from pkd.runs.files import MANIFEST_FILE, SWEEP_FILE, RunError
from pkd.runs.io import atomic_write_bytes, open_regular

def inside(folder: str | os.PathLike, name: str | os.PathLike) -> Path:
    """`folder/name` for writing: RunError when any part of it below the (resolved) folder is a symbolic link
    or `name` leads out of the folder (`..`, an absolute path)."""
    root = Path(folder).resolve()
    path, part = root / name, root
    for piece in Path(name).parts:
        part = part / piece
        if part.is_symlink():
            raise RunError(f"{part} is a symbolic link; pkd writes only inside {root}: remove the link (put the "
                           "real file or folder there) or choose another folder")
    if not path.resolve().is_relative_to(root):
        raise RunError(f"{name} leads out of {root}; pkd writes only inside the folder it was given")
    return path


def holder(path: Path) -> tuple[Path, str] | None:
    """The run directory ("run") or sweep folder ("sweep") that holds the resolved `path`: the nearest folder
    above it with a manifest.json or a sweep.json; None when there is none."""
    for folder in path.parents:
        try:
            if (folder / MANIFEST_FILE).is_file():
                return folder, "run"
            if (folder / SWEEP_FILE).is_file():
                return folder, "sweep"
        except OSError:
            continue
    return None


def output_file(given: str | os.PathLike, flag: str, force: bool = False) -> Path:
    """A file named on the command line to be written (`--csv FILE`), resolved and checked: RunError when it is a
    symbolic link, its folder does not exist, it lies inside a run directory or a sweep folder, or it exists already
    and `force` was not given (then it must be a regular file)."""
    if Path(given).is_symlink():
        raise RunError(f"{flag} {given} is a symbolic link; give the path of a real file")
    path = Path(given).expanduser().resolve()
    if not path.parent.is_dir():
        raise RunError(f"{flag} {given}: folder {path.parent} does not exist; create it first")
    owner = holder(path)
    if owner is not None:
        raise RunError(f"{flag} {path} lies inside the {owner[1]} {owner[0]}; its files are written by that "
                       f"{owner[1]} only: write the file outside it")
    if path.exists() or path.is_symlink():
        if not force or not path.is_file():
            raise RunError(f"{flag} {path} already exists; choose another file, or add --force to replace it")
    return path


def write_output(path: Path, data: bytes, flag: str) -> None:
    """Write a checked output_file atomically (a temp file beside it, then a rename: never half-written)."""
    atomic_write_bytes(path, data, fix=f"choose another {flag}")


def clear_stale_temps(folder: Path) -> None:
    """Remove the temp files (`.<name>.<pid>.<hex>.tmp`, pkd.runs.io's) that writers killed mid-write left in
    `folder`; those of live processes stay."""
    for tmp in folder.glob(".*.tmp") if folder.is_dir() else []:
        parts = tmp.name.split(".")
        if len(parts) >= 4 and parts[-3].isdigit() and int(parts[-3]) != os.getpid() \
                and not process_alive(int(parts[-3])) and not tmp.is_dir():
            tmp.unlink(missing_ok=True)


def tail_bytes(path: Path, max_bytes: int) -> bytes:
    """The last `max_bytes` bytes of a regular file (b"" when there is none); never blocks: RunError for a FIFO, a
    device or a folder in its place."""
    try:
        with open_regular(path) as fh:
            size = os.fstat(fh.fileno()).st_size
            fh.seek(max(0, size - max_bytes))
            return fh.read(max_bytes)
    except FileNotFoundError:
        return b""

