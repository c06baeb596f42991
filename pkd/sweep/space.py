"""The search space of a sweep: what a space file may search, its checked form (Space, Param), and a trial's
values turned into config overrides.

Objectives (validation accuracy drives the search; test accuracy is only reported): `accuracy_flops` maximises
the whole ensemble's validation accuracy and minimises its cumulative FLOPs per sample; `anytime_auc` maximises
the area under its anytime curve on the validation split (pkd.anytime.anytime_auc).

Pure parsing and arithmetic on configs: the pre-flight that builds a trial's models is pkd.sweep.study's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pkd.config import MAX_STUDENTS, ConfigError, DistillConfig, OptimConfig, RunConfig, check_finite, read_yaml
from pkd.runs import printable

OBJECTIVES = {"accuracy_flops": ("maximize", "minimize"), "anytime_auc": ("maximize",)}
OBJECTIVE_NAMES = {"accuracy_flops": ("val accuracy", "cumulative FLOPs"), "anytime_auc": ("val anytime AUC",)}
# what a space may search: the distillation, the students' optimiser, their order and the seed; never the data or
# the teacher (one teacher serves every trial)
SEARCHABLE = {"distill": DistillConfig, "students.optim": OptimConfig}
SEARCHABLE_FIELDS = {"students.order": str, "seed": int}
SCHEDULE_KEYS = ("students", "d_model", "d_state", "n_layers", "expand")  # students = K, the others per student
SPACE_KEYS = ("objective", "params", "schedule", "storage", "heartbeat")  # storage: a database URL (no password)
MAX_CHOICES = 64


class SweepError(ValueError):
    """A sweep, its space or its folder is wrong; the message names the field or the file."""


@dataclass(frozen=True)
class Param:
    """One searched value: a float or int range (`low`..`high`, optionally log-scaled or stepped) or choices."""

    name: str  # the config key (params) or schedule.<key>
    kind: str  # float | int | choice
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    def suggest(self, trial: Any, name: str | None = None) -> Any:
        """The trial's value of this parameter (Optuna records it under `name`, default the parameter's)."""
        name = name or self.name
        if self.kind == "choice":
            return trial.suggest_categorical(name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def extremes(self) -> list:
        """The values a pre-flight check tries: every choice, or both ends of the range."""
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]


@dataclass(frozen=True)
class Space:
    """A checked search space: the objective, config parameters, and the student schedule's parameters."""

    objective: str
    params: tuple[Param, ...]
    schedule: dict[str, Param]
    raw: dict = field(compare=False)


def _kind_of(hint: Any) -> str:
    return {float: "float", int: "int", bool: "bool", str: "str"}.get(hint, "str")


def _typed(value: Any, kind: str, where: str) -> Any:
    """`value` as a `kind` value (ints accepted for floats) or SweepError naming `where`."""
    if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "bool" and isinstance(value, bool) or kind == "str" and isinstance(value, str):
        return value
    wanted = {"float": "a number", "int": "a whole number", "bool": "true or false", "str": "a text"}[kind]
    raise SweepError(f"{where}: expected {wanted}, got {printable(repr(value), 60)}")


def _parse_choices(values: list, kind: str, where: str) -> Param:
    if not values:
        raise SweepError(f"{where}: an empty list of choices; give at least one value")
    if len(values) > MAX_CHOICES:
        raise SweepError(f"{where}: {len(values)} choices; give at most {MAX_CHOICES}")
    typed = [_typed(v, kind, f"{where}[{i}]") for i, v in enumerate(values)]
    if len(set(typed)) != len(typed):
        raise SweepError(f"{where}: a choice is listed twice; list each value once")
    return Param("", "choice", choices=tuple(typed))


