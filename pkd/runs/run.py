"""`Run`: one run directory, the object every reader and writer of it holds. This module has the readers (manifest,
status and liveness, metrics, result tables) and the one-line listing `info()`; the writers come from
`RunWriter` (pkd/runs/writer.py) and the weights from `RunWeights` (pkd/runs/weights.py), mixed in so that a
caller keeps one object with one flat API (`run.summary()`, `run.write_status(...)`, `run.load_student(k)`).
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pkd.procs import lock_busy, process_alive
from pkd.runs.files import (ACTIVE_STATES, CONSOLE_FILE, LIVE_FILES, LOCK_FILE, LOG_FILE, MANIFEST_FILE,
                            MAX_METRICS_LINE, MAX_PREFIX_BYTES, METRICS_FILE, PREFIX_FILE, STATUS_FILE,
                            SUMMARY_FILE, RunError, State)
from pkd.runs.io import open_regular, printable, read_bounded, read_json, read_lines
from pkd.runs.schema import Manifest, PrefixRow, RunInfo, Status, Summary, TeacherFigures
from pkd.runs.validate import (check_status, get_field, manifest_problem, parse_metric_record, parse_prefix_table,
                               summary_problem)
from pkd.runs.weights import RunWeights
from pkd.runs.writer import RunWriter

logger = logging.getLogger(__name__)


@dataclass
class Run(RunWriter, RunWeights):
    """One run directory; writers and readers of every file in it."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    # -------------------------------------------------------------------------- manifest / config
    def manifest(self) -> dict:
        """manifest.json, checked (a mapping with a config mapping, config sections that are mappings, a sane
        created time, a schedule of at most MAX_STUDENTS); RunError names the file and the bad field."""
        manifest = read_json(self.path / MANIFEST_FILE)
        if not isinstance(manifest, dict) or not isinstance(manifest.get(Manifest.CONFIG), dict):
            raise RunError(f"{self.path / MANIFEST_FILE}: not a pkd manifest (expected a mapping with a config)")
        problem = manifest_problem(manifest)
        if problem:
            raise RunError(f"{self.path / MANIFEST_FILE}: {problem}")
        return manifest

    def config(self) -> dict:
        return self.manifest()[Manifest.CONFIG]

    def setting(self, *keys: str) -> Any:
        """The config value at `keys` (e.g. "data", "dataset"); RunError naming manifest.json when it is missing."""
        value = get_field(self.config(), *keys)
        if value is None:
            raise RunError(f"{self.path / MANIFEST_FILE}: the config has no {'.'.join(keys)}")
        return value

    # -------------------------------------------------------------------------- status
    def status(self, raw: bool = False) -> dict:
        """status.json as a dict, each known field checked (a bad one reads as None; {} if absent or unreadable);
        unless raw, state "running" with a dead pid -> "died"."""
        status = self.checked_status()[0]
        claimed = status.get(Status.STATE) == State.RUNNING or (
            status.get(Status.STATE) == State.CREATED and Status.PID in status)
        if not raw and claimed:  # a running run always names its process; a created one does since pid was kept
            if not process_alive(status.get(Status.PID), status.get(Status.PID_START)):
                status[Status.STATE] = State.DIED
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
        status, problem = check_status(status)
        return status, (f"{path}: {problem}" if problem else None)

    def state(self) -> State:
        return State.of(self.status().get(Status.STATE))

    def world_size(self) -> int:
        """How many processes the run's last training process group had (1 when not recorded or not sane)."""
        size = self.status().get(Status.WORLD_SIZE)
        return size if isinstance(size, int) and not isinstance(size, bool) and 1 <= size <= 4096 else 1

    def is_active(self) -> bool:
        """A live process is (about to be) training this run."""
        if self.writer_alive():
            return True
        status = self.status()
        return State.of(status.get(Status.STATE)) in ACTIVE_STATES and process_alive(
            status.get(Status.PID), status.get(Status.PID_START))

    def writer_alive(self) -> bool:
        """A process holds this run's writer lock (it is training the run right now)."""
        return lock_busy(self.path / LOCK_FILE)

    # -------------------------------------------------------------------------- metrics
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
            lines = read_lines(fh, MAX_METRICS_LINE)
            if start and fh.read(1) != b"\n":
                next(lines, None)  # the tail starts inside a line: skip its rest
            for number, line in enumerate(lines, 1):
                record, problem = parse_metric_record(line)
                if record is not None:
                    records.append(record)
                    continue
                skipped += 1
                first = first or f"line {number}{' of its tail' if start else ''}: {problem}"
        if skipped:
            logger.warning("%s: skipped %d bad line(s), first %s", path, skipped, first)
        return records

    # -------------------------------------------------------------------------- results
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
            return parse_prefix_table(path, text)
        except csv.Error as exc:
            raise RunError(f"{path}: corrupt CSV ({exc})") from None

    def summary(self) -> dict:
        """summary.json, checked ({} if not written yet); RunError names the file and the first bad field (teacher
        a mapping of numbers, prefixes rows as in prefix.csv, anytime a list of {confidence, acc, mean_flops},
        anytime_val_fitted a list of budget points, anytime_auc a mapping of val and test AUC)."""
        path = self.path / SUMMARY_FILE
        try:
            summary = read_json(path)
        except FileNotFoundError:
            return {}
        if not isinstance(summary, dict):
            raise RunError(f"{path}: expected a mapping, found {type(summary).__name__}")
        problem = summary_problem(summary)
        if problem:
            raise RunError(f"{path}: {problem}")
        return summary

    # -------------------------------------------------------------------------- files
    def log_path(self) -> Path:
        """train.log: the training process's log."""
        return self.path / LOG_FILE

    def console_path(self) -> Path:
        """console.log: stdout/stderr of a training process launched by the app."""
        return self.path / CONSOLE_FILE

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
        config = manifest.get(Manifest.CONFIG, {})
        last = rows[-1] if rows else {}
        schedule = get_field(config, "students", "schedule")
        problem = printable(problems[0].replace(f"{self.path}{os.sep}", ""), 300) if problems else ""
        return {
            RunInfo.NAME: printable(self.name, 160),
            RunInfo.PATH: str(self.path),
            RunInfo.STATE: str(State.BROKEN if problems else State.of(status.get(Status.STATE))),
            RunInfo.STAGE: printable(status.get(Status.STAGE) or "", 40),
            RunInfo.DATASET: printable(get_field(config, "data", "dataset") or "?", 40),
            RunInfo.MODE: printable(get_field(config, "distill", "mode") or "?", 40),
            RunInfo.K_PLANNED: len(schedule) if isinstance(schedule, list) else 0,
            RunInfo.K_DONE: len(rows),
            RunInfo.TEACHER_ACC: _number_or_none(get_field(summary, Summary.TEACHER, TeacherFigures.TEST_ACC)),
            RunInfo.FINAL_ACC: _number_or_none(last.get(PrefixRow.PREFIX_ACC)),
            RunInfo.FINAL_SHARE: _number_or_none(last.get(PrefixRow.SHARE_OF_TEACHER)),
            RunInfo.CREATED: _number_or_none(manifest.get(Manifest.CREATED)),
            RunInfo.PROBLEM: problem + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
        }


def _attempt(reader: Any, default: Any, problems: list[str]) -> Any:
    """reader(), or `default` with the reason appended to `problems`: one run's bad file must not stop a listing."""
    try:
        return reader()
    except Exception as exc:  # noqa: BLE001 - whatever a hostile file makes a reader raise, the listing goes on
        problems.append(str(exc) if isinstance(exc, (RunError, OSError)) else f"{exc.__class__.__name__}: {exc}")
        return default


def _number_or_none(value: Any) -> float | int | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
