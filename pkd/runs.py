"""The run directory: the only contract between training (writer) and the CLI/app (readers).

Layout of one run directory (every file is written by this module only):

    manifest.json     seed, resolved config, package versions, command, created time (written once)
    config.yaml       the resolved config (re-runnable with `python -m pkd train --config`)
    status.json       replaced atomically: state, pid, pid_start, stage, student, epoch, epochs, progress,
                      heartbeat, message, started, updated
    metrics.jsonl     append-only JSON lines: {"event": "epoch"|"teacher_done"|"student_done"|..., ...}
    prefix.csv        one row per ensemble prefix k (see PREFIX_COLUMNS), rewritten atomically
    summary.json      teacher figures + per-student rows + anytime curve, rewritten atomically
    teacher.pt        teacher state_dict;  students/student_01.pt ... : student state_dicts (tensors only)
    teacher-ref.json  instead of teacher.pt (optional, `train --teacher-ref`): the path and sha256 of a shared
                      teacher file (a sweep's trials use one teacher), followed by load_teacher
                      plus the student's prev_scale s_k (residual ensemble E_k = s_k * E_(k-1) + z_k)
    checkpoint.pt     resume state (students done, current student, model/optimizer/scheduler, epoch, RNG)
    train.log         human-readable log of the training process
    console.log       stdout/stderr of a process launched by the app (optional)

States (`State`): created, running, done, failed, stopped; a running run whose process is gone reads as died.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import hashlib
import io
import json
import logging
import math
import os
import re
import secrets
import shutil
import signal
import stat
import sys
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Iterator

import torch
import yaml

from pkd.config import MAX_STUDENTS
from pkd.procs import lock_busy, proc_start_time, process_alive

logger = logging.getLogger(__name__)

STATUS_FILE = "status.json"
MANIFEST_FILE = "manifest.json"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
PREFIX_FILE = "prefix.csv"
SUMMARY_FILE = "summary.json"
TEACHER_FILE = "teacher.pt"
TEACHER_LOGITS_FILE = "teacher_logits.pt"  # the teacher's logits per split: runs distilling the same teacher reuse them
TEACHER_REF_FILE = "teacher-ref.json"  # a run that shares another file's teacher records it here (no copy)
SWEEP_FILE = "sweep.json"  # marks a sweep folder (pkd/sweep.py): its trials are runs one level down
CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "train.log"
CONSOLE_FILE = "console.log"  # stdout/stderr of a training process launched by the app
STUDENTS_DIR = "students"
LOCK_FILE = ".writer.lock"  # flock'ed by the one training process of the run, for its whole life
_HELD_LOCKS: dict[str, int] = {}  # run path -> open lock fd of this process (closing it would drop the lock)
PREFIX_COLUMNS = (
    "k", "arch", "params", "student_flops", "cumulative_flops", "share_of_teacher", "prefix_acc", "solo_acc",
    "prefix_val_acc", "solo_val_acc", "prev_scale",
)
LIVE_FILES = (METRICS_FILE, PREFIX_FILE, SUMMARY_FILE)  # what training rewrites or appends to as it goes
MAX_PREV_SCALE = 1e3  # a learned residual scale is O(1); anything beyond this is a corrupt or hostile file
RUN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
MAX_JSON_BYTES = 20_000_000
FAULT_ENV = "PKD_FAULT"  # test-only fault injection, read in _fault() alone; see there
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


# ----------------------------------------------------------------------------------------------- atomic writes

_fault_counts: dict[str, int] = {}


def _fault(path: Path, fh: Any, data: bytes) -> None:
    """Test-only fault injection, the one place that reads $PKD_FAULT = "<action>:<file name>:<n>".

    On the n-th write (counted per process) of a file called <file name>: action "kill" writes the first half of
    `data` to the open file `fh`, flushes it and SIGKILLs this process (a crash in the middle of a write);
    action "erofs" raises OSError(EROFS) as a read-only disk would. Unset (always, outside tests): no effect.
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    action, name, n = (spec.split(":") + ["", "", ""])[:3]
    if name != path.name:
        return
    _fault_counts[name] = _fault_counts.get(name, 0) + 1
    if str(_fault_counts[name]) != n:
        return
    if action == "kill":
        fh.write(data[: len(data) // 2])
        fh.flush()
        os.fsync(fh.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "erofs":
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))


def write_error(path: Path, exc: OSError) -> OSError:
    """The same kind of OSError, with a one-line message naming the file and the fix."""
    reason = exc.strerror or exc.__class__.__name__
    return type(exc)(exc.errno, f"cannot write {path} ({reason}); free disk space or make the run directory "
                                "writable, then continue with `python -m pkd train --resume <run>`")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temp file in the same folder + fsync + os.replace (never half-written).

    Raises:
        OSError: the disk refused the write (full, read-only); the message names `path`, which is unchanged.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as fh:  # exclusive: never follows a link planted at the temp name
            _fault(path, fh, data)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise write_error(path, exc) from None
    finally:
        try:
            tmp.unlink()
        except OSError:
            pass


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True).encode())


def save_tensors(path: Path, obj: dict) -> None:
    """Atomically save a dict of tensors and primitives (loadable with weights_only=True)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_tensors(path: Path) -> dict:
    """Load a file written by save_tensors with weights_only=True; RunError names the file if it is bad."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad or hostile file
        raise RunError(f"{path}: not a pkd weights file ({exc.__class__.__name__}); it was not loaded") from None
    if not isinstance(obj, dict):
        raise RunError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    return obj