def _parse_range(spec: dict, kind: str, where: str) -> Param:
    unknown = sorted(set(spec) - {"low", "high", "log", "step"})
    if unknown:
        raise SweepError(f"{where}: unknown key '{unknown[0]}' in a range; valid keys: high, log, low, step")
    if kind not in ("float", "int"):
        raise SweepError(f"{where}: a {kind} field takes a list of choices, not a range")
    for key in ("low", "high"):
        if key not in spec:
            raise SweepError(f"{where}: a range needs '{key}', e.g. {{low: 0.1, high: 0.9}}")
    low, high = (_typed(spec[key], kind, f"{where}.{key}") for key in ("low", "high"))
    log = _typed(spec.get("log", False), "bool", f"{where}.log")
    step = None if spec.get("step") is None else _typed(spec["step"], kind, f"{where}.step")
    if not low < high:
        raise SweepError(f"{where}: empty range (low {low} is not below high {high}); give low < high, or one "
                         "choice in a list to fix the value")
    if log and low <= 0:
        raise SweepError(f"{where}: a log range needs low > 0, got {low}")
    if step is not None and (step <= 0 or (log and kind == "float")):
        raise SweepError(f"{where}.step: {step} must be > 0 (and a float range cannot be both log and stepped)")
    return Param("", kind, low=low, high=high, log=log, step=step)


def _parse_param(spec: Any, kind: str, where: str) -> Param:
    if isinstance(spec, list):
        return _parse_choices(spec, kind, where)
    if isinstance(spec, dict):
        return _parse_range(spec, kind, where)
    raise SweepError(f"{where}: expected a range {{low: .., high: ..}} or a list of choices, got "
                     f"{printable(repr(spec), 60)}")


def searchable_kind(key: str, where: str) -> str:
    """The value kind of config field `key` if a space may search it; SweepError naming it otherwise."""
    if key in SEARCHABLE_FIELDS:
        return _kind_of(SEARCHABLE_FIELDS[key])
    section, _, name = key.rpartition(".")
    if section in SEARCHABLE:
        hints = typing.get_type_hints(SEARCHABLE[section])
        if name in hints:
            return _kind_of(hints[name])
        raise SweepError(f"{where}: unknown config key '{key}'; valid keys here: {', '.join(sorted(hints))}")
    valid = sorted([f"{s}.*" for s in SEARCHABLE] + list(SEARCHABLE_FIELDS))
    raise SweepError(f"{where}: '{key}' cannot be searched (the data and the teacher are shared by every trial; "
                     f"the schedule goes under 'schedule'); searchable: {', '.join(valid)}")


def parse_space(data: Any, where: str = "space") -> Space:
    """A Space from a space file's mapping: unknown keys, wrong types, empty ranges are SweepErrors naming them."""
    if not isinstance(data, dict):
        raise SweepError(f"{where}: expected a mapping with {', '.join(SPACE_KEYS)}")
    unknown = sorted(set(data) - set(SPACE_KEYS))
    if unknown:
        raise SweepError(f"{where}: unknown key '{unknown[0]}'; valid keys: {', '.join(SPACE_KEYS)}")
    objective = data.get("objective", "accuracy_flops")
    if objective not in OBJECTIVES:
        raise SweepError(f"{where} objective: {printable(repr(objective), 60)} is not one of {', '.join(OBJECTIVES)}")
    storage = data.get("storage")
    if storage is not None and (not isinstance(storage, str) or re.search(r"://[^/@]*:[^/@]*@", storage)):
        raise SweepError(f"{where} storage: expected a database URL without a password (give the password in "
                         "$PKD_DB_PASSWORD or a .pgpass-style file, see docs/sweeps.md)")
    beat = data.get("heartbeat", 60)
    if isinstance(beat, bool) or not isinstance(beat, int) or not 1 <= beat <= 3600:
        raise SweepError(f"{where} heartbeat: {printable(repr(beat), 40)} is not whole seconds from 1 to 3600")
    params, schedule = data.get("params") or {}, data.get("schedule") or {}
    for key, section in (("params", params), ("schedule", schedule)):
        if not isinstance(section, dict):
            raise SweepError(f"{where} {key}: expected a mapping of keys to ranges or choices")
    parsed = tuple(dataclasses.replace(_parse_param(spec, searchable_kind(str(key), f"{where} params.{key}"),
                                                    f"{where} params.{key}"), name=str(key))
                   for key, spec in params.items())
    sizes = {}
    for key, spec in schedule.items():
        if key not in SCHEDULE_KEYS:
            raise SweepError(f"{where} schedule.{key}: unknown key; valid keys: {', '.join(SCHEDULE_KEYS)}")
        sizes[key] = dataclasses.replace(_parse_param(spec, "int", f"{where} schedule.{key}"), name=f"schedule.{key}")
        if min(sizes[key].extremes()) < 1 or key == "students" and max(sizes[key].extremes()) > MAX_STUDENTS:
            raise SweepError(f"{where} schedule.{key}: values must be at least 1"
                             + (f" and at most {MAX_STUDENTS}" if key == "students" else ""))
    if not parsed and not sizes:
        raise SweepError(f"{where}: searches nothing; give params or schedule")
    return Space(objective, parsed, sizes, raw=json.loads(json.dumps(data)))


