"""Sweeps: many runs of one base config, their settings chosen by Optuna, in one folder; the trade-off between
accuracy and FLOPs of every run and prefix compared on one plane.

A sweep folder (every trial is an ordinary run directory: `pkd runs`, `pkd eval` and the app open it):

    sweep.json     what the sweep is: base config, search space, objective, teacher (written once, when created)
    base.yaml      the base config, resolved (BASE with its overrides): what every trial starts from
    space.yaml     the search space as given, checked
    journal.log    Optuna's study (JournalFileBackend: append-only, safe for several worker processes)
    base/          the base run, trained first only when BASE has no teacher.checkpoint: its teacher is shared
    trial-NNN/     one run per Optuna trial: `python -m pkd train --config base.yaml --run-dir trial-NNN
                   --teacher-ref key=value ...`, sharing the sweep's teacher (teacher-ref.json, no copy)
    sweep.log      output of a sweep started from the app
    .locks/        flock files: one per trial held by the worker that trains it, one around asking for a trial

Objectives (validation accuracy drives the search; test accuracy is only reported): `accuracy_flops` maximises
the whole ensemble's validation accuracy and minimises its cumulative FLOPs per sample; `anytime_auc` maximises
the area under its anytime curve on the validation split (pkd.evaluate.anytime_auc).

A worker asks Optuna for a trial, trains it in a subprocess and tells Optuna its values. Workers share the study
through the journal file (Optuna's distributed mode): start more with `--workers P` or the same command on other
machines over a shared filesystem. A killed worker leaves its trial running in the journal with its lock free:
the next worker adopts it and resumes its run directory (`train --resume`), so no trial is ever duplicated.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import fcntl
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from pkd.config import (MAX_STUDENTS, ConfigError, DistillConfig, OptimConfig, RunConfig, check_finite, load_config,
                        read_yaml)
from pkd.evaluate import auc_of_rows
from pkd.pareto import Point
from pkd.procs import lock_busy, proc_start_time, process_alive
from pkd.runs import (CONFIG_FILE, MANIFEST_FILE, STUDENTS_DIR, SWEEP_FILE, Run, RunError, State, atomic_write_bytes,
                      atomic_write_json, check_teacher_file, get_field, list_runs, new_run_dir, printable, read_json)

logger = logging.getLogger(__name__)

BASE_FILE = "base.yaml"
SPACE_FILE = "space.yaml"
JOURNAL_FILE = "journal.log"
SWEEP_LOG = "sweep.log"
LOCKS_DIR = ".locks"
STOP_FILE = "stop-request"  # a number: workers that started under a smaller one stop (reaches other machines)
BASE_RUN = "base"
STUDY_NAME = "pkd"
# how the app and the CLI name Optuna's trial states (a trial in progress is "training")
TRIAL_WORDS = {"COMPLETE": "complete", "RUNNING": "training", "FAIL": "fail", "WAITING": "waiting", "PRUNED": "pruned"}
OBJECTIVES = {"accuracy_flops": ("maximize", "minimize"), "anytime_auc": ("maximize",)}
OBJECTIVE_NAMES = {"accuracy_flops": ("val accuracy", "cumulative FLOPs"), "anytime_auc": ("val anytime AUC",)}
# what a space may search: the distillation, the students' optimiser, their order and the seed; never the data or
# the teacher (one teacher serves every trial)
SEARCHABLE = {"distill": DistillConfig, "students.optim": OptimConfig}
SEARCHABLE_FIELDS = {"students.order": str, "seed": int}
SCHEDULE_KEYS = ("students", "d_model", "d_state", "n_layers", "expand")  # students = K, the others per student
SPACE_KEYS = ("objective", "params", "schedule")
MAX_CHOICES = 64
MAX_TRIALS = 10_000
POLL_S = 1.0
_STARTED: dict[str, subprocess.Popen] = {}  # sweep path -> the process start_sweep started for it (the app)


class SweepError(ValueError):
    """A sweep, its space or its folder is wrong; the message names the field or the file."""


# ----------------------------------------------------------------------------------------------- the space

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


def trial_config(base_file: Path, overrides: list[str]) -> RunConfig:
    """The config a trial trains with (base.yaml + its overrides), with every model built once on the meta device
    (pkd.train.specs.check_models): a bad or oversized trial stops here, before any training."""
    from pkd.train.specs import check_models  # the sweep runs training; the app never calls this

    cfg = load_config(base_file, overrides)
    check_models(cfg)
    return cfg


def _corner(space: Space, base: RunConfig, big: set[str]) -> dict:
    """Values with the schedule keys in `big` at their largest (and K at its largest) and the others smallest."""
    pick = {key: (max if key in big or key == "students" else min)(p.extremes()) for key, p in space.schedule.items()}
    k = pick.get("students", base.students.k)
    values = {f"schedule.{j}.{key}": v for j in range(1, k + 1) for key, v in pick.items() if key != "students"}
    return {**values, **({"schedule.students": k} if "students" in pick else {})}


def check_space(space: Space, base_file: Path, base: RunConfig, before: list[str]) -> None:
    """Pre-flight: every choice and both ends of every range make a valid config, and the largest students the
    schedule allows can be built (check_models, MAX_MODEL_PARAMS); SweepError naming the space field otherwise."""
    for param in space.params:  # they change no model size: the config's own checks suffice
        for value in param.extremes():
            extra = {"distill.mode": "residual"} if param.name == "distill.learn_prev_scale" else {}
            try:
                load_config(base_file, before + trial_overrides({**extra, param.name: value}, base))
            except (ConfigError, ValueError, RunError) as exc:
                raise SweepError(f"space params.{param.name}: {value!r} is not allowed: {exc}") from None
    sizes = [key for key in space.schedule if key != "students"]
    for big, where in [({key}, f"schedule.{key}") for key in sizes] + [(set(sizes), "schedule")]:
        values = _corner(space, base, big)
        try:
            trial_config(base_file, before + trial_overrides(values, base))
        except (ConfigError, ValueError, RunError) as exc:
            largest = ", ".join(f"{key} {max(space.schedule[key].extremes())}" for key in sorted(big)) or "K"
            raise SweepError(f"space {where}: the largest students it allows ({largest}) cannot be trained: "
                             f"{exc}") from None


# ----------------------------------------------------------------------------------------------- the folder

def _lock_fd(path: Path, blocking: bool = True) -> int | None:
    """An open descriptor holding an exclusive flock on `path` (created), or None when another process holds it
    and `blocking` is False. The kernel drops the lock when the holder dies, however it dies. The holder writes
    "<host> <pid> <start time>" into the file (what stop_sweep signals)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{socket.gethostname()} {os.getpid()} {proc_start_time(os.getpid())}\n".encode(), 0)
    return fd


