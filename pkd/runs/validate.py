"""The checks behind every run-file reader: pure functions from parsed data to the first problem in words (or to
checked rows), against the rules in pkd/runs/schema.py. A hand-edited or hostile file then reads as one clear
RunError naming the file and the field, never as a crash deep inside a reader, the CLI or the app.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from pkd.config import MAX_STUDENTS
from pkd.runs.files import MAX_JSON_DEPTH, MAX_METRICS_LINE, WRITTEN_STATES, RunError
from pkd.runs.io import printable, too_deep
from pkd.stats import VERDICTS
from pkd.runs.schema import (ACCURACY_RULE, ANYTIME_RULES, AUC_NULLABLE, AUC_REQUIRED, AUC_RULES, COMBINER_LISTS,
                             CONFIG_SECTIONS, CONFIG_TEXTS, DRAWN_RULES, MANIFEST_RULES, METRIC_RULES, NAME_RULE,
                             PHOTO_RULES, PREFIX_COLUMNS, PREFIX_FILLED, PREFIX_REQUIRED, PREFIX_RULES, STATUS_RULES,
                             SUMMARY_RULES, TEACHER_TEST_RULES,
                             TEACHER_REF_RULES, TEACHER_RULES, VAL_FITTED_NULLABLE, VAL_FITTED_REQUIRED,
                             VAL_FITTED_RULES, VIDEO_LISTS, VIDEO_RULES, CombinerFigures, DrawnFigures, Manifest, Metric,
                             PrefixRow, Status, Summary, TeacherTest)


def get_field(mapping: Any, *keys: str) -> Any:
    """mapping[k1][k2]... or None when any level is missing or not a mapping (hand-edited or hostile files)."""
    for key in keys:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def _show(value: Any, limit: int = 40) -> str:
    """A value as an error message quotes it: its repr, control characters escaped, cut to `limit` characters."""
    return printable(repr(value), limit)


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
                    nullable: bool | tuple[str, ...] = False) -> str | None:
    """The first field of `mapping` that breaks its rule, is required and missing, or is null where it may not be
    (`nullable`: True for every field, or the fields that may be); None when all fit. `where` prefixes the field
    names in the message ("teacher.")."""
    if not isinstance(mapping, dict):
        return f"{where.rstrip('.') or 'it'} is {_show(mapping)}, not a mapping"
    may_be_null = nullable if isinstance(nullable, tuple) else tuple(rules) if nullable else ()
    for key in required:
        if key not in mapping:
            return f"{where}{key} is missing"
    for key, rule in rules.items():
        if key in mapping and mapping[key] is None and key not in may_be_null:
            return f"{where}{key} is null, not a value"
        problem = _field_problem(f"{where}{key}", mapping.get(key), rule)
        if problem:
            return problem
    return None


def check_status(status: Any) -> tuple[dict, str | None]:
    """A parsed status.json with each field that breaks STATUS_RULES (or an unknown state) set to None, and the
    first problem (None when it is sound); {} when it is no mapping."""
    if not isinstance(status, dict):
        return {}, f"expected a mapping, found {_show(status)}"
    problems = []
    for key, rule in STATUS_RULES.items():
        problem = _field_problem(key, status.get(key), rule)
        if problem:
            problems.append(problem)
            status[key] = None
    if status.get(Status.STATE) is not None and status[Status.STATE] not in WRITTEN_STATES:
        problems.append(f"state {_show(status[Status.STATE])} is not one of {', '.join(WRITTEN_STATES)}")
        status[Status.STATE] = None
    return status, (problems[0] if problems else None)


def manifest_problem(manifest: dict) -> str | None:
    """What is wrong with a parsed manifest (its fields, config sections, names, the schedule); None when sound."""
    config = manifest[Manifest.CONFIG]
    problem = _mapping_problem(manifest, MANIFEST_RULES, nullable=True) or _field_problem(
        "config.seed", config.get("seed"), MANIFEST_RULES[Manifest.SEED])
    for section in CONFIG_SECTIONS:
        if problem is None and section in config and not isinstance(config[section], dict):
            problem = f"config.{section} is {_show(config[section])}, not a mapping"
    for keys in CONFIG_TEXTS:
        problem = problem or _field_problem("config." + ".".join(keys), get_field(config, *keys), NAME_RULE)
    schedule = get_field(config, "students", "schedule")
    if problem is None and "schedule" in config.get("students", {}) and (
            not isinstance(schedule, list) or len(schedule) > MAX_STUDENTS
            or not all(isinstance(entry, dict) for entry in schedule)):
        problem = f"config.students.schedule is {_show(schedule)}, not a list of up to {MAX_STUDENTS} mappings"
    command = manifest.get(Manifest.COMMAND, [])
    if problem is None and (not isinstance(command, list) or not all(isinstance(a, str) for a in command)):
        problem = f"command {_show(command)} is not a list of texts"
    return problem


def summary_problem(summary: dict) -> str | None:
    """What is wrong with a parsed summary.json (teacher, prefixes, the anytime curves and AUC, names); None when
    sound."""
    problem = _mapping_problem(summary, SUMMARY_RULES)
    if problem is None and Summary.TEACHER in summary:
        problem = _mapping_problem(summary[Summary.TEACHER], TEACHER_RULES, "teacher.")
    for key, rules, required, nullable in (
            (Summary.PREFIXES, PREFIX_RULES, PREFIX_REQUIRED, ()),
            (Summary.ANYTIME, ANYTIME_RULES, tuple(ANYTIME_RULES), ()),
            (Summary.ANYTIME_VAL_FITTED, VAL_FITTED_RULES, VAL_FITTED_REQUIRED, VAL_FITTED_NULLABLE),
            (Summary.TEACHER_TESTS, TEACHER_TEST_RULES, tuple(TEACHER_TEST_RULES), ())):
        items = summary.get(key)
        if problem is None and key in summary:
            if not isinstance(items, list) or len(items) > 1000:
                return f"{key} is {_show(items)}, not a list of up to 1000 mappings"
            problem = next(filter(None, (_mapping_problem(item, rules, f"{key}[{i}].", required, nullable)
                                         for i, item in enumerate(items))), None)
    if problem is None and Summary.TEACHER_TESTS in summary:
        problem = next((f"{Summary.TEACHER_TESTS}[{i}].{TeacherTest.VERDICT} {_show(item[TeacherTest.VERDICT])} is not "
                        f"one of {', '.join(VERDICTS)}" for i, item in enumerate(summary[Summary.TEACHER_TESTS])
                        if item[TeacherTest.VERDICT] not in VERDICTS), None)
    if problem is None and Summary.ANYTIME_AUC in summary:
        problem = _mapping_problem(summary[Summary.ANYTIME_AUC], AUC_RULES, f"{Summary.ANYTIME_AUC}.", AUC_REQUIRED,
                                  AUC_NULLABLE)
    if problem is None and Summary.DRAWN in summary:
        problem = _robustness_problem(Summary.DRAWN, summary[Summary.DRAWN], DRAWN_RULES)
    if problem is None and Summary.PHOTOS in summary:
        problem = _robustness_problem(Summary.PHOTOS, summary[Summary.PHOTOS], PHOTO_RULES)
    if problem is None and Summary.VIDEO in summary:
        problem = _video_problem(summary[Summary.VIDEO])
    if problem is None and Summary.COMBINERS in summary:
        problem = _combiners_problem(summary[Summary.COMBINERS])
    return problem


def _combiners_problem(combiners: Any) -> str | None:
    """What is wrong with summary.json's "combiners" ({name: CombinerFigures}); None when sound."""
    if not isinstance(combiners, dict) or len(combiners) > 16:
        return f"combiners is {_show(combiners)}, not a mapping of up to 16 combiners"
    for name, figures in combiners.items():
        where = f"combiners.{_show(name)}"
        if not isinstance(figures, dict):
            return f"{where} is {_show(figures)}, not a mapping"
        for key in COMBINER_LISTS:
            values = figures.get(key)
            if not isinstance(values, list) or len(values) > MAX_STUDENTS:
                return f"{where}.{key} is {_show(values)}, not a list of up to {MAX_STUDENTS} shares"
            problem = next(filter(None, (_field_problem(f"{where}.{key}[{i}]", v, ACCURACY_RULE)
                                         for i, v in enumerate(values))), None)
            if problem:
                return problem
        points = figures.get(CombinerFigures.BUDGETED)
        if not isinstance(points, list) or len(points) > 1000:
            return f"{where}.{CombinerFigures.BUDGETED} is {_show(points)}, not a list of up to 1000 mappings"
        problem = next(filter(None, (_mapping_problem(item, VAL_FITTED_RULES, f"{where}.{CombinerFigures.BUDGETED}"
                                                      f"[{i}].", VAL_FITTED_REQUIRED, VAL_FITTED_NULLABLE)
                                     for i, item in enumerate(points))), None)
        if problem:
            return problem
    return None