def open_regular(path: Path) -> io.BufferedReader:
    """Open a run file for binary reading; RunError unless it is a regular file (a FIFO or device would block or
    never end). Opened non-blocking and checked on the open descriptor, so a swapped-in FIFO cannot hang us."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RunError(f"{path}: not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: Path, limit: int, what: str = "a pkd run file") -> bytes:
    """The bytes of a regular file of at most `limit` bytes (never more is read); RunError names it otherwise."""
    with open_regular(path) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise RunError(f"{path}: file is over {limit:,} bytes, too large to be {what}")
    return data


def read_json(path: Path) -> Any:
    """Parse a JSON file of a run; RunError names the file when it is not a regular file, huge, corrupt or nested
    deeper than MAX_JSON_DEPTH."""
    path = Path(path)
    data = read_bounded(path, MAX_JSON_BYTES)
    try:
        obj = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise RunError(f"{path}: JSON nested too deeply to be a pkd run file") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, or an integer of over 4300 digits
        raise RunError(f"{path}: corrupt JSON ({exc.__class__.__name__})") from None
    if _too_deep(obj, MAX_JSON_DEPTH):
        raise RunError(f"{path}: JSON nested over {MAX_JSON_DEPTH} levels deep, too deep to be a pkd run file")
    return obj


def _too_deep(obj: Any, limit: int) -> bool:
    """True when lists and mappings nest more than `limit` levels (walked without recursion, in O(limit) memory)."""
    stack = [iter([obj])]
    while stack:
        for item in stack[-1]:
            if isinstance(item, (list, dict)):
                if len(stack) > limit:
                    return True
                stack.append(iter(item.values() if isinstance(item, dict) else item))
                break
        else:
            stack.pop()
    return False


# ----------------------------------------------------------------------------------------------- checked fields
# A rule is (kind, low, high): "int" a whole number, "number" a finite real, both within low..high; "text" a
# string of low..high characters. Booleans are never numbers. A missing field passes; a null one only where the file
# may hold nulls (status.json, the manifest), and an empty prefix.csv cell reads as None.

_TIME = ("number", 0, MAX_TIMESTAMP)
_ACCURACY = ("number", 0, 1)
_COUNT = ("int", 0, MAX_COUNT)
_NAME = ("text", 0, 256)
STATUS_RULES = {
    "state": ("text", 1, 32), "pid": ("int", 1, 2**31 - 1), "pid_start": ("int", 0, 2**63), "stage": _NAME,
    "student": ("int", 0, MAX_STUDENTS), "epoch": ("int", 0, 10**6), "epochs": ("int", 0, 10**6),
    "progress": ("number", 0, 1), "loss": ("number", -1e30, 1e30), "message": ("text", 0, 20_000),
    "started": _TIME, "updated": _TIME, "heartbeat": _TIME, "scan_backend": _NAME, "device": _NAME,
}
PREFIX_RULES = {
    "k": ("int", 1, MAX_STUDENTS), "arch": _NAME, "params": _COUNT, "student_flops": ("number", 0, MAX_COUNT),
    "cumulative_flops": ("number", 0, MAX_COUNT), "share_of_teacher": ("number", 0, 1e9), "prefix_acc": _ACCURACY,
    "solo_acc": _ACCURACY, "prefix_val_acc": _ACCURACY, "solo_val_acc": _ACCURACY,
    "prev_scale": ("number", -MAX_PREV_SCALE, MAX_PREV_SCALE),
}
PREFIX_REQUIRED = ("k", "student_flops", "cumulative_flops", "prefix_acc")  # columns every reader of a row indexes
PREFIX_FILLED = ("k", "prefix_acc")  # cells that may never be empty
TEACHER_RULES = {"arch": _NAME, "flops": ("number", 0, MAX_COUNT), "params": _COUNT, "test_acc": _ACCURACY,
                 "val_acc": _ACCURACY}
DRAWN_RULES = {"per_digit": ("int", 1, 10**6), "seed": ("int", -2**63, 2**64), "n": ("int", 1, 10**7),
               "teacher_acc": _ACCURACY}
VIDEO_RULES = {"split": _NAME, "n": ("int", 1, 10**7), "teacher_reversal_change": _ACCURACY,
               "teacher_digit_acc": _ACCURACY}
VIDEO_LISTS = ("prefix_reversal_change", "prefix_digit_acc")  # one share per prefix k = 1..K
ANYTIME_RULES = {"confidence": _ACCURACY, "acc": _ACCURACY, "mean_flops": ("number", 0, MAX_COUNT)}
SUMMARY_RULES = {"name": _NAME, "dataset": _NAME, "mode": _NAME, "flops_unit": _NAME,
                 "k_planned": ("int", 0, MAX_STUDENTS)}
MANIFEST_RULES = {"created": _TIME, "name": _NAME, "format": ("int", 0, 1000), "seed": ("int", -2**63, 2**64)}
CONFIG_SECTIONS = ("data", "teacher", "students", "distill")  # the config's mappings
CONFIG_TEXTS = (("name",), ("device",), ("data", "dataset"), ("teacher", "arch"), ("students", "arch"),
                ("distill", "mode"))
METRIC_RULES = {**PREFIX_RULES, **TEACHER_RULES, "event": ("text", 1, 64), "time": _TIME, "stage": _NAME,
                "student": ("int", 0, MAX_STUDENTS), "epoch": ("int", 0, 10**6), "epochs": ("int", 0, 10**6),
                "seconds": ("number", 0, 1e9), "lr": ("number", 0, 1e6)}


def _show(value: Any, limit: int = 40) -> str:
    """A value as an error message quotes it: its repr, control characters escaped, cut to `limit` characters."""
    return printable(repr(value), limit)


def printable(text: Any, limit: int = 200) -> str:
    """`text` safe to print on one terminal line: control characters (newline, tab, ANSI escapes) and undecodable
    bytes escaped as repr would, cut to `limit` characters."""
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _finite(value: Any) -> bool:
    """A real number that is not a bool, NaN or infinite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) or math.isfinite(value)