@contextlib.contextmanager
def _held(path: Path) -> Iterator[None]:
    fd = _lock_fd(path)
    if fd is None:
        raise SweepError(f"{path}: cannot be locked; the sweep folder needs a filesystem with locks (flock)")
    try:
        yield
    finally:
        os.close(fd)


def trial_name(number: int) -> str:
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

    def storage(self) -> Any:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(self.path / JOURNAL_FILE)))

    def study(self) -> Any:
        import optuna

        return optuna.load_study(study_name=STUDY_NAME, storage=self.storage())

    def trial_dir(self, number: int) -> Path:
        return self.path / trial_name(number)

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


def _teacher_plan(path: Path, cfg: RunConfig) -> dict:
    """Where the sweep's teacher comes from: BASE's teacher.checkpoint, shared when it is a pkd teacher file (a bare
    state_dict is copied into each trial), or the base run trained first in the sweep."""
    if cfg.teacher.checkpoint:
        try:
            check_teacher_file(cfg.teacher.checkpoint)
            share = True
        except RunError as exc:
            logger.warning("%s; every trial gets its own copy of the teacher", exc)
            share = False
        return {"source": "checkpoint", "path": cfg.teacher.checkpoint, "share": share}
    return {"source": BASE_RUN, "path": str(Run(path / BASE_RUN).teacher_path()), "share": True}


def plan_sweep(path: Path, base_path: str | os.PathLike, space_path: str | os.PathLike,
               overrides: list[str]) -> dict:
    """Everything sweep.json records, after the pre-flight checks (nothing is written): the base config with its
    overrides, the space, the teacher; SweepError / ConfigError naming the field when something is wrong."""
    given, base_path = str(base_path), Path(base_path).resolve()
    cfg = load_config(base_path, overrides)
    space = load_space(space_path)
    teacher = _teacher_plan(path, cfg)
    check_space(space, base_path, cfg, list(overrides))  # a base-run teacher does not exist yet: checked as BASE's
    trial_base = json.loads(json.dumps(cfg.to_dict()))  # what every trial starts from: BASE + the shared teacher
    if teacher["source"] == BASE_RUN:
        trial_base["teacher"]["checkpoint"] = teacher["path"]
    return {"format": 1, "created": time.time(), "base_config": given, "overrides": list(overrides),
            "base": json.loads(json.dumps(cfg.to_dict())), "trial_base": trial_base, "teacher": teacher,
            "space": space.raw,
            "objective": space.objective, "directions": list(OBJECTIVES[space.objective]),
            "command": list(sys.argv)}


