"""A run directory's names and limits: its file names, the run states, the reader limits, the run-name rule and
RunError. Every other module names a run file or a state through this one (tests/test_layout.py checks that no
other source spells them), so the layout of a run directory (see pkd/runs/__init__.py) is written down once.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from enum import Enum
from pathlib import Path
from typing import Any

STATUS_FILE = "status.json"
MANIFEST_FILE = "manifest.json"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
PREFIX_FILE = "prefix.csv"
SUMMARY_FILE = "summary.json"
TEACHER_FILE = "teacher.pt"
TEACHER_LOGITS_FILE = "teacher_logits.pt"  # the teacher's logits per split: runs distilling the same teacher reuse them
TEACHER_REF_FILE = "teacher-ref.json"  # a run that shares another file's teacher records it here (no copy)
SWEEP_FILE = "sweep.json"  # marks a sweep folder (pkd/sweep/): its trials are runs one level down
GROUP_FILE = "group.json"  # marks a seed group (pkd/groups.py): one run per seed of one config, one level down
CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "train.log"
CONSOLE_FILE = "console.log"  # stdout/stderr of a training process launched by the app
STUDENTS_DIR = "students"
LOCK_FILE = ".writer.lock"  # flock'ed by the one training process of the run, for its whole life
LIVE_FILES = (METRICS_FILE, PREFIX_FILE, SUMMARY_FILE)  # what training rewrites or appends to as it goes
# A run's own names: none of them may be a symbolic link (check_contained)
OWN_NAMES = (STATUS_FILE, MANIFEST_FILE, CONFIG_FILE, METRICS_FILE, PREFIX_FILE, SUMMARY_FILE, TEACHER_FILE,
             TEACHER_REF_FILE, TEACHER_LOGITS_FILE,
             CHECKPOINT_FILE, LOG_FILE, CONSOLE_FILE, STUDENTS_DIR, LOCK_FILE)
MAX_PREV_SCALE = 1e3  # a learned residual scale is O(1); anything beyond this is a corrupt or hostile file
RUN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
MAX_JSON_BYTES = 20_000_000
# Reader limits: every run file is checked against them, so one hostile file costs little and breaks one run only.
MAX_JSON_DEPTH = 32  # run files nest 4 levels deep; a deeper document is hostile (and could exhaust recursion)
MAX_LOGITS_BYTES = 1 << 30  # teacher_logits.pt: 70,000 x 10 float32 logits are 2.8 MB; a larger file is not read
MAX_PREFIX_BYTES = 256_000  # prefix.csv holds at most MAX_STUDENTS rows of about 200 bytes
MAX_METRICS_LINE = 256_000  # one metrics record is a few hundred bytes; a longer line is skipped unread
LIVE_METRICS_BYTES = 2_000_000  # what a live panel reads of metrics.jsonl: its newest 2 MB (a whole normal run)
MAX_TIMESTAMP = 4_102_444_800  # 2100-01-01 00:00 UTC: a time outside 0..this is corrupt
MAX_COUNT = 10**18  # FLOPs, parameters: far beyond any model pkd builds


class State(str, Enum):
    """A run's state as status.json records it; DIED is what a reader sees when a RUNNING run's process is gone,
    BROKEN what run lists show for a run with a corrupt or hostile file (Run.info()'s `problem` says which)."""

    CREATED = "created"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    STOPPED = "stopped"
    DIED = "died"
    BROKEN = "broken"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def of(cls, value: Any) -> "State":
        """The State a status.json value names; anything else (hand-edited, hostile) is UNKNOWN."""
        try:
            return cls(value)
        except ValueError:
            return cls.UNKNOWN


ACTIVE_STATES = (State.CREATED, State.RUNNING)  # a process is (about to be) training the run
RESUMABLE_STATES = (State.STOPPED, State.DIED, State.FAILED)
WRITTEN_STATES = tuple(s.value for s in (State.CREATED, State.RUNNING, State.DONE, State.FAILED, State.STOPPED))


class RunError(RuntimeError):
    """A run directory is missing, corrupt or not a run; the message names the file."""


def default_runs_dir() -> Path:
    """Where new runs go: $PKD_RUNS_DIR, else ./runs."""
    return Path(os.environ.get("PKD_RUNS_DIR", "runs"))


def check_run_name(name: str) -> str:
    """Refuse names that could escape the runs directory (`..`, slashes, control characters)."""
    if not isinstance(name, str) or not RUN_NAME_RE.match(name) or ".." in name:
        raise RunError(f"run name {name!r} is not allowed: use 1 to 128 ASCII letters, digits, '-', '_' and '.', "
                       "starting with a letter or a digit, and no '..'")
    return name


def new_run_dir(runs_dir: str | os.PathLike, name: str) -> Path:
    """Create and return an empty, unique folder `<runs_dir>/<name>-<time>-<random>` (unique even within a second)."""
    runs_dir = Path(runs_dir).resolve()
    runs_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for _ in range(100):
        path = runs_dir / check_run_name(f"{name}-{stamp}-{secrets.token_hex(2)}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RunError(f"could not create a unique run directory in {runs_dir}")


def check_contained(path: Path) -> None:
    """Refuse a run directory whose own files or students/ are symbolic links (they may lead anywhere)."""
    links = [path / name for name in OWN_NAMES if (path / name).is_symlink()]
    students = path / STUDENTS_DIR
    if students.is_dir() and not students.is_symlink():
        links += [p for p in students.iterdir() if p.is_symlink()]
    if path.is_symlink() or links:
        raise RunError(f"{(links or [path])[0]} is a symbolic link; a run directory is written only inside "
                       "itself: replace the link with the file itself or start a new run")