def _field_problem(name: str, value: Any, rule: tuple) -> str | None:
    """Why `value` breaks `rule` = (kind, low, high), in words naming the field; None when it fits."""
    kind, low, high = rule
    if value is None:
        return None
    if kind == "text":
        if isinstance(value, str) and low <= len(value) <= high:
            return None
        return f"{name} {_show(value)} is not a text of {low} to {high} characters"
    if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        return f"{name} {_show(value)} is not a whole number"
    if not _finite(value):
        return f"{name} {_show(value)} is not a finite number"
    if not low <= value <= high:
        return f"{name} {_show(value)} is outside {_figure(low)}..{_figure(high)}"
    return None


def _figure(value: float) -> str:
    """A range bound as messages print it: 4,102,444,800 or 1e+30."""
    return f"{value:,}" if isinstance(value, int) and abs(value) < 10**15 else f"{value:g}"


def _mapping_problem(mapping: Any, rules: dict, where: str = "", required: tuple = (),
                    nullable: bool = False) -> str | None:
    """The first field of `mapping` that breaks its rule, is required and missing, or (unless `nullable`) is
    null; None when all fit. `where` prefixes the field names in the message ("teacher.")."""
    if not isinstance(mapping, dict):
        return f"{where.rstrip('.') or 'it'} is {_show(mapping)}, not a mapping"
    for key in required:
        if key not in mapping:
            return f"{where}{key} is missing"
    for key, rule in rules.items():
        if key in mapping and mapping[key] is None and not nullable:
            return f"{where}{key} is null, not a value"
        problem = _field_problem(f"{where}{key}", mapping.get(key), rule)
        if problem:
            return problem
    return None


def _manifest_problem(manifest: dict) -> str | None:
    """What is wrong with a parsed manifest (its fields, config sections, names, the schedule); None when sound."""
    config = manifest["config"]
    problem = _mapping_problem(manifest, MANIFEST_RULES, nullable=True) or _field_problem(
        "config.seed", config.get("seed"), MANIFEST_RULES["seed"])
    for section in CONFIG_SECTIONS:
        if problem is None and section in config and not isinstance(config[section], dict):
            problem = f"config.{section} is {_show(config[section])}, not a mapping"
    for keys in CONFIG_TEXTS:
        problem = problem or _field_problem("config." + ".".join(keys), get_field(config, *keys), _NAME)
    schedule = get_field(config, "students", "schedule")
    if problem is None and "schedule" in config.get("students", {}) and (
            not isinstance(schedule, list) or len(schedule) > MAX_STUDENTS
            or not all(isinstance(entry, dict) for entry in schedule)):
        problem = f"config.students.schedule is {_show(schedule)}, not a list of up to {MAX_STUDENTS} mappings"
    command = manifest.get("command", [])
    if problem is None and (not isinstance(command, list) or not all(isinstance(a, str) for a in command)):
        problem = f"command {_show(command)} is not a list of texts"
    return problem


def _summary_problem(summary: dict) -> str | None:
    """What is wrong with a parsed summary.json (teacher, prefixes, anytime curve, names); None when sound."""
    problem = _mapping_problem(summary, SUMMARY_RULES)
    if problem is None and "teacher" in summary:
        problem = _mapping_problem(summary["teacher"], TEACHER_RULES, "teacher.")
    for key, rules, required in (("prefixes", PREFIX_RULES, PREFIX_REQUIRED),
                                 ("anytime", ANYTIME_RULES, tuple(ANYTIME_RULES))):
        items = summary.get(key)
        if problem is None and key in summary:
            if not isinstance(items, list) or len(items) > 1000:
                return f"{key} is {_show(items)}, not a list of up to 1000 mappings"
            problem = next(filter(None, (_mapping_problem(item, rules, f"{key}[{i}].", required)
                                         for i, item in enumerate(items))), None)
    if problem is None and "drawn" in summary:
        problem = _drawn_problem(summary["drawn"])
    if problem is None and "video" in summary:
        problem = _video_problem(summary["video"])
    return problem


def _video_problem(video: Any) -> str | None:
    """What is wrong with summary.json's "video" (reversal test, digit identity of clip runs); None when sound."""
    if not isinstance(video, dict):
        return f"video is {_show(video)}, not a mapping"
    problem = _mapping_problem(video, VIDEO_RULES, "video.", tuple(VIDEO_RULES))
    for key in VIDEO_LISTS:
        values = video.get(key)
        if problem is None and (not isinstance(values, list) or len(values) > MAX_STUDENTS):
            return f"video.{key} is {_show(values)}, not a list of up to {MAX_STUDENTS} shares"
        problem = problem or next(filter(None, (_field_problem(f"video.{key}[{i}]", v, _ACCURACY)
                                                for i, v in enumerate(values))), None)
    return problem


def _drawn_problem(drawn: Any) -> str | None:
    """What is wrong with summary.json's "drawn" (accuracies on the drawn-digit set); None when sound."""
    if not isinstance(drawn, dict):
        return f"drawn is {_show(drawn)}, not a mapping"
    problem = _mapping_problem(drawn, DRAWN_RULES, "drawn.", tuple(DRAWN_RULES))
    accs = drawn.get("prefix_acc")
    if problem is None and (not isinstance(accs, list) or len(accs) > MAX_STUDENTS):
        return f"drawn.prefix_acc is {_show(accs)}, not a list of up to {MAX_STUDENTS} accuracies"
    return problem or next(filter(None, (_field_problem(f"drawn.prefix_acc[{i}]", v, _ACCURACY)
                                         for i, v in enumerate(accs))), None)


def _read_lines(fh: io.BufferedReader, limit: int) -> Iterator[bytes | None]:
    """Yield each line of a binary file, or None for a line over `limit` bytes (read past in chunks, never held)."""
    while True:
        line = fh.readline(limit + 1)
        if not line:
            return
        if len(line) <= limit:
            yield line
            continue
        while line and not line.endswith(b"\n"):
            line = fh.readline(1 << 16)
        yield None