def _check_fresh(path: Path) -> None:
    """A new sweep folder must be empty (but for the app's sweep.log and lock files): nothing is overwritten."""
    extra = [p.name for p in path.iterdir() if p.name not in (SWEEP_LOG, LOCKS_DIR)]
    if extra:
        raise SweepError(f"{path} is not empty and not a sweep (it holds {printable(extra[0], 60)}); choose another "
                         "--sweep-dir or delete it")


def _write_sweep(sweep: Sweep, plan: dict) -> None:
    """base.yaml, space.yaml, the Optuna study in journal.log, then sweep.json (last: it marks a whole sweep)."""
    import optuna

    atomic_write_bytes(sweep.base_file, yaml.safe_dump(plan["base"], sort_keys=False).encode())
    atomic_write_bytes(sweep.path / SPACE_FILE, yaml.safe_dump(plan["space"], sort_keys=False).encode())
    optuna.create_study(study_name=STUDY_NAME, storage=sweep.storage(), directions=plan["directions"],
                        load_if_exists=True)
    atomic_write_json(sweep.path / SWEEP_FILE, plan)


def _same_plan(sweep: Sweep, plan: dict) -> None:
    meta = sweep.meta()
    for key, what in (("base", "base config (with its overrides)"), ("space", "search space")):
        if meta[key] != plan[key]:
            raise SweepError(f"sweep {sweep.path} was started with another {what}; continue it without --config "
                             "and --space, or start a new sweep in another --sweep-dir")


def open_sweep(sweep_dir: str | os.PathLike, base_path: str | os.PathLike | None = None,
               space_path: str | os.PathLike | None = None, overrides: list[str] = ()) -> Sweep:
    """The sweep in `sweep_dir`: created (after every pre-flight check) when it is not one yet, else checked to be
    the same base and space when they are given. Safe when several workers open it at once."""
    sweep = Sweep(Path(sweep_dir).resolve())
    given = base_path is not None or space_path is not None
    if (given or not sweep.exists()) and (base_path is None or space_path is None):
        raise SweepError(f"{sweep.path} is not a sweep yet: give --config BASE and --space SPACE to start one"
                         if not sweep.exists() else "give both --config and --space (to check that they are the "
                         "sweep's), or neither")
    plan = plan_sweep(sweep.path, base_path, space_path, list(overrides)) if given else None
    if not sweep.exists():
        sweep.path.mkdir(parents=True, exist_ok=True)
        with _held(sweep.lock_path("create")):
            if not sweep.exists():  # another worker may have created it meanwhile
                _check_fresh(sweep.path)
                _write_sweep(sweep, plan)
                logger.info("sweep %s created: objective %s", sweep.path, plan["objective"])
    if plan is not None:
        _same_plan(sweep, plan)
    return sweep



# ----------------------------------------------------------------------------------------------- workers

@dataclass(frozen=True)
class TrialOptions:
    """How a worker starts its training processes."""

    device: str | None = None  # --device of every trial (default: the config's)
    build_kernel: bool = True  # let training build the fused CPU scan kernel
    threads: int | None = None  # OMP_NUM_THREADS of every trial (several workers on one machine share its cores)


@dataclass
class Job:
    """A trial this worker holds (its lock `fd`) and trains."""

    number: int
    trial_id: int
    overrides: list[str]
    fd: int