def _video_problem(video: Any) -> str | None:
    """What is wrong with summary.json's "video" (reversal test, digit identity of clip runs); None when sound."""
    if not isinstance(video, dict):
        return f"video is {_show(video)}, not a mapping"
    problem = _mapping_problem(video, VIDEO_RULES, "video.", tuple(VIDEO_RULES))
    for key in VIDEO_LISTS:
        values = video.get(key)
        if problem is None and (not isinstance(values, list) or len(values) > MAX_STUDENTS):
            return f"video.{key} is {_show(values)}, not a list of up to {MAX_STUDENTS} shares"
        problem = problem or next(filter(None, (_field_problem(f"video.{key}[{i}]", v, ACCURACY_RULE)
                                                for i, v in enumerate(values))), None)
    return problem


def _robustness_problem(key: str, figures: Any, rules: dict) -> str | None:
    """What is wrong with summary.json's "drawn" or "photos" (teacher and prefix accuracies on a robustness set,
    DrawnFigures / PhotoFigures, whose PREFIX_ACC is the same name); None when sound."""
    if not isinstance(figures, dict):
        return f"{key} is {_show(figures)}, not a mapping"
    problem = _mapping_problem(figures, rules, f"{key}.", tuple(rules))
    accs = figures.get(DrawnFigures.PREFIX_ACC)
    if problem is None and (not isinstance(accs, list) or len(accs) > MAX_STUDENTS):
        return f"{key}.prefix_acc is {_show(accs)}, not a list of up to {MAX_STUDENTS} accuracies"
    return problem or next(filter(None, (_field_problem(f"{key}.prefix_acc[{i}]", v, ACCURACY_RULE)
                                         for i, v in enumerate(accs))), None)