def _parse_record(line: bytes | None) -> tuple[dict | None, str]:
    """One metrics.jsonl line as a checked record, or (None, why it is skipped)."""
    if line is None:
        return None, f"longer than {MAX_METRICS_LINE:,} bytes"
    try:
        record = json.loads(line)
    except RecursionError:
        return None, "nested too deeply"
    except (ValueError, UnicodeDecodeError):
        return None, "not JSON (half-written or corrupt)"
    if not isinstance(record, dict) or not isinstance(record.get("event"), str):
        return None, f"{_show(record)} is not a mapping with an event"
    if _too_deep(record, MAX_JSON_DEPTH):
        return None, "nested too deeply"
    problem = _mapping_problem(record, METRIC_RULES)
    for key, value in record.items():
        if problem is None and key.endswith("_acc"):
            problem = _field_problem(key, value, _ACCURACY)
        elif problem is None and key.startswith("train_"):
            problem = _field_problem(key, value, ("number", -1e30, 1e30))
    return (None, problem) if problem else (record, "")


def _parse_prefix_table(path: Path, text: str) -> list[dict]:
    """prefix.csv rows with every cell checked against PREFIX_RULES and k = 1..n; RunError names row and column."""
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in PREFIX_REQUIRED if c not in (reader.fieldnames or [])]
    if text.strip() and missing:
        raise RunError(f"{path}: no {missing[0]} column (expected {', '.join(PREFIX_COLUMNS)})")
    rows = []
    for number, cells in enumerate(reader, 1):
        if number > MAX_STUDENTS:
            raise RunError(f"{path}: more than {MAX_STUDENTS} rows; a run has at most {MAX_STUDENTS} students")
        row = {key: _number(value) for key, value in cells.items() if key is not None and key not in PREFIX_RULES}
        for key, rule in PREFIX_RULES.items():
            if key not in cells:
                continue
            row[key], problem = _parse_cell(key, cells[key], rule)
            if problem is None and key in PREFIX_FILLED and row[key] is None:
                problem = f"{key} is empty"
            if problem:
                raise RunError(f"{path} row {number}: {problem}")
        if row["k"] != number:
            raise RunError(f"{path} row {number}: k is {row['k']}, expected {number} (k counts 1, 2, ... n)")
        rows.append(row)
    return rows


