"""A page's state <-> the URL's query string, as pure functions (no Streamlit; unit-tested).

A teacher shares an exact scenario as a link (`/playground?run=mnist&k=2&digit=17`) and a reload keeps it. Each
page lists its Fields: the name in the URL, the session-state key of the widget it fills, and how to check a value.
A value that is malformed or out of range is dropped, so the page falls back to its default: a bad link never
raises.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

MAX_TEXT = 300  # longer values are not ours (a run id is a folder name or sweep/trial)


@dataclass(frozen=True)
class Field:
    """One piece of page state in the URL.

    Attributes:
        name: the query parameter.
        key: the session-state key it fills (a widget's key).
        kind: "int", "float", "bool", "choice", "text", "id" (one run or sweep id, mapped to its path) or "ids"
            (a comma-separated list of them).
        default: not written to the URL when the state equals it (None: always written when set).
        choices: allowed values of a "choice".
        low, high: the closed range of an "int" or "float".
        when: (key, value): written only while that other session key holds that value, and read back into it
            (the Playground's test digit index counts only while a test digit is shown).
    """

    name: str
    key: str
    kind: str
    default: Any = None
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    when: tuple[str, Any] | None = None


def parse_value(field: Field, raw: Any, ids: Mapping[str, str] | None = None) -> Any:
    """The typed value of one query parameter.

    Args:
        field: what the value must be.
        raw: the URL's text (a list when repeated: the last one counts).
        ids: run/sweep id -> path, for "id" and "ids".

    Raises:
        ValueError: the value is malformed, out of range, unknown or too long (the caller keeps the default).
    """
    text = str(raw[-1] if isinstance(raw, (list, tuple)) and raw else raw).strip()
    if len(text) > MAX_TEXT or not text:
        raise ValueError(f"{field.name}: empty or too long")
    if field.kind == "int":
        return _in_range(field, int(text))
    if field.kind == "float":
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"{field.name}: {text!r} is not a finite number")
        return _in_range(field, value)
    if field.kind == "bool":
        if text.lower() not in ("1", "0", "true", "false", "on", "off"):
            raise ValueError(f"{field.name}: {text!r} is not 1 or 0")
        return text.lower() in ("1", "true", "on")
    if field.kind == "choice":
        if text not in field.choices:
            raise ValueError(f"{field.name}: {text!r} is not one of {field.choices}")
        return text
    if field.kind == "text":
        return text
    if field.kind == "id":
        return _path_of(field, text, ids or {})
    if field.kind == "ids":
        return [_path_of(field, part, ids or {}) for part in text.split(",") if part]
    raise ValueError(f"{field.name}: unknown kind {field.kind!r}")


def _in_range(field: Field, value: float) -> float:
    if (field.low is not None and value < field.low) or (field.high is not None and value > field.high):
        raise ValueError(f"{field.name}: {value} is outside {field.low}..{field.high}")
    return value


def _path_of(field: Field, run_id: str, ids: Mapping[str, str]) -> str:
    if run_id not in ids:
        raise ValueError(f"{field.name}: no run or sweep {run_id!r}")
    return ids[run_id]


def read(params: Mapping[str, Any], fields: list[Field], ids: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Session-state values from query parameters: {key: value} for each valid one (bad ones are left out)."""
    out: dict[str, Any] = {}
    for field in fields:
        if field.name not in params:
            continue
        try:
            out[field.key] = parse_value(field, params[field.name], ids)
        except (ValueError, TypeError):
            continue
        if field.when:
            out[field.when[0]] = field.when[1]
    return out


def write(state: Mapping[str, Any], fields: list[Field], ids: Mapping[str, str] | None = None) -> dict[str, str]:
    """Query parameters from session state: {name: text} for every field that is set and not at its default."""
    paths = {path: run_id for run_id, path in (ids or {}).items()}
    out: dict[str, str] = {}
    for field in fields:
        value = state.get(field.key)
        if value is None or value == field.default or (field.when and state.get(field.when[0]) != field.when[1]):
            continue
        if field.kind == "bool":
            out[field.name] = "1" if value else "0"
        elif field.kind == "id":
            if value in paths:
                out[field.name] = paths[value]
        elif field.kind == "ids":
            known = [paths[v] for v in value if v in paths] if isinstance(value, list) else []
            if known:
                out[field.name] = ",".join(known)
        elif field.kind == "float":
            out[field.name] = f"{float(value):g}"
        else:
            out[field.name] = str(value)
    return out


def run_ids(groups: list[tuple[str, list[tuple[str, str]]]]) -> dict[str, str]:
    """Short, stable ids for run and sweep folders -> their paths: the path below its root folder ('mnist',
    'sweep-quick/trial-002'); a name that an earlier root already holds gets its root's label ('runs:mnist').

    Args:
        groups: per root folder in priority order, (label, [(path relative to the root, absolute path)]).
    """
    out: dict[str, str] = {}
    for label, items in groups:
        for relative, path in items:
            out[relative if relative not in out else f"{label}:{relative}"] = path
    return out


GLOBAL_FIELDS = [Field("run", "run", "id"), Field("lesson", "lesson", "bool", default=False),
                 # lesson mode's path: the step shown and the steps done ("1,2"; checked in app/lesson.py)
                 Field("step", "lesson_step", "int", default=1, low=1, high=7, when=("lesson", True)),
                 Field("ticked", "lesson_done", "text", default="", when=("lesson", True))]
STOP_RULES = ("confidence", "budget")  # the Playground's anytime stop rules
PAGE_FIELDS: dict[str, list[Field]] = {
    "results": [Field("axis", "results_xscale", "choice", "log", ("log", "linear")),
                Field("early", "results_anytime", "bool", True),
                Field("compare", "results_compare", "ids", [])],
    "playground": [Field("k", "pg_k", "int", low=1, high=64),
                   Field("digit", "pg_test_idx", "int", low=0, high=10**7, when=("pg_source", "test")),
                   Field("stop", "pg_anytime", "choice", "confidence", STOP_RULES),
                   Field("conf", "pg_conf", "float", 0.9, low=0.5, high=0.999),
                   Field("budget", "pg_budget", "int", low=1, high=10**15, when=("pg_anytime", "budget")),
                   Field("T", "soft_T", "float", low=1, high=10)],
    "clips": [Field("clip", "clips_idx", "int", low=0, high=10**7, when=("clips_source", "test")),
              Field("back", "clips_back", "bool", False), Field("frame", "clips_frame", "int", low=1, high=1024)],
    "train": [Field("config", "train_config", "text"), Field("watch", "train_pick", "id")],
    "runs": [Field("pick", "runs_pick", "id")],
    "sweeps": [Field("sweep", "sweeps_pick", "id"), Field("split", "sweeps_split", "choice", "val", ("val", "test")),
               Field("axis", "sweeps_xscale", "choice", "log", ("log", "linear"))],
    "how": [Field("row", "how_read", "int", low=1, high=1024), Field("digit", "how_digit", "int", 0, low=0, high=10**7)],
    "compare": [Field("runs", "compare_runs", "ids", []),
                Field("parallel", "compare_parallel_on", "bool", False)],
}