class Stopper:
    """SIGTERM / SIGINT to a worker, or a stop request in the sweep folder (`request_stop`, seen by workers on every
    machine sharing it): stop after the running trial has stopped cleanly (SIGTERM is passed on to the training
    processes, which save a checkpoint); the trial stays running in the journal and is adopted later."""

    def __init__(self, sweep_path: Path | None = None) -> None:
        self.stopped = False
        self.children: list[subprocess.Popen] = []
        self.sweep_path = sweep_path
        self.generation = stop_generation(sweep_path) if sweep_path is not None else 0

    def install(self) -> "Stopper":
        signal.signal(signal.SIGTERM, self._terminate)
        signal.signal(signal.SIGINT, self._interrupt)  # Ctrl-C: the trial, in the same process group, gets it too
        return self

    def _terminate(self, signum: int, frame: Any) -> None:  # noqa: ARG002
        self.stopped = True
        for child in list(self.children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    def _interrupt(self, signum: int, frame: Any) -> None:  # noqa: ARG002
        self.stopped = True

    def check_requests(self) -> bool:
        """Stop (as on SIGTERM) if a stop was requested in the sweep folder since this worker started; True if
        stopped."""
        if not self.stopped and self.sweep_path is not None and stop_generation(self.sweep_path) > self.generation:
            logger.info("a stop was requested in %s; stopping after the running trial saves a checkpoint",
                        self.sweep_path / STOP_FILE)
            self._terminate(signal.SIGTERM, None)
        return self.stopped

    def wait(self, proc: subprocess.Popen) -> int:
        self.children.append(proc)
        try:
            if self.stopped:
                proc.send_signal(signal.SIGTERM)
            while True:
                try:
                    return proc.wait(timeout=POLL_S)
                except subprocess.TimeoutExpired:
                    self.check_requests()
        finally:
            self.children.remove(proc)


def _die_with_parent() -> None:
    """In a child, before exec: SIGTERM when the worker that started it dies (Linux prctl PR_SET_PDEATHSIG), so
    a SIGKILLed sweep's trial stops cleanly, resumable, instead of training on unseen."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _child_env(options: TrialOptions) -> dict:
    from pkd.launch import PACKAGE_ROOT

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    if options.threads:
        env["OMP_NUM_THREADS"] = str(options.threads)
    return env


def _train(run: Run, args: list[str], options: TrialOptions, stopper: Stopper) -> int:
    """`python -m pkd train ARGS` for `run`, output appended to its console log; returns its exit code."""
    command = [sys.executable, "-m", "pkd", "train", "--no-progress"]
    command += (["--device", options.device] if options.device else []) + ([] if options.build_kernel else
                                                                           ["--no-kernel-build"])
    command += args
    run.path.mkdir(parents=True, exist_ok=True)
    with open(run.console_path(), "ab") as console:
        console.write(f"$ {' '.join(command)}\n".encode())
        console.flush()
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                                env=_child_env(options), preexec_fn=_die_with_parent)
    logger.info("%s: training (pid %d)", run.path.name, proc.pid)
    return stopper.wait(proc)


def _clear_unstarted(path: Path) -> None:
    """A run folder without a manifest (killed while it was being created): remove what creation leaves there
    (config.yaml, an empty students/, temp files) so `train --run-dir` can start it; refuse anything else."""
    if not path.is_dir():
        return
    for entry in path.iterdir():
        if entry.name == CONFIG_FILE or entry.name.endswith(".tmp"):
            entry.unlink()
        elif entry.name == STUDENTS_DIR and entry.is_dir() and not any(entry.iterdir()):
            entry.rmdir()
        elif entry.name != Run(path).console_path().name:
            raise SweepError(f"{path} holds {printable(entry.name, 60)} but no run; move the folder away and "
                             "run the sweep again")


def _wait_while_active(run: Run, stopper: Stopper) -> None:
    """A trial whose worker died may still be trained by its orphaned process: wait until it has ended."""
    announced = False
    while run.is_active() and not stopper.check_requests():
        if not announced:
            logger.info("%s: still being trained by pid %s; waiting for it", run.name, run.status().get("pid"))
            announced = True
        time.sleep(POLL_S)


def train_to_end(run: Run, fresh: list[str], options: TrialOptions, stopper: Stopper) -> State:
    """Train `run` to its end: start it with `fresh` arguments, resume it if it was started, or leave it if it is
    done. Returns its state afterwards (DONE, STOPPED on a stop request, else a failure)."""
    _wait_while_active(run, stopper)
    if stopper.stopped:
        return State.STOPPED
    if not (run.path / MANIFEST_FILE).is_file():
        _clear_unstarted(run.path)
        _train(run, fresh, options, stopper)
    elif run.state() != State.DONE:
        logger.info("%s: resuming (state %s)", run.name, run.state())
        _train(run, ["--resume", str(run.path)], options, stopper)
    return run.state()


def ensure_teacher(sweep: Sweep, options: TrialOptions, stopper: Stopper) -> bool:
    """When BASE has no teacher.checkpoint, the base run trains the sweep's teacher first (one worker trains it,
    the others wait for it); every trial then shares its teacher.pt. False when stopped on request."""
    if sweep.meta()["teacher"]["source"] != BASE_RUN:
        return True
    base = Run(sweep.path / BASE_RUN)
    with _held(sweep.lock_path(BASE_RUN)):
        if (base.path / MANIFEST_FILE).is_file() and base.state() == State.DONE:
            return True
        logger.info("training the base run %s: its teacher is every trial's", base.path)
        state = train_to_end(base, ["--config", str(sweep.base_file), "--run-dir", str(base.path)], options, stopper)
    if state == State.DONE:
        return True
    if stopper.stopped or state == State.STOPPED:
        return False
    if state != State.DONE:
        raise SweepError(f"the base run {base.path} (the sweep's teacher) ended {state}; see "
                         f"{base.console_path()}, then run the sweep again")


def _sampler(seed: int, number: int) -> Any:
    """Optuna's TPE sampler seeded by the base seed and the trial number: a trial's values depend on the sweep's
    history, not on which worker asks or in which order the workers started."""
    from optuna.samplers import TPESampler

    return TPESampler(seed=(seed * 1_000_003 + number) % 2**32)


def _set_attrs(study: Any, trial_id: int, attrs: dict) -> None:
    import optuna

    trial = optuna.trial.Trial(study, trial_id)
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _adopt(sweep: Sweep, study: Any) -> Job | None:
    """A trial left running by a worker that is gone (its lock is free): this worker takes it over."""
    from optuna.trial import TrialState

    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        fd = _lock_fd(sweep.lock_path(trial_name(frozen.number)), blocking=False)
        if fd is None:
            continue  # its worker is alive
        now = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        overrides = frozen.user_attrs.get("overrides")
        if frozen.number not in now:  # finished while we looked
            os.close(fd)
            continue
        if not (isinstance(overrides, list) and all(isinstance(o, str) for o in overrides)):
            _set_attrs(study, frozen._trial_id, {"error": "its worker died while setting it up"})
            study.tell(frozen.number, state=TrialState.FAIL)
            os.close(fd)
            continue
        logger.info("trial %d: its worker is gone; %s takes it over", frozen.number, _worker_name())
        _set_attrs(study, frozen._trial_id, {"worker": _worker_name()})
        return Job(frozen.number, frozen._trial_id, overrides, fd)
    return None


def _new_trial(sweep: Sweep, study: Any, number: int, space: Space, base: RunConfig) -> Job | None:
    """Ask Optuna for trial `number`, hold its lock, check its config (None when it cannot be trained: failed)."""
    from optuna.trial import TrialState

    study.sampler = _sampler(base.seed, number)
    trial = study.ask()
    fd = _lock_fd(sweep.lock_path(trial_name(trial.number)))
    try:
        overrides = trial_overrides(suggest(trial, space, base), base)
        for key, value in (("run", trial_name(trial.number)), ("overrides", overrides), ("worker", _worker_name())):
            trial.set_user_attr(key, value)
        trial_config(sweep.base_file, sweep.teacher_overrides() + overrides)  # before any training
    except (ConfigError, ValueError, RunError) as exc:
        logger.warning("trial %d cannot be trained: %s", trial.number, exc)
        trial.set_user_attr("error", printable(exc, 500))
        study.tell(trial, state=TrialState.FAIL)
        os.close(fd)
        return None
    return Job(trial.number, trial._trial_id, overrides, fd)


def next_job(sweep: Sweep, study: Any, n_trials: int, space: Space, base: RunConfig) -> Job | None:
    """The next trial for this worker, under the sweep's ask lock: an orphaned one first, else a new one while
    the study has fewer than `n_trials` trials that did not fail. None when there is nothing left to do."""
    from optuna.trial import TrialState

    with _held(sweep.lock_path("ask")):
        while True:
            job = _adopt(sweep, study)
            if job is not None:
                return job
            trials = study.get_trials(deepcopy=False)
            failed = sum(t.state == TrialState.FAIL for t in trials)
            if len(trials) - failed >= n_trials:
                return None
            if failed >= max(n_trials, 3):
                raise SweepError(f"{failed} trials of {sweep.path} failed; see their console.log files "
                                 "(`python -m pkd runs` lists them) and fix the base config or the space")
            job = _new_trial(sweep, study, len(trials), space, base)
            if job is not None:
                return job


def trial_values(run: Run, objective: str) -> tuple[list[float], dict]:
    """The Optuna values of a finished trial (validation figures only) and what it reports beside them."""
    rows, summary = run.prefix_table(), run.summary()
    if not rows or rows[-1].get("prefix_val_acc") is None:
        raise SweepError(f"{run.path}: no validation accuracy in its prefix table")
    last, teacher_flops = rows[-1], get_field(summary, "teacher", "flops")
    attrs = {"val_acc": last["prefix_val_acc"], "test_acc": last["prefix_acc"], "flops": last["cumulative_flops"],
             "share_of_teacher": last.get("share_of_teacher"), "k": len(rows),
             "auc_val": auc_of_rows(rows, teacher_flops, "prefix_val_acc"),
             "auc_test": auc_of_rows(rows, teacher_flops, "prefix_acc")}
    if objective == "anytime_auc":
        if attrs["auc_val"] is None:
            raise SweepError(f"{run.path}: no teacher FLOPs in its summary, so no anytime AUC")
        return [attrs["auc_val"]], attrs
    return [float(last["prefix_val_acc"]), float(last["cumulative_flops"])], attrs


def run_trial(sweep: Sweep, study: Any, job: Job, options: TrialOptions, stopper: Stopper) -> State:
    """Train a held trial to its end and tell Optuna: its values when done, a failure when it failed; a stopped
    trial is left running in the journal (the next worker resumes it)."""
    from optuna.trial import TrialState

    run = Run(sweep.trial_dir(job.number))
    share = ["--teacher-ref"] if sweep.meta()["teacher"]["share"] else []
    fresh = ["--config", str(sweep.base_file), "--run-dir", str(run.path), *share, *sweep.teacher_overrides(),
             *job.overrides]
    state = train_to_end(run, fresh, options, stopper)
    if state == State.DONE:
        try:
            values, attrs = trial_values(run, sweep.meta()["objective"])
        except (SweepError, RunError) as exc:
            state, error = State.FAILED, str(exc)
        else:
            _set_attrs(study, job.trial_id, attrs)
            study.tell(job.number, values)
            logger.info("trial %d done: %s", job.number, ", ".join(f"{v:.6g}" for v in values))
            return State.DONE
    elif stopper.stopped or state == State.STOPPED:
        logger.info("trial %d stopped; it resumes when the sweep runs again", job.number)
        return State.STOPPED
    else:
        error = f"the run ended {state}: {printable(run.status().get('message') or '', 300)}"
    _set_attrs(study, job.trial_id, {"error": error})
    study.tell(job.number, state=TrialState.FAIL)
    logger.warning("trial %d failed: %s", job.number, error)
    return State.FAILED


def work(sweep: Sweep, n_trials: int, options: TrialOptions, stopper: Stopper) -> int:
    """One worker: trials one after another until the study has `n_trials` (0), or a stop request (3)."""
    study, space, base = sweep.study(), sweep.space(), sweep.base_config()
    while not stopper.check_requests():
        job = next_job(sweep, study, n_trials, space, base)
        if job is None:
            return 0
        try:
            state = run_trial(sweep, study, job, options, stopper)
        finally:
            os.close(job.fd)
        if state == State.STOPPED:
            break
    return 3


def _spawn_worker(sweep: Sweep, n_trials: int, options: TrialOptions) -> subprocess.Popen:
    """Another worker process on this machine: the same command a worker on another machine runs."""
    command = [sys.executable, "-m", "pkd", "sweep", "--sweep-dir", str(sweep.path), "--trials", str(n_trials)]
    command += (["--device", options.device] if options.device else []) + ([] if options.build_kernel else
                                                                           ["--no-kernel-build"])
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, env=_child_env(options), preexec_fn=_die_with_parent)


def run_sweep(sweep_dir: str | os.PathLike, n_trials: int, base_path: str | os.PathLike | None = None,
              space_path: str | os.PathLike | None = None, overrides: list[str] = (), workers: int = 1,
              options: TrialOptions = TrialOptions()) -> int:
    """Open (or create) a sweep and work on it with `workers` processes until it has `n_trials` trials.

    Returns 0 when the study is complete, 3 when it was stopped (run it again to continue).
    """
    if not 1 <= n_trials <= MAX_TRIALS:
        raise SweepError(f"--trials {n_trials}: give a number of trials from 1 to {MAX_TRIALS}")
    if not 1 <= workers <= 64:
        raise SweepError(f"--workers {workers}: give 1 to 64 worker processes")
    if workers > 1 and options.threads is None and "OMP_NUM_THREADS" not in os.environ:
        options = dataclasses.replace(options, threads=max(1, (os.cpu_count() or 1) // workers))
    sweep = open_sweep(sweep_dir, base_path, space_path, overrides)
    stopper = Stopper(sweep.path).install()
    if not ensure_teacher(sweep, options, stopper):
        return 3
    others = [_spawn_worker(sweep, n_trials, options) for _ in range(workers - 1)]
    stopper.children += others
    try:
        code = work(sweep, n_trials, options, stopper) if not stopper.stopped else 3
    finally:
        codes = [child.wait() for child in others]
    return max([code, *codes])


# ----------------------------------------------------------------------------------------------- reading a sweep

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


def _flat(mapping: Any, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in (mapping.items() if isinstance(mapping, dict) else []):
        if isinstance(value, dict) and value and key not in ("params", "common"):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def schedule_text(config: dict) -> str:
    """The students of a config in one line: d_model/d_state/n_layers of each, e.g. '16/4/1, 64/16/2'."""
    common = get_field(config, "students", "common")
    common = common if isinstance(common, dict) else {}
    schedule = get_field(config, "students", "schedule")
    entries = [{**common, **e} for e in schedule if isinstance(e, dict)] if isinstance(schedule, list) else []
    return ", ".join("/".join(str(e.get(key, "-")) for key in ("d_model", "d_state", "n_layers")) for e in entries)


def config_diff(base: dict, config: dict) -> list[str]:
    """How `config` differs from `base`, one `key = value` line per differing field (the schedule as
    schedule_text: d_model/d_state/n_layers per student)."""
    a, b = _flat(base), _flat(config)
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) == b.get(key) or key == "name":
            continue
        if key == "students.schedule":
            out.append(f"students (d_model/d_state/n_layers) = {printable(schedule_text(config), 120)}")
        else:
            value = b.get(key)
            out.append(f"{key} = {printable(f'{value:.4g}' if isinstance(value, float) else value, 80)}")
    return out


def prefix_points(runs: list[Run], base: dict | None = None) -> list[dict]:
    """Every (run, k) point of the runs: cumulative FLOPs, share of the teacher, val and test accuracy, and (with
    `base`) how the run's config differs from it. A run that cannot be read is skipped with a warning."""
    points = []
    for run in runs:
        try:
            rows, config = run.prefix_table(), run.config()
        except (RunError, OSError) as exc:
            logger.warning("%s: skipped (%s)", run.path, exc)
            continue
        diff = config_diff(base, config) if base is not None else []
        for row in rows:
            points.append({"run": str(run.path), "name": run.name, "k": row["k"], "k_planned": len(rows),
                           "flops": row["cumulative_flops"], "share": row.get("share_of_teacher"),
                           "val_acc": row.get("prefix_val_acc"), "test_acc": row.get("prefix_acc"), "diff": diff})
    return points