def _parse_cell(name: str, cell: str | None, rule: tuple) -> tuple[Any, str | None]:
    """One prefix.csv cell as its column's type ("" -> None), and the problem when it is not one."""
    if cell is None or cell == "":
        return None, None
    if rule[0] == "text":
        return cell, _field_problem(name, cell, rule)
    for kind in (int, float) if rule[0] == "number" else (int,):  # "188122" reads back as the int it was
        try:
            return kind(cell), _field_problem(name, kind(cell), rule)
        except ValueError:
            continue
    return None, f"{name} {_show(cell)} is not a {'whole number' if rule[0] == 'int' else 'number'}"


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape results, recorded in every manifest."""
    from importlib import metadata

    versions = {"python": sys.version.split()[0]}
    for name in ("torch", "torchvision", "numpy", "mamba-ssm", "pkd"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    import pkd

    versions["pkd"] = pkd.__version__
    return versions


# ----------------------------------------------------------------------------------------------- the run

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


def resolve_run(name_or_path: str | os.PathLike, runs_dir: str | os.PathLike | None = None) -> "Run":
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


@dataclass
class Run:
    """One run directory; writers and readers of every file in it."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    # -------------------------------------------------------------------------- creation
    @classmethod
    def create(cls, runs_dir: str | os.PathLike, name: str, config: dict, command: list[str] | None = None) -> "Run":
        """Make a new, unique run directory `<runs_dir>/<name>-<time>-<random>` and write manifest and config."""
        return cls._initialise(new_run_dir(runs_dir, name), config, command)

    @classmethod
    def create_at(cls, path: str | os.PathLike, config: dict, command: list[str] | None = None) -> "Run":
        """Make a run in exactly `path` (must not exist, or hold nothing but console.log: nothing is overwritten).

        The path is resolved first (`a/missing/../b` is `a/b`), so the check sees the folder that would be written.
        """
        path = Path(path).resolve()
        if path.exists() and (not path.is_dir() or any(p.name != CONSOLE_FILE for p in path.iterdir())):
            raise RunError(f"{path} already exists and is not empty; choose another --run-dir or delete it")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(exist_ok=True)
        return cls._initialise(path, config, command)

    @classmethod
    def _initialise(cls, path: Path, config: dict, command: list[str] | None) -> "Run":
        run = cls(path)
        (path / STUDENTS_DIR).mkdir()
        manifest = {
            "format": 1,
            "name": config.get("name", path.name),
            "created": time.time(),
            "seed": config.get("seed"),
            "config": config,
            "versions": package_versions(),
            "command": list(command or sys.argv),
        }
        atomic_write_bytes(path / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False).encode())
        atomic_write_json(path / MANIFEST_FILE, manifest)
        pid = os.getpid()  # the creating process trains the run: if it dies before starting, the run reads as died
        run.write_status(state=State.CREATED, pid=pid, pid_start=proc_start_time(pid))
        return run

    # -------------------------------------------------------------------------- manifest / config
    def manifest(self) -> dict:
        """manifest.json, checked (a mapping with a config mapping, config sections that are mappings, a sane
        created time, a schedule of at most MAX_STUDENTS); RunError names the file and the bad field."""
        manifest = read_json(self.path / MANIFEST_FILE)
        if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict):
            raise RunError(f"{self.path / MANIFEST_FILE}: not a pkd manifest (expected a mapping with a config)")
        problem = _manifest_problem(manifest)
        if problem:
            raise RunError(f"{self.path / MANIFEST_FILE}: {problem}")
        return manifest

    def config(self) -> dict:
        return self.manifest()["config"]

    def setting(self, *keys: str) -> Any:
        """The config value at `keys` (e.g. "data", "dataset"); RunError naming manifest.json when it is missing."""
        value = get_field(self.config(), *keys)
        if value is None:
            raise RunError(f"{self.path / MANIFEST_FILE}: the config has no {'.'.join(keys)}")
        return value

    # -------------------------------------------------------------------------- status
    def write_status(self, **fields: Any) -> dict:
        """Merge `fields` into status.json (atomically) and stamp the heartbeat."""
        status = self.status(raw=True)
        status.update(fields)
        status["updated"] = time.time()
        atomic_write_json(self.path / STATUS_FILE, status)
        return status

    def status(self, raw: bool = False) -> dict:
        """status.json as a dict, each known field checked (a bad one reads as None; {} if absent or unreadable);
        unless raw, state "running" with a dead pid -> "died"."""
        status = self.checked_status()[0]
        claimed = status.get("state") == State.RUNNING or (status.get("state") == State.CREATED and "pid" in status)
        if not raw and claimed:  # a running run always names its process; a created one does since pid was kept
            if not process_alive(status.get("pid"), status.get("pid_start")):
                status["state"] = State.DIED
        return status

    def checked_status(self) -> tuple[dict, str | None]:
        """status.json with each field that breaks STATUS_RULES (or an unknown state) set to None, and the first
        problem as one line naming the file (None when the file is sound or not written yet)."""
        path = self.path / STATUS_FILE
        try:
            status = read_json(path)
        except FileNotFoundError:
            return {}, None
        except (OSError, RunError) as exc:
            return {}, f"{path}: {exc.strerror}" if isinstance(exc, OSError) and exc.strerror else str(exc)
        if not isinstance(status, dict):
            return {}, f"{path}: expected a mapping, found {_show(status)}"
        problems = []
        for key, rule in STATUS_RULES.items():
            problem = _field_problem(key, status.get(key), rule)
            if problem:
                problems.append(problem)
                status[key] = None
        if status.get("state") is not None and status["state"] not in WRITTEN_STATES:
            problems.append(f"state {_show(status['state'])} is not one of {', '.join(WRITTEN_STATES)}")
            status["state"] = None
        return status, (f"{path}: {problems[0]}" if problems else None)

    def state(self) -> State:
        return State.of(self.status().get("state"))

    def world_size(self) -> int:
        """How many processes the run's last training process group had (1 when not recorded or not sane)."""
        size = self.status().get("world_size")
        return size if isinstance(size, int) and not isinstance(size, bool) and 1 <= size <= 4096 else 1

    def is_active(self) -> bool:
        """A live process is (about to be) training this run."""
        if self.writer_alive():
            return True
        status = self.status()
        return State.of(status.get("state")) in ACTIVE_STATES and process_alive(status.get("pid"),
                                                                               status.get("pid_start"))

    def mark_started(self, message: str = "") -> None:
        """Record this process as the run's writer (it must hold the writer lock); first tidy what a killed writer
        may have left behind."""
        if str(self.path) not in _HELD_LOCKS:
            self.lock_writer()
        self.repair()
        pid = os.getpid()
        self.write_status(state=State.RUNNING, pid=pid, pid_start=proc_start_time(pid), started=time.time(),
                          message=message)

    def lock_writer(self) -> None:
        """Become the run's one writer: an OS-level lock (flock) held until this process exits, released by the
        kernel however it dies. RunError if another process holds it, or if the run directory has links leading
        out of it (a run directory is written only inside itself)."""
        self.check_contained()
        path = self.path / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise write_error(path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise RunError(f"run {self.name} is being trained by another process (pid {self.status().get('pid')}); "
                           "stop it first, or wait for it to finish") from None
        _HELD_LOCKS[str(self.path)] = fd

    def writer_alive(self) -> bool:
        """A process holds this run's writer lock (it is training the run right now)."""
        return lock_busy(self.path / LOCK_FILE)

    def check_contained(self) -> None:
        """Refuse a run directory whose own files or students/ are symbolic links (they may lead anywhere)."""
        names = (STATUS_FILE, MANIFEST_FILE, CONFIG_FILE, METRICS_FILE, PREFIX_FILE, SUMMARY_FILE, TEACHER_FILE,
                 TEACHER_REF_FILE, TEACHER_LOGITS_FILE,
                 CHECKPOINT_FILE, LOG_FILE, CONSOLE_FILE, STUDENTS_DIR, LOCK_FILE)
        links = [self.path / name for name in names if (self.path / name).is_symlink()]
        students = self.path / STUDENTS_DIR
        if students.is_dir() and not students.is_symlink():
            links += [p for p in students.iterdir() if p.is_symlink()]
        if self.path.is_symlink() or links:
            raise RunError(f"{(links or [self.path])[0]} is a symbolic link; a run directory is written only inside "
                           "itself: replace the link with the file itself or start a new run")

    def check_config_unedited(self) -> None:
        """Refuse to resume a run whose config.yaml no longer says what manifest.json recorded (a resume trains
        with the recorded config, so an edit there would be silently ignored)."""
        path = self.path / CONFIG_FILE
        try:
            text = read_bounded(path, MAX_JSON_BYTES, "a pkd config").decode("utf-8")
            edited = yaml.safe_load(text) != self.config()
        except (OSError, RunError, yaml.YAMLError, UnicodeDecodeError):
            edited = True
        if edited:
            raise RunError(f"{path} was changed after the run was created; a resume trains with the config in "
                           f"{MANIFEST_FILE}: undo the change, or train a new run with --config {path}")

    def mark_ended(self, state: State, message: str, **fields: Any) -> None:
        """Record how this run's writer process ended (done, stopped or failed)."""
        self.write_status(state=state, message=message, **fields)

    def repair(self) -> None:
        """After a crash: end a half-written last metrics line (so the next record is not glued onto it) and
        remove temp files of dead writers. Called by a new writer process before it writes anything."""
        path = self.path / METRICS_FILE
        try:
            if path.is_file() and path.stat().st_size > 0:
                with open(path, "rb+") as fh:
                    fh.seek(-1, os.SEEK_END)
                    if fh.read(1) != b"\n":
                        fh.write(b"\n")
                        logger.warning("%s: the last line was half-written by a killed process; it is skipped", path)
        except OSError as exc:
            raise write_error(path, exc) from None
        for folder in (self.path, self.path / STUDENTS_DIR):
            for tmp in folder.glob(".*.tmp") if folder.is_dir() else []:
                parts = tmp.name.split(".")
                if len(parts) >= 4 and parts[-3].isdigit() and int(parts[-3]) != os.getpid() \
                        and not process_alive(int(parts[-3])):
                    tmp.unlink(missing_ok=True)

    # -------------------------------------------------------------------------- metrics
    def log_metrics(self, event: str, **fields: Any) -> None:
        """Append one JSON line (one write call, so concurrent readers never see half a line they keep)."""
        record = {"event": event, "time": time.time(), **fields}
        path = self.path / METRICS_FILE
        line = (json.dumps(record) + "\n").encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            with os.fdopen(fd, "ab") as fh:
                _fault(path, fh, line)
                fh.write(line)
                fh.flush()
        except OSError as exc:
            raise write_error(path, exc) from None

    def metrics(self, tail_bytes: int | None = None) -> list[dict]:
        """The well-formed metric records, oldest first, streamed line by line; with `tail_bytes` only those in the
        file's newest `tail_bytes` (a live panel's budget, LIVE_METRICS_BYTES). A half-written, over-long or
        wrongly shaped line is skipped, with one logged warning per read: never fatal."""
        path = self.path / METRICS_FILE
        try:
            fh = open_regular(path)
        except FileNotFoundError:
            return []
        except RunError as exc:
            logger.warning("%s; its records are not read", exc)
            return []
        except OSError as exc:
            logger.warning("%s: not read (%s)", path, exc.strerror or exc)
            return []
        records, skipped, first = [], 0, ""
        with fh:
            start = 0 if tail_bytes is None else max(0, os.fstat(fh.fileno()).st_size - tail_bytes)
            if start:
                fh.seek(start - 1)
            lines = _read_lines(fh, MAX_METRICS_LINE)
            if start and fh.read(1) != b"\n":
                next(lines, None)  # the tail starts inside a line: skip its rest
            for number, line in enumerate(lines, 1):
                record, problem = _parse_record(line)
                if record is not None:
                    records.append(record)
                    continue
                skipped += 1
                first = first or f"line {number}{' of its tail' if start else ''}: {problem}"
        if skipped:
            logger.warning("%s: skipped %d bad line(s), first %s", path, skipped, first)
        return records

    # -------------------------------------------------------------------------- results
    def write_prefix_table(self, rows: list[dict]) -> None:
        """Write prefix.csv (one row per prefix k, PREFIX_COLUMNS) atomically."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=PREFIX_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
        atomic_write_bytes(self.path / PREFIX_FILE, buf.getvalue().encode())

    def prefix_table(self) -> list[dict]:
        """prefix.csv rows with every cell checked and parsed ([] if there is none yet); RunError names the file
        and the row and column at fault, or says it is over MAX_PREFIX_BYTES."""
        path = self.path / PREFIX_FILE
        try:
            text = read_bounded(path, MAX_PREFIX_BYTES, "a prefix table").decode("utf-8")
        except FileNotFoundError:
            return []
        except UnicodeDecodeError:
            raise RunError(f"{path}: not UTF-8 text") from None
        try:
            return _parse_prefix_table(path, text)
        except csv.Error as exc:
            raise RunError(f"{path}: corrupt CSV ({exc})") from None

    def write_summary(self, summary: dict) -> None:
        atomic_write_json(self.path / SUMMARY_FILE, summary)

    def summary(self) -> dict:
        """summary.json, checked ({} if not written yet); RunError names the file and the first bad field (teacher
        a mapping of numbers, prefixes rows as in prefix.csv, anytime a list of {confidence, acc, mean_flops})."""
        path = self.path / SUMMARY_FILE
        try:
            summary = read_json(path)
        except FileNotFoundError:
            return {}
        if not isinstance(summary, dict):
            raise RunError(f"{path}: expected a mapping, found {type(summary).__name__}")
        problem = _summary_problem(summary)
        if problem:
            raise RunError(f"{path}: {problem}")
        return summary

    # -------------------------------------------------------------------------- weights
    def student_path(self, k: int) -> Path:
        return self.path / STUDENTS_DIR / f"student_{k:02d}.pt"

    def save_student(self, k: int, state_dict: dict, spec: dict, prev_scale: float = 1.0) -> None:
        """prev_scale: s_k of the residual ensemble E_k = s_k * E_(k-1) + z_k (1 unless the student learned it)."""
        self.check_contained()
        save_tensors(self.student_path(k), {"state_dict": state_dict, "spec": spec, "prev_scale": float(prev_scale)})

    def load_student(self, k: int) -> dict:
        """students/student_KK.pt as {"state_dict": {name: tensor}, "spec": {"arch", "params"}, "prev_scale": float}
        (prev_scale 1.0 in files written before it existed); RunError if not."""
        path = self.student_path(k)
        saved = _check_weights_file(path, load_tensors(path))
        scale = saved.setdefault("prev_scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) \
                or not -MAX_PREV_SCALE <= scale <= MAX_PREV_SCALE:
            raise RunError(f"{path}: prev_scale {scale!r} is not a finite number within ±{MAX_PREV_SCALE:g}")
        saved["prev_scale"] = float(scale)
        return saved

    def students_planned(self) -> int:
        """K, the number of students the run's config schedules (MAX_STUDENTS when the manifest is unreadable)."""
        try:
            schedule = get_field(self.config(), "students", "schedule")
        except (OSError, RunError):
            schedule = None
        return len(schedule) if isinstance(schedule, list) else MAX_STUDENTS

    def students_saved(self) -> int:
        """Number of consecutive saved students 1..k, at most K: files beyond the run's K are ignored, not loaded."""
        k, planned = 0, self.students_planned()
        while k < planned and self.student_path(k + 1).is_file():
            k += 1
        return k

    def save_teacher(self, state_dict: dict, spec: dict) -> None:
        save_tensors(self.path / TEACHER_FILE, {"state_dict": state_dict, "spec": spec})

    def save_teacher_logits(self, key: dict, logits: dict[str, torch.Tensor]) -> None:
        """teacher_logits.pt: the teacher's logits per split and the key they were made with (read_teacher_logits)."""
        save_tensors(self.path / TEACHER_LOGITS_FILE, {"key": key, "logits": logits})

    def teacher_logits_path(self) -> Path:
        return self.path / TEACHER_LOGITS_FILE

    def load_teacher(self) -> dict:
        """teacher.pt, or the shared teacher file teacher-ref.json names (checked against its recorded sha256)."""
        ref = None if (self.path / TEACHER_FILE).exists() else self.teacher_reference()
        if ref is None:
            return _check_weights_file(self.path / TEACHER_FILE, load_tensors(self.path / TEACHER_FILE))
        path = self._referenced_teacher(ref)
        where = self.path / TEACHER_REF_FILE
        if not path.is_file():
            raise RunError(f"{where}: the shared teacher {ref['path']!r} ({ref['absolute']}) is missing; put the "
                           "file back (the run uses it instead of a copy)")
        if file_sha256(path) != ref["sha256"]:
            raise RunError(f"{where}: the shared teacher {path} changed after this run was trained (sha256 "
                           "differs); restore that file, or train the run again")
        return _check_weights_file(path, load_tensors(path))

    def reference_teacher(self, source: str | os.PathLike) -> None:
        """Share the teacher file `source` (a pkd teacher file, e.g. a sweep's) instead of copying it: write
        teacher-ref.json with its path relative to the run, its absolute path and its sha256."""
        source = check_teacher_file(source)
        self.check_contained()
        if (self.path / TEACHER_FILE).exists():
            raise RunError(f"{self.path / TEACHER_FILE}: the run has its own teacher; it cannot also share {source}")
        atomic_write_json(self.path / TEACHER_REF_FILE, {
            "path": os.path.relpath(source, self.path.resolve()), "absolute": str(source),
            "sha256": file_sha256(source)})

    def teacher_reference(self) -> dict | None:
        """teacher-ref.json checked ({path, absolute, sha256}), or None when the run has none."""
        path = self.path / TEACHER_REF_FILE
        if not (path.exists() or path.is_symlink()):
            return None
        ref = read_json(path)
        problem = _mapping_problem(ref, TEACHER_REF_RULES, required=tuple(TEACHER_REF_RULES))
        if problem:
            raise RunError(f"{path}: {problem}")
        return ref

    def _referenced_teacher(self, ref: dict) -> Path:
        """The shared teacher's file: its path relative to the run (a moved or cloned folder) if that exists,
        else its absolute path (a copied run on the same machine)."""
        relative = (self.path.resolve() / ref["path"]).resolve()
        absolute = Path(ref["absolute"]).resolve()
        return relative if relative.is_file() or not absolute.is_file() else absolute

    def log_path(self) -> Path:
        """train.log: the training process's log."""
        return self.path / LOG_FILE

    def console_path(self) -> Path:
        """console.log: stdout/stderr of a training process launched by the app."""
        return self.path / CONSOLE_FILE

    def teacher_path(self) -> Path:
        """teacher.pt, or the shared file teacher-ref.json names (teacher.pt's path when that is unreadable)."""
        own = self.path / TEACHER_FILE
        try:
            ref = None if own.exists() else self.teacher_reference()
        except (OSError, RunError):
            ref = None
        return own if ref is None else self._referenced_teacher(ref)

    def has_teacher(self) -> bool:
        return (self.path / TEACHER_FILE).is_file() or (self.path / TEACHER_REF_FILE).is_file()

    def results_stamp(self) -> tuple:
        """(name, mtime, size) of the files training rewrites or appends to: changes whenever any of them does."""
        out = []
        for name in LIVE_FILES:
            try:
                stat_ = os.stat(self.path / name)
                out.append((name, stat_.st_mtime_ns, stat_.st_size))
            except OSError:
                out.append((name, None, None))
        return tuple(out)

    def weights_stamp(self) -> tuple:
        """(name, mtime) of the saved weights: changes whenever a student or the teacher is (re)saved."""
        return tuple((f.name, os.stat(f).st_mtime_ns) for f in self.weights_files())

    def weights_files(self) -> list[Path]:
        """The saved students 1..k and the teacher (if saved): what a cached model must be rebuilt after."""
        files = [self.student_path(k) for k in range(1, self.students_saved() + 1)]
        teacher = self.teacher_path()
        return files + ([teacher] if teacher.is_file() else [])

    # -------------------------------------------------------------------------- resume checkpoint
    def save_checkpoint(self, state: dict) -> None:
        save_tensors(self.path / CHECKPOINT_FILE, state)

    def load_checkpoint(self) -> dict | None:
        """The resume checkpoint, or None when there is none or it is corrupt (logged: resume falls back)."""
        path = self.path / CHECKPOINT_FILE
        if not path.is_file():
            return None
        try:
            return load_tensors(path)
        except RunError as exc:
            logger.warning("%s; resuming from the last saved student instead", exc)
            return None

    def clear_checkpoint(self) -> None:
        (self.path / CHECKPOINT_FILE).unlink(missing_ok=True)

    # -------------------------------------------------------------------------- display
    def info(self) -> dict:
        """What run lists show: name, state, dataset, K, final figures, start time, and `problem`: what is wrong
        with the run's files, in one line ("" when nothing; state then reads broken). Never raises."""
        problems: list[str] = []
        status = _attempt(self.status, {}, problems)
        status_problem = _attempt(lambda: self.checked_status()[1], None, problems)
        problems += [status_problem] if status_problem else []
        manifest = _attempt(self.manifest, {}, problems)
        rows = _attempt(self.prefix_table, [], problems)
        summary = _attempt(self.summary, {}, problems)
        config = manifest.get("config", {})
        last = rows[-1] if rows else {}
        schedule = get_field(config, "students", "schedule")
        problem = printable(problems[0].replace(f"{self.path}{os.sep}", ""), 300) if problems else ""
        return {
            "name": printable(self.name, 160),
            "path": str(self.path),
            "state": str(State.BROKEN if problems else State.of(status.get("state"))),
            "stage": printable(status.get("stage") or "", 40),
            "dataset": printable(get_field(config, "data", "dataset") or "?", 40),
            "mode": printable(get_field(config, "distill", "mode") or "?", 40),
            "k_planned": len(schedule) if isinstance(schedule, list) else 0,
            "k_done": len(rows),
            "teacher_acc": _number_or_none(get_field(summary, "teacher", "test_acc")),
            "final_acc": _number_or_none(last.get("prefix_acc")),
            "final_share": _number_or_none(last.get("share_of_teacher")),
            "created": _number_or_none(manifest.get("created")),
            "problem": problem + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
        }


def _attempt(reader: Any, default: Any, problems: list[str]) -> Any:
    """reader(), or `default` with the reason appended to `problems`: one run's bad file must not stop a listing."""
    try:
        return reader()
    except Exception as exc:  # noqa: BLE001 - whatever a hostile file makes a reader raise, the listing goes on
        problems.append(str(exc) if isinstance(exc, (RunError, OSError)) else f"{exc.__class__.__name__}: {exc}")
        return default


def get_field(mapping: Any, *keys: str) -> Any:
    """mapping[k1][k2]... or None when any level is missing or not a mapping (hand-edited or hostile files)."""
    for key in keys:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def _number_or_none(value: Any) -> float | int | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _check_weights_file(path: Path, obj: dict) -> dict:
    """A saved model must be {"state_dict": {str: tensor}, "spec": {"arch": str, "params": dict}}."""
    state, spec = obj.get("state_dict"), obj.get("spec")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()) \
            or not isinstance(spec, dict) or not isinstance(spec.get("arch"), str) \
            or not isinstance(spec.get("params", {}), dict):
        raise RunError(f"{path}: not a pkd model file (expected a state_dict of tensors and a spec)")
    return obj


