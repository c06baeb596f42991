"""The writer side of a Run: creating a run directory (manifest, config, first status), becoming its one writer
(the flock), status updates, the append-only metrics, the result tables, and tidying what a killed writer left.

`RunWriter` is mixed into `Run` (pkd/runs/run.py): it holds no state of its own beyond the Run's `path`, and reads
status.json back through the Run's `status()` and the recorded config through `config()`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from pkd.procs import proc_start_time, take_lock
from pkd.runs.files import (CONFIG_FILE, CONSOLE_FILE, LOCK_FILE, MANIFEST_FILE, MAX_JSON_BYTES, METRICS_FILE,
                            PREFIX_FILE, STATUS_FILE, STUDENTS_DIR, SUMMARY_FILE, RunError, State, check_contained,
                            new_run_dir)
from pkd.runs.io import append_line, atomic_write_bytes, atomic_write_json, read_bounded, write_error
from pkd.runs.place import clear_stale_temps
from pkd.runs.schema import PREFIX_COLUMNS, Manifest, Metric, Status

logger = logging.getLogger(__name__)

_HELD_LOCKS: dict[str, int] = {}  # run path -> open lock fd of this process (closing it would drop the lock)
R = TypeVar("R", bound="RunWriter")


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


class RunWriter:
    """Writers of a run directory's files (mixed into Run, which supplies `path`, `name`, `status` and `config`)."""

    path: Path
    if TYPE_CHECKING:  # what Run supplies
        def __init__(self, path: Path) -> None: ...
        def status(self, raw: bool = False) -> dict: ...
        def config(self) -> dict: ...

    # -------------------------------------------------------------------------- creation
    @classmethod
    def create(cls: type[R], runs_dir: str | os.PathLike, name: str, config: dict,
               command: list[str] | None = None) -> R:
        """Make a new, unique run directory `<runs_dir>/<name>-<time>-<random>` and write manifest and config."""
        return cls._initialise(new_run_dir(runs_dir, name), config, command)

    @classmethod
    def create_at(cls: type[R], path: str | os.PathLike, config: dict, command: list[str] | None = None) -> R:
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
    def _initialise(cls: type[R], path: Path, config: dict, command: list[str] | None) -> R:
        run = cls(path)
        (path / STUDENTS_DIR).mkdir()
        manifest = {
            Manifest.FORMAT: 1,
            Manifest.NAME: config.get("name", path.name),
            Manifest.CREATED: time.time(),
            Manifest.SEED: config.get("seed"),
            Manifest.CONFIG: config,
            Manifest.VERSIONS: package_versions(),
            Manifest.COMMAND: list(command or sys.argv),
        }
        atomic_write_bytes(path / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False).encode())
        pid = os.getpid()  # the creating process trains the run: if it dies before starting, the run reads as died
        run.write_status(state=State.CREATED, pid=pid, pid_start=proc_start_time(pid))
        # the manifest last: whoever sees it (pkd.launch waits for it) also finds status.json naming the process
        atomic_write_json(path / MANIFEST_FILE, manifest)
        return run

    # -------------------------------------------------------------------------- status and the writer lock
    def write_status(self, *, durable: bool = True, **fields: Any) -> dict:
        """Merge `fields` into status.json (atomically) and stamp the heartbeat; durable=False skips the fsync (the
        per-second progress of an epoch: still atomic and kill-safe, see atomic_write_bytes)."""
        status = self.status(raw=True)
        status.update(fields)
        status[Status.UPDATED] = time.time()
        atomic_write_json(self.path / STATUS_FILE, status, durable=durable)
        return status

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
            fd = take_lock(path, blocking=False)
        except OSError as exc:
            raise write_error(path, exc) from None
        if fd is None:
            pid = self.status().get(Status.PID)
            raise RunError(f"run {self.path.name} is being trained by another process (pid {pid}); "
                           "stop it first, or wait for it to finish")
        _HELD_LOCKS[str(self.path)] = fd

    def check_contained(self) -> None:
        """Refuse a run directory whose own files or students/ are symbolic links (they may lead anywhere)."""
        check_contained(self.path)

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
            clear_stale_temps(folder)

    # -------------------------------------------------------------------------- metrics and results
    def log_metrics(self, event: str, **fields: Any) -> None:
        """Append one JSON line (one write call, so concurrent readers never see half a line they keep)."""
        record = {Metric.EVENT: event, Metric.TIME: time.time(), **fields}
        append_line(self.path / METRICS_FILE, (json.dumps(record) + "\n").encode())

    def write_prefix_table(self, rows: list[dict]) -> None:
        """Write prefix.csv (one row per prefix k, PREFIX_COLUMNS) atomically."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=PREFIX_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
        atomic_write_bytes(self.path / PREFIX_FILE, buf.getvalue().encode())

    def write_summary(self, summary: dict) -> None:
        atomic_write_json(self.path / SUMMARY_FILE, summary)