def front(points: list[dict], split: str = "val") -> list[dict]:
    """The points on the Pareto front of (cumulative FLOPs, `split` accuracy), cheapest first (pkd.pareto)."""
    from pkd.pareto import pareto_front

    chosen = [Point(p["flops"], p[f"{split}_acc"], p["run"], p["k"], extra=p) for p in points
              if p.get(f"{split}_acc") is not None]
    return [point.extra for point in pareto_front(chosen)]


def sweep_points(sweep: Sweep) -> list[dict]:
    """prefix_points of the sweep's runs, each with how its config differs from the trials' base."""
    meta = sweep.meta()
    points = prefix_points(sweep.runs(), meta["trial_base"])
    for point in points:
        if Path(point["run"]).name == BASE_RUN:
            point["diff"] = ["the base config (it trained the sweep's teacher)"]
    return points


def trial_table(sweep: Sweep) -> list[dict]:
    """The study's trials: number, state, run, values, reported test figures, error, parameters."""
    rows = []
    for trial in sweep.study().get_trials(deepcopy=False):
        attrs = trial.user_attrs
        rows.append({"trial": trial.number, "state": TRIAL_WORDS.get(trial.state.name, trial.state.name.lower()),
                     "run": attrs.get("run", ""),
                     "values": list(trial.values or []), "test_acc": attrs.get("test_acc"),
                     "val_acc": attrs.get("val_acc"), "flops": attrs.get("flops"), "error": attrs.get("error", ""),
                     "params": dict(trial.params)})
    return rows


