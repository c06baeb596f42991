"""The sweep folder: its file names, its flock files, the Sweep that reads it, and finding sweeps.

A sweep is many runs of one base config, their settings chosen by Optuna, in one folder (every trial is an
ordinary run directory: `pkd runs`, `pkd eval` and the app open it):

    sweep.json     what the sweep is: base config, search space, objective, teacher (written once, when created)
    base.yaml      the base config, resolved (BASE with its overrides): what every trial starts from
    space.yaml     the search space as given, checked
    journal.log    Optuna's study (JournalFileBackend: append-only, safe for several worker processes), or
                   none: sweep.json names the database holding it (`pkd sweep --storage URL`, pkd.sweep.storage)
    base/          the base run, trained first only when BASE has no teacher.checkpoint: its teacher is shared
    trial-NNN/     one run per Optuna trial: `python -m pkd train --config base.yaml --run-dir trial-NNN
                   --teacher-ref key=value ...`, sharing the sweep's teacher (teacher-ref.json, no copy)
    sweep.log      output of a sweep started from the app
    .locks/        flock files: one per trial held by the worker that trains it, one around asking for a trial
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from pkd.config import RunConfig, load_config
from pkd.procs import lock_busy, record_holder, take_lock
from pkd.runs import SWEEP_FILE, Run, RunError, list_runs, read_bounded, read_json
from pkd.runs.place import inside
from pkd.sweep.journal_check import load_study
from pkd.sweep.space import OBJECTIVES, Space, SweepError, parse_space

logger = logging.getLogger(__name__)

BASE_FILE = "base.yaml"
SPACE_FILE = "space.yaml"
JOURNAL_FILE = "journal.log"
SWEEP_LOG = "sweep.log"
LOCKS_DIR = ".locks"
STOP_FILE = "stop-request"  # a number: workers that started under a smaller one stop (reaches other machines)
BASE_RUN = "base"
STUDY_NAME = "pkd"


def lock_fd(path: Path, blocking: bool = True) -> int | None:
    """An open descriptor holding an exclusive flock on `path` (created), or None when another process holds it
    and `blocking` is False. The kernel drops the lock when the holder dies, however it dies. The holder writes
    "<host> <pid> <start time>" into the file (what stop_sweep signals)."""
    if path.parent.is_symlink():
        raise SweepError(f"{path.parent} is a symbolic link; a sweep writes only inside its folder: remove it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = take_lock(path, blocking)
    if fd is not None:
        record_holder(fd)
    return fd


@contextlib.contextmanager
def held(path: Path) -> Iterator[None]:
    """Hold the flock on `path` (waiting for it) for the `with` block; SweepError when it cannot be locked."""
    fd = lock_fd(path)
    if fd is None:
        raise SweepError(f"{path}: cannot be locked; the sweep folder needs a filesystem with locks (flock)")
    try:
        yield
    finally:
        os.close(fd)


def trial_name(number: int) -> str:
    """The folder name of trial `number` (trial-NNN)."""
    return f"trial-{number:03d}"


@dataclass
class Sweep:
    """One sweep folder (see the module docstring); readers of its files and its Optuna study."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def base_file(self) -> Path:
        return self.path / BASE_FILE

    def exists(self) -> bool:
        return (self.path / SWEEP_FILE).is_file()

    def meta(self) -> dict:
        """sweep.json, checked; SweepError naming the file and the field at fault."""
        where = self.path / SWEEP_FILE
        try:
            meta = read_json(where)
        except (OSError, RunError) as exc:
            raise SweepError(f"{where}: cannot be read ({exc})") from None
        checks = {"base": dict, "trial_base": dict, "space": dict, "teacher": dict, "objective": str, "created": float}
        for key, kind in checks.items():
            value = meta.get(key) if isinstance(meta, dict) else None
            if not isinstance(value, kind if kind is not float else (int, float)) or isinstance(value, bool):
                raise SweepError(f"{where}: {key} is missing or not a {kind.__name__}; the file is damaged")
        if meta["objective"] not in OBJECTIVES or not isinstance(meta["teacher"].get("share"), bool) \
                or not isinstance(meta["teacher"].get("path"), str):
            raise SweepError(f"{where}: objective or teacher is not valid; the file is damaged")
        return meta

    def space(self) -> Space:
        return parse_space(self.meta()["space"], f"{self.path / SWEEP_FILE} space")

    def base_config(self) -> RunConfig:
        """base.yaml as every trial starts from it (checked, as a training process reads it)."""
        return load_config(self.base_file)

    def teacher_overrides(self) -> list[str]:
        """What every trial adds to base.yaml to use the sweep's one teacher (nothing when BASE names it)."""
        teacher = self.meta()["teacher"]
        return [f"teacher.checkpoint={json.dumps(teacher['path'])}"] if teacher.get("source") == BASE_RUN else []

    def database(self) -> str | None:
        """The URL (without its password) of the database holding the study, None when it is journal.log (or
        while sweep.json is not written yet: a journal sweep creates its study first)."""
        url = self.meta().get("storage") if self.exists() else None
        return url if isinstance(url, str) and url else None

    def study_name(self) -> str:
        name = self.meta().get("study")
        return name if isinstance(name, str) and name else STUDY_NAME

    def storage(self) -> Any:
        """The study's Optuna storage: the database sweep.json names (pkd.sweep.storage), else journal.log
        (created when missing; never through a link)."""
        if self.database():
            from pkd.sweep.storage import connect

            return connect(self.database(), self.meta().get("heartbeat_s"))
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(self.own(JOURNAL_FILE))))

    def study(self) -> Any:
        """The sweep's Optuna study: in its database, or in journal.log, checked first (journal_check): SweepError
        in one line naming journal.log when it is empty, foreign, damaged or not a regular file."""
        if self.database():
            import optuna

            return optuna.load_study(study_name=self.study_name(), storage=self.storage())
        return load_study(self.storage, self.path / JOURNAL_FILE, STUDY_NAME)

    def trial_dir(self, number: int) -> Path:
        return self.own(trial_name(number))

    def own(self, name: str) -> Path:
        """The sweep's own file or folder `name` for writing; SweepError when it is a symbolic link (a trial folder
        replaced by a link would carry the trial's files, and their deletion, out of the sweep)."""
        try:
            return inside(self.path, name)  # pkd.runs.place: the one rule for where pkd writes
        except RunError as exc:
            raise SweepError(f"{exc}; then run the sweep again") from None

    def lock_path(self, name: str) -> Path:
        return self.path / LOCKS_DIR / f"{name}.lock"

    def runs(self) -> list[Run]:
        """The base run (if any) and every trial's run, newest first."""
        return list_runs(self.path)

    def active(self) -> bool:
        """A worker holds a trial (or the base run): the sweep is running somewhere on this filesystem."""
        folder = self.path / LOCKS_DIR
        names = sorted(folder.glob("*.lock")) if folder.is_dir() else []
        return any(lock_busy(p) for p in names if p.stem not in ("ask", "create"))