def load_space(path: str | os.PathLike) -> Space:
    """Read and check a space file (YAML, as strictly as a config: size, aliases, non-finite numbers)."""
    path = Path(path).resolve()
    try:
        data = read_yaml(path)
        check_finite(data, "space")
    except ConfigError as exc:
        raise SweepError(str(exc).replace("config file", "space file")) from None
    return parse_space(data, f"space {path.name}")



# ----------------------------------------------------------------------------------------------- trials' configs

def schedule_of(values: dict, base: RunConfig) -> list[dict] | None:
    """The student schedule a trial's values ask for (None when the space does not search it).

    Student j starts from the base's student j (its last for j beyond the base's K, with its own `optim`) and the
    searched sizes schedule.<j>.<key> replace its keys.
    """
    if not any(key.startswith("schedule.") for key in values):
        return None
    k = values.get("schedule.students", base.students.k)
    out = []
    for j in range(1, k + 1):
        entry = dict(base.students.schedule[min(j, base.students.k) - 1])
        entry.update({key: values[f"schedule.{j}.{key}"] for key in SCHEDULE_KEYS[1:]
                      if f"schedule.{j}.{key}" in values})
        out.append(entry)
    return out


def trial_overrides(values: dict, base: RunConfig) -> list[str]:
    """`key=value` overrides of a trial (values as JSON, which YAML reads back exactly).

    A trial whose mode is not residual never learns scales (distill.learn_prev_scale applies to residual only).
    """
    out = [f"{key}={json.dumps(value)}" for key, value in values.items() if not key.startswith("schedule.")]
    if values.get("distill.mode", base.distill.mode) != "residual" and base.distill.learn_prev_scale \
            and "distill.learn_prev_scale" not in values:
        out.append("distill.learn_prev_scale=false")
    schedule = schedule_of(values, base)
    if schedule is not None:
        out.append(f"students.schedule={json.dumps(schedule)}")
    return out


def suggest(trial: Any, space: Space, base: RunConfig) -> dict:
    """A trial's values, asked from Optuna parameter by parameter (define-by-run): distill.learn_prev_scale only
    when the mode is residual; student j's sizes only for j <= K."""
    values: dict[str, Any] = {}
    ordered = sorted(space.params, key=lambda p: p.name != "distill.mode")  # the mode first: scales depend on it
    for param in ordered:
        if param.name == "distill.learn_prev_scale" and values.get("distill.mode", base.distill.mode) != "residual":
            continue
        values[param.name] = param.suggest(trial)
    if "students" in space.schedule:
        values["schedule.students"] = space.schedule["students"].suggest(trial)
    k = values.get("schedule.students", base.students.k)
    for j in range(1, k + 1):
        for key, param in space.schedule.items():
            if key != "students":
                values[f"schedule.{j}.{key}"] = param.suggest(trial, f"schedule.{j}.{key}")
    return values

