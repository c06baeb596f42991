"""A sweep's journal and its trials' records are read as input from a stranger: checked before Optuna replays the
journal, and before a stored trial's settings reach a training process.

`check_journal` refuses, in one line naming the file and what to do, a journal.log that is a link, a FIFO or a
device (never opened for reading: it would block), one over MAX_JOURNAL_BYTES, an empty one (the sweep's creation was
interrupted) and one holding a line that is not an Optuna journal record. `load_study` replays it and turns any
failure of the replay into the same kind of one-line SweepError. `check_overrides` accepts a trial's stored
`key=value` overrides only when they are exactly what pkd writes for values inside the sweep's search space
(pkd.sweep.space.trial_overrides), so nothing else (`--run-dir=...`, another config key) is ever passed on.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, Callable

from pkd.config import RunConfig
from pkd.runs import printable
from pkd.sweep.space import SCHEDULE_KEYS, Param, Space, SweepError, trial_overrides

MAX_JOURNAL_BYTES = 256 * 2**20  # 10,000 trials write about 30 MB; a larger journal is not a pkd sweep's
MAX_RECORD_BYTES = 2**20  # one journal record is a few hundred bytes
OP_CODES = range(0, 11)  # optuna.storages.journal's JournalOperation: CREATE_STUDY (0) .. DISCARD_TRIALS (10)
NEW_FOLDER = "start a new sweep in another --sweep-dir (the trials' run folders stay readable with `pkd runs`)"


def _open_journal(path: Path) -> int:
    """An open, non-blocking descriptor of the journal; SweepError unless it is a regular file (no link)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        why = "it is a symbolic link" if path.is_symlink() else exc.strerror or str(exc)
        raise SweepError(f"{path}: the sweep's journal cannot be read ({why}); {NEW_FOLDER}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SweepError(f"{path}: the sweep's journal is not a regular file (a FIFO or a device?); {NEW_FOLDER}")
    return fd


def _check_record(line: bytes, number: int, path: Path) -> dict:
    try:
        record = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError):
        record = None
    op = record.get("op_code") if isinstance(record, dict) else None
    if not isinstance(op, int) or isinstance(op, bool) or op not in OP_CODES \
            or not isinstance(record.get("worker_id"), str):
        raise SweepError(f"{path} line {number}: not an Optuna journal record ({printable(line[:60], 80)}); the "
                         f"journal was edited or damaged: restore it, or {NEW_FOLDER}")
    return record


def check_journal(path: Path) -> None:
    """Refuse a journal that Optuna must not replay (see the module docstring); reads it once, line by line."""
    fd = _open_journal(path)
    with os.fdopen(fd, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > MAX_JOURNAL_BYTES:
            raise SweepError(f"{path}: {size:,} bytes is too large for a sweep's journal (at most "
                             f"{MAX_JOURNAL_BYTES:,}); {NEW_FOLDER}")
        os.set_blocking(fh.fileno(), True)
        first, number = None, 0
        while True:
            line = fh.readline(MAX_RECORD_BYTES + 1)
            if not line:
                break
            number += 1
            if len(line) > MAX_RECORD_BYTES:
                raise SweepError(f"{path} line {number}: over {MAX_RECORD_BYTES:,} bytes, not an Optuna journal "
                                 f"record; {NEW_FOLDER}")
            if not line.endswith(b"\n"):
                break  # a record being appended right now (Optuna skips it too)
            record = _check_record(line, number, path)
            first = record if first is None else first
    if first is None:
        raise SweepError(f"{path}: the sweep's journal is empty (its creation was interrupted, or it was emptied); "
                         f"{NEW_FOLDER}")
    if first["op_code"] != 0:
        raise SweepError(f"{path} line 1: the journal does not start by creating the study; {NEW_FOLDER}")


def load_study(storage: Callable[[], Any], path: Path, study_name: str) -> Any:
    """optuna.load_study on `storage()` (made only after the journal at `path`, when there is one, was checked:
    Optuna reads it as soon as the storage is made), its trials replayed once; SweepError in one line when Optuna
    cannot replay it (records that contradict each other, a study of another name)."""
    import optuna

    if os.path.lexists(path):
        check_journal(path)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage())
        study.get_trials(deepcopy=False)
    except (KeyError, ValueError, TypeError, AttributeError, IndexError, RuntimeError) as exc:
        raise SweepError(f"{path}: Optuna cannot replay the sweep's journal ({type(exc).__name__}: "
                         f"{printable(exc, 120)}); {NEW_FOLDER}") from None
    return study


# ------------------------------------------------------------------------------------------- a trial's overrides

def _value_in(param: Param, value: Any) -> bool:
    """`value` is one `param` can take: a choice, or a number of its kind inside its range."""
    if param.kind == "choice":
        return any(value == c and type(value) is type(c) for c in param.choices)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (param.kind == "int" and
                                                                          not isinstance(value, int)):
        return False
    return param.low <= value <= param.high


def _values_of(overrides: list[str], space: Space) -> dict:
    """The trial values that `overrides` state (the inverse of trial_overrides); SweepError for anything else."""
    params = {p.name: p for p in space.params}
    values: dict[str, Any] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        try:
            value = json.loads(text) if sep else None
        except ValueError:
            sep = ""
        if not sep or key.startswith("-") or key in values:
            raise SweepError(f"override {printable(item, 80)!r} is not one pkd writes")
        if key == "students.schedule" and isinstance(value, list) and value:
            values["schedule.students"] = len(value)
            for j, entry in enumerate(value, start=1):
                for name in SCHEDULE_KEYS[1:]:
                    if name in space.schedule and isinstance(entry, dict):
                        values[f"schedule.{j}.{name}"] = entry.get(name)
        elif key in params or (key == "distill.learn_prev_scale" and value is False):
            values[key] = value
        else:
            raise SweepError(f"override {printable(item, 80)!r} sets a key the search space does not search")
    for key, value in values.items():
        name = key.rsplit(".", 1)[-1] if key.startswith("schedule.") else key
        param = space.schedule.get(name) if key.startswith("schedule.") else params.get(key)
        if param is not None and not _value_in(param, value):
            raise SweepError(f"override {key}={printable(json.dumps(value), 60)} is outside the search space")
    return values


def check_overrides(overrides: Any, space: Space, base: RunConfig, where: str) -> list[str]:
    """A trial's stored overrides (from the journal) when they are exactly what pkd writes for values inside the
    search space; SweepError naming `where` (the trial) otherwise. Returns them."""
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise SweepError(f"{where}: its stored overrides are not a list of key=value texts; {NEW_FOLDER}")
    try:
        values = _values_of(overrides, space)
        if "schedule.students" in values and "students" not in space.schedule:
            values.pop("schedule.students")
        same = trial_overrides(values, base) == overrides
    except (SweepError, KeyError, TypeError, IndexError) as exc:
        raise SweepError(f"{where}: {exc}; the journal was edited: restore it, or {NEW_FOLDER}") from None
    if not same:
        raise SweepError(f"{where}: its stored overrides are not what pkd writes for the sweep's search space; the "
                         f"journal was edited: restore it, or {NEW_FOLDER}")
    return overrides