def stop_generation(sweep_path: Path) -> int:
    """The number in the sweep's stop-request file (0 when there is none or it is unreadable)."""
    try:  # never blocks: a FIFO or a device in its place reads as no request
        text = read_bounded(Path(sweep_path) / STOP_FILE, 64, "a stop request").decode("ascii").strip()
    except (OSError, RunError, UnicodeDecodeError):
        return 0
    return int(text) if text.isdigit() and len(text) < 19 else 0


def find_sweeps(folders: list[str | os.PathLike]) -> list[Sweep]:
    """The sweeps given, or directly inside the given folders, newest first (unreadable ones last)."""
    found: dict[Path, Sweep] = {}
    for folder in map(Path, folders):
        candidates = [folder] if (folder / SWEEP_FILE).is_file() else []
        try:
            candidates += sorted(c for c in folder.iterdir() if not c.is_symlink() and (c / SWEEP_FILE).is_file()) \
                if folder.is_dir() and not candidates else []
        except OSError as exc:
            logger.warning("%s: cannot list sweeps here (%s)", folder, exc.strerror or exc)
        found.update((c.resolve(), Sweep(c.resolve())) for c in candidates)

    def created(sweep: Sweep) -> float:
        try:
            return float(sweep.meta()["created"])
        except SweepError:
            return 0.0

    return sorted(found.values(), key=created, reverse=True)

