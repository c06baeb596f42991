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
                      plus the student's prev_scale s_k (residual ensemble E_k = s_k * E_(k-1) + z_k)
    checkpoint.pt     resume state (students done, current student, model/optimizer/scheduler, epoch, RNG)
    train.log         human-readable log of the training process
    console.log       stdout/stderr of a process launched by the app (optional)

States (`State`): created, running, done, failed, stopped; a running run whose process is gone reads as died.
"""

from __future__ import annotations

import csv
import errno
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
from typing import Any

import torch
import yaml

from pkd.procs import proc_start_time, process_alive

logger = logging.getLogger(__name__)

STATUS_FILE = "status.json"
MANIFEST_FILE = "manifest.json"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
PREFIX_FILE = "prefix.csv"
SUMMARY_FILE = "summary.json"
TEACHER_FILE = "teacher.pt"
CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "train.log"
CONSOLE_FILE = "console.log"  # stdout/stderr of a training process launched by the app
STUDENTS_DIR = "students"
PREFIX_COLUMNS = (
    "k", "arch", "params", "student_flops", "cumulative_flops", "share_of_teacher", "prefix_acc", "solo_acc",
    "prefix_val_acc", "solo_val_acc", "prev_scale",
)
LIVE_FILES = (METRICS_FILE, PREFIX_FILE, SUMMARY_FILE)  # what training rewrites or appends to as it goes
MAX_PREV_SCALE = 1e3  # a learned residual scale is O(1); anything beyond this is a corrupt or hostile file
RUN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
MAX_JSON_BYTES = 20_000_000
FAULT_ENV = "PKD_FAULT"  # test-only fault injection, read in _fault() alone; see there


class State(str, Enum):
    """A run's state as status.json records it; DIED is what a reader sees when a RUNNING run's process is gone."""

    CREATED = "created"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    STOPPED = "stopped"
    DIED = "died"
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
        with open(tmp, "wb") as fh:
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


def read_json(path: Path) -> Any:
    """Parse a JSON file of a run; RunError names the file when it is not a regular file, huge or corrupt."""
    path = Path(path)
    if not stat.S_ISREG(path.stat().st_mode):  # a FIFO or device would block or never end
        raise RunError(f"{path}: not a regular file")
    if path.stat().st_size > MAX_JSON_BYTES:
        raise RunError(f"{path}: file is too large to be a pkd run file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: corrupt JSON ({exc.__class__.__name__})") from None


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
        raise RunError(f"run name {name!r} is not allowed: use letters, digits, '-', '_' and '.' only")
    return name


def new_run_dir(runs_dir: str | os.PathLike, name: str) -> Path:
    """Create and return an empty, unique folder `<runs_dir>/<name>-<time>-<random>` (unique even within a second)."""
    runs_dir = Path(runs_dir)
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
    path = Path(text)
    if not path.is_dir() and os.sep not in text and runs_dir is not None:
        path = Path(runs_dir) / check_run_name(text)
    if not path.is_dir():
        raise RunError(f"run {text!r} not found; list runs with `python -m pkd runs`")
    if not (path / MANIFEST_FILE).is_file():
        raise RunError(f"{path}: not a pkd run directory (no {MANIFEST_FILE})")
    return Run(path)


def safe_child(runs_dir: str | os.PathLike, name: str) -> Path:
    """Path of run `name` inside `runs_dir`, refusing traversal, absolute paths and symlinks out of it."""
    root = Path(runs_dir).resolve()
    check_run_name(name)
    path = root / name
    if path.is_symlink() or path.resolve().parent != root:
        raise RunError(f"run {name!r} does not lie inside {root}; refusing")
    return path


def delete_run(runs_dir: str | os.PathLike, name: str) -> None:
    """Delete run `name` inside `runs_dir` (refuses anything else, and runs whose process is alive)."""
    path = safe_child(runs_dir, name)
    if not (path / MANIFEST_FILE).is_file():
        raise RunError(f"{path}: not a pkd run directory; refusing to delete it")
    if Run(path).state() == State.RUNNING:
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
        """Make a run in exactly `path` (must not exist, or hold nothing but console.log: nothing is overwritten)."""
        path = Path(path)
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
        run.write_status(state=State.CREATED)
        return run

    # -------------------------------------------------------------------------- manifest / config
    def manifest(self) -> dict:
        """manifest.json; RunError names the file if it is corrupt or not a mapping with a config mapping."""
        manifest = read_json(self.path / MANIFEST_FILE)
        if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict):
            raise RunError(f"{self.path / MANIFEST_FILE}: not a pkd manifest (expected a mapping with a config)")
        return manifest

    def config(self) -> dict:
        return self.manifest()["config"]

    # -------------------------------------------------------------------------- status
    def write_status(self, **fields: Any) -> dict:
        """Merge `fields` into status.json (atomically) and stamp the heartbeat."""
        status = self.status(raw=True)
        status.update(fields)
        status["updated"] = time.time()
        atomic_write_json(self.path / STATUS_FILE, status)
        return status

    def status(self, raw: bool = False) -> dict:
        """status.json as a dict ({} if absent or corrupt); unless raw, state "running" with a dead pid -> "died"."""
        try:
            status = read_json(self.path / STATUS_FILE)
            if not isinstance(status, dict):
                raise RunError("status is not a mapping")
        except (OSError, RunError):
            status = {}
        if not raw and status.get("state") == State.RUNNING:
            if not process_alive(status.get("pid"), status.get("pid_start")):
                status["state"] = State.DIED
        return status

    def state(self) -> State:
        return State.of(self.status().get("state"))

    def is_active(self) -> bool:
        """A live process is (about to be) training this run."""
        status = self.status()
        return State.of(status.get("state")) in ACTIVE_STATES and process_alive(status.get("pid"),
                                                                               status.get("pid_start"))

    def mark_started(self, message: str = "") -> None:
        """Record this process as the run's writer; first tidy what a killed writer may have left behind."""
        self.repair()
        pid = os.getpid()
        self.write_status(state=State.RUNNING, pid=pid, pid_start=proc_start_time(pid), started=time.time(),
                          message=message)

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
            with open(path, "ab") as fh:
                _fault(path, fh, line)
                fh.write(line)
                fh.flush()
        except OSError as exc:
            raise write_error(path, exc) from None

    def metrics(self) -> list[dict]:
        """All complete metric records; a half-written or garbage line is skipped (and logged), never fatal."""
        path = self.path / METRICS_FILE
        if not path.is_file():
            return []
        records = []
        with open(path, "rb") as fh:
            for number, line in enumerate(fh, 1):
                try:
                    record = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    logger.warning("%s line %d: skipped a corrupt metrics line", path, number)
                    continue
                if isinstance(record, dict):
                    records.append(record)
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
        """prefix.csv rows with numbers parsed ([] if there is none yet)."""
        path = self.path / PREFIX_FILE
        if not path.is_file():
            return []
        rows = []
        try:
            for row in csv.DictReader(path.read_text(encoding="utf-8").splitlines()):
                rows.append({key: _number(value) for key, value in row.items() if key is not None})
        except (csv.Error, UnicodeDecodeError) as exc:
            raise RunError(f"{path}: corrupt CSV ({exc})") from None
        return rows

    def write_summary(self, summary: dict) -> None:
        atomic_write_json(self.path / SUMMARY_FILE, summary)

    def summary(self) -> dict:
        """summary.json ({} if not written yet); RunError if corrupt."""
        path = self.path / SUMMARY_FILE
        if not path.is_file():
            return {}
        summary = read_json(path)
        if not isinstance(summary, dict):
            raise RunError(f"{path}: expected a mapping, found {type(summary).__name__}")
        return summary

    # -------------------------------------------------------------------------- weights
    def student_path(self, k: int) -> Path:
        return self.path / STUDENTS_DIR / f"student_{k:02d}.pt"

    def save_student(self, k: int, state_dict: dict, spec: dict, prev_scale: float = 1.0) -> None:
        """prev_scale: s_k of the residual ensemble E_k = s_k * E_(k-1) + z_k (1 unless the student learned it)."""
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

    def students_saved(self) -> int:
        """Number of consecutive saved students 1..k."""
        k = 0
        while self.student_path(k + 1).is_file():
            k += 1
        return k

    def save_teacher(self, state_dict: dict, spec: dict) -> None:
        save_tensors(self.path / TEACHER_FILE, {"state_dict": state_dict, "spec": spec})

    def load_teacher(self) -> dict:
        return _check_weights_file(self.path / TEACHER_FILE, load_tensors(self.path / TEACHER_FILE))

    def log_path(self) -> Path:
        """train.log: the training process's log."""
        return self.path / LOG_FILE

    def console_path(self) -> Path:
        """console.log: stdout/stderr of a training process launched by the app."""
        return self.path / CONSOLE_FILE

    def teacher_path(self) -> Path:
        return self.path / TEACHER_FILE

    def has_teacher(self) -> bool:
        return (self.path / TEACHER_FILE).is_file()

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
        return files + ([self.path / TEACHER_FILE] if self.has_teacher() else [])

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
        """One-line description for run lists: name, state, dataset, K, final figures, start time."""
        status = self.status()
        try:
            manifest = self.manifest()
            config = manifest.get("config", {})
        except (OSError, RunError, KeyError):
            manifest, config = {}, {}
        try:
            rows = self.prefix_table()
        except RunError:
            rows = []
        summary = {}
        try:
            summary = self.summary()
        except (OSError, RunError):
            pass
        last = rows[-1] if rows else {}
        schedule = get_field(config, "students", "schedule")
        return {
            "name": self.name,
            "path": str(self.path),
            "state": str(status.get("state", State.UNKNOWN)),
            "stage": str(status.get("stage", "")),
            "dataset": str(get_field(config, "data", "dataset") or "?"),
            "mode": str(get_field(config, "distill", "mode") or "?"),
            "k_planned": len(schedule) if isinstance(schedule, list) else 0,
            "k_done": len(rows),
            "teacher_acc": _number_or_none(get_field(summary, "teacher", "test_acc")),
            "final_acc": _number_or_none(last.get("prefix_acc")),
            "final_share": _number_or_none(last.get("share_of_teacher")),
            "created": _number_or_none(manifest.get("created")),
        }


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
    """Every run directory (has a manifest) directly inside the given folders, newest first."""
    if isinstance(runs_dirs, (str, os.PathLike)):
        runs_dirs = [runs_dirs]
    found = []
    for folder in runs_dirs:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        if (folder / MANIFEST_FILE).is_file():
            found.append(Run(folder))
            continue
        for child in folder.iterdir():
            if child.is_dir() and not child.is_symlink() and (child / MANIFEST_FILE).is_file():
                found.append(Run(child))

    def created(run: Run) -> float:
        try:
            return float(run.manifest().get("created", 0))
        except (OSError, RunError, TypeError, ValueError):
            return 0.0

    return sorted(found, key=created, reverse=True)