def param_importances(sweep: Sweep) -> dict[str, dict[str, float]]:
    """Optuna's parameter importances (its default evaluator, PED-ANOVA: how much each setting decides whether a
    trial is among the best) for each objective, once 2 or more trials are complete ({} before, or when Optuna
    cannot tell). PED-ANOVA ranks for low values, so a maximised objective is negated."""
    import warnings

    import optuna
    from optuna.trial import TrialState

    study = sweep.study()
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
        return {}
    out = {}
    meta = sweep.meta()
    for i, (name, direction) in enumerate(zip(OBJECTIVE_NAMES[meta["objective"]], OBJECTIVES[meta["objective"]])):
        sign = -1.0 if direction == "maximize" else 1.0
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "few trials" and direction notes: the page says what it shows
                out[name] = dict(optuna.importance.get_param_importances(
                    study, target=lambda t, i=i, sign=sign: sign * t.values[i]))
        except (RuntimeError, ValueError, ZeroDivisionError) as exc:
            logger.info("no importances for %s yet: %s", name, exc)
    return out


def sweep_counts(sweep: Sweep) -> dict[str, int]:
    """How many trials are complete, training and failed (keys: TRIAL_WORDS' words)."""
    counts = {word: 0 for word in TRIAL_WORDS.values()}
    for trial in trial_table(sweep):
        counts[trial["state"]] = counts.get(trial["state"], 0) + 1
    return counts