TEACHER_REF_RULES = {"path": ("text", 1, 4096), "absolute": ("text", 1, 4096), "sha256": ("text", 64, 64)}


def teacher_logits_beside(teacher_file: str | os.PathLike) -> Path:
    """Where the run that owns `teacher_file` (a teacher.pt) keeps its teacher-logits cache."""
    return Path(teacher_file).resolve().parent / TEACHER_LOGITS_FILE


def read_teacher_logits(path: Path, key: dict) -> dict[str, torch.Tensor] | None:
    """The cached teacher logits {split: (N, C) float32} in `path` if made with exactly `key` (teacher weights
    digest, device, precision, split fingerprints); None when missing, made otherwise, or damaged. Only a cache:
    never trusted beyond its key, loaded with weights_only=True, each tensor checked."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_LOGITS_BYTES:
            return None
        obj = load_tensors(path)
    except (OSError, RunError):
        return None
    logits = obj.get("logits")
    if obj.get("key") != key or not isinstance(logits, dict) or set(logits) != set(key["splits"]):
        return None
    for name, t in logits.items():
        if not (isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.dim() == 2
                and t.shape[0] == key["splits"][name]["n"] and bool(torch.isfinite(t).all())):
            return None
    return logits


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (read in 1 MB chunks)."""
    digest = hashlib.sha256()
    with open_regular(Path(path)) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_teacher_file(source: str | os.PathLike) -> Path:
    """The resolved path of a pkd teacher file ({state_dict, spec}, weights only) that runs may share; RunError
    naming it otherwise (a bare state_dict can only be copied into a run, not shared)."""
    path = Path(source).resolve()
    saved = _check_weights_file(path, load_tensors(path))
    if saved["spec"].get("kind", "teacher") != "teacher":
        raise RunError(f"{path}: holds a {saved['spec'].get('kind')!r} model, not a teacher")
    return path


def _number(value: str | None) -> Any:
    if value is None or value == "":
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value


def list_runs(runs_dirs: list[str | os.PathLike] | str | os.PathLike) -> list[Run]:
    """Every run directory (has a manifest) directly inside the given folders or inside a sweep folder there (one
    holding sweep.json: its trials), each once, newest first."""
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
            elif _is_sweep_dir(child):  # a sweep folder's trials are ordinary runs, one level down
                found.update((c.resolve(), Run(c)) for c in _children(child) if _is_run_dir(c))

    def created(run: Run) -> float:
        try:
            return float(run.manifest().get("created", 0))
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


def _is_sweep_dir(path: Path) -> bool:
    """A folder holding a sweep.json file (pkd/sweep.py's sweeps)."""
    try:
        return path.is_dir() and (path / SWEEP_FILE).is_file()
    except OSError:
        return False


def _is_run_dir(path: Path) -> bool:
    """A folder holding a manifest.json file (False, not an error, for anything unreadable)."""
    try:
        return path.is_dir() and (path / MANIFEST_FILE).is_file()
    except OSError:
        return False