def teacher_ref_problem(ref: Any) -> str | None:
    """What is wrong with a parsed teacher-ref.json ({path, absolute, sha256}); None when sound."""
    return _mapping_problem(ref, TEACHER_REF_RULES, required=tuple(TEACHER_REF_RULES))


def parse_metric_record(line: bytes | None) -> tuple[dict | None, str]:
    """One metrics.jsonl line as a checked record, or (None, why it is skipped)."""
    if line is None:
        return None, f"longer than {MAX_METRICS_LINE:,} bytes"
    try:
        record = json.loads(line)
    except RecursionError:
        return None, "nested too deeply"
    except (ValueError, UnicodeDecodeError):
        return None, "not JSON (half-written or corrupt)"
    if not isinstance(record, dict) or not isinstance(record.get(Metric.EVENT), str):
        return None, f"{_show(record)} is not a mapping with an event"
    if too_deep(record, MAX_JSON_DEPTH):
        return None, "nested too deeply"
    problem = _mapping_problem(record, METRIC_RULES)
    for key, value in record.items():
        if problem is None and key.endswith(Metric.ACC_SUFFIX):
            problem = _field_problem(key, value, ACCURACY_RULE)
        elif problem is None and key.startswith(Metric.TRAIN_PREFIX):
            problem = _field_problem(key, value, ("number", -1e30, 1e30))
    return (None, problem) if problem else (record, "")


def parse_prefix_table(path: Path, text: str) -> list[dict]:
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
        if row[PrefixRow.K] != number:
            raise RunError(f"{path} row {number}: k is {row[PrefixRow.K]}, expected {number} (k counts 1, 2, ... n)")
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


def _number(value: str | None) -> Any:
    if value is None or value == "":
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value