# ----------------------------------------------------------------------------------------------- from the app

def _reap(proc: subprocess.Popen) -> None:
    proc.wait()


def start_sweep(n_trials: int, base_path: str | os.PathLike | None = None, space_path: str | os.PathLike | None = None,
                runs_dir: str | os.PathLike | None = None, sweep_dir: str | os.PathLike | None = None,
                workers: int = 1, device: str | None = None, build_kernel: bool = True,
                wait_s: float = 120.0) -> Sweep:
    """`python -m pkd sweep` as a detached process (it outlives the app; output in <sweep>/sweep.log): a new sweep
    in a new folder of `runs_dir` from BASE and SPACE, or more trials of the sweep in `sweep_dir`. Waits until the
    sweep exists; SweepError with its last output line when it stops first."""
    import threading

    from pkd.launch import PACKAGE_ROOT

    if sweep_dir is None:
        base_path, space_path = Path(base_path).resolve(), Path(space_path).resolve()
        path = new_run_dir(Path(runs_dir).resolve(), f"sweep-{base_path.stem}")
        command = ["--config", str(base_path), "--space", str(space_path)]
    else:
        path, command = Path(sweep_dir).resolve(), []
    command = [sys.executable, "-m", "pkd", "sweep", "--sweep-dir", str(path), "--trials", str(int(n_trials)),
               "--workers", str(int(workers)), *command, *(["--device", device] if device else []),
               *([] if build_kernel else ["--no-kernel-build"])]
    with open(path / SWEEP_LOG, "ab") as log:
        log.write(f"$ {' '.join(command)}\n".encode())
        log.flush()
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=str(PACKAGE_ROOT), env=_child_env(TrialOptions()), start_new_session=True)
    threading.Thread(target=_reap, args=(proc,), daemon=True).start()
    _STARTED[str(path)] = proc
    sweep, deadline = Sweep(path), time.monotonic() + wait_s
    while not sweep.exists() and time.monotonic() < deadline:
        if proc.poll() is not None:
            lines = log_tail(sweep)
            raise SweepError(f"the sweep did not start: {lines[-1] if lines else f'exit {proc.returncode}'}")
        time.sleep(0.1)
    return sweep


def stop_generation(sweep_path: Path) -> int:
    """The number in the sweep's stop-request file (0 when there is none or it is unreadable)."""
    try:
        text = (Path(sweep_path) / STOP_FILE).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return 0
    return int(text) if text.isdigit() and len(text) < 19 else 0


def request_stop(sweep: Sweep) -> None:
    """Ask every worker of the sweep, on any machine sharing its folder, to stop: they poll the stop-request file
    about once a second and stop like on SIGTERM. Workers started afterwards are not affected."""
    with _held(sweep.path / LOCKS_DIR / "stop.lock"):
        atomic_write_bytes(sweep.path / STOP_FILE, f"{stop_generation(sweep.path) + 1}\n".encode())


def stop_sweep(sweep: Sweep) -> int:
    """Ask every worker of the sweep to stop: a stop request in its folder (workers on other machines see it
    within about a second) and SIGTERM to this machine's workers at once (the trial saves a checkpoint and stays
    running in the journal, to be resumed); returns how many local processes were signalled. A recycled pid is
    never hit: the holder's recorded start time must match."""
    request_stop(sweep)
    signalled = set()
    folder = sweep.path / LOCKS_DIR
    for lock in sorted(folder.glob("*.lock")) if folder.is_dir() else []:
        try:
            host, pid, start = lock.read_text(encoding="utf-8").split()
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        if host == socket.gethostname() and pid.isdigit() and int(pid) not in signalled and lock_busy(lock) \
                and process_alive(int(pid), int(start) if start.isdigit() else None):
            os.kill(int(pid), signal.SIGTERM)
            signalled.add(int(pid))
    proc = _STARTED.get(str(sweep.path))
    if proc is not None and proc.poll() is None and proc.pid not in signalled:
        proc.terminate()
        signalled.add(proc.pid)
    return len(signalled)


def log_tail(sweep: Sweep, max_chars: int = 4000) -> list[str]:
    """The last lines of the sweep's sweep.log (what a sweep started from the app printed)."""
    path = sweep.path / SWEEP_LOG
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - max_chars))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return [printable(line, 300) for line in text.splitlines() if line.strip()]
