"""A sweep's Optuna study: creating the sweep (every pre-flight check, then sweep.json and the study in
journal.log) and handing trials to workers (an orphaned one first, else a new one from the sampler).

Workers share the study through the journal file (Optuna's distributed mode). A killed worker leaves its trial
running in the journal with its lock free: the next worker adopts it, so no trial is ever duplicated. The
pre-flight builds each trial's models on the meta device (pkd.train.specs), so this module belongs to the
training side: the app reads sweeps through pkd.sweep's face, which does not import it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.samplers import TPESampler
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState

from pkd.config import ConfigError, RunConfig, load_config
from pkd.runs import (SWEEP_FILE, Run, RunError, atomic_write_bytes, atomic_write_json, check_teacher_file,
                      printable)
from pkd.sweep.folder import (BASE_RUN, JOURNAL_FILE, LOCKS_DIR, SPACE_FILE, STUDY_NAME, SWEEP_LOG, Sweep, held,
                              lock_fd, trial_name)
from pkd.sweep.journal_check import check_overrides
from pkd.sweep.space import OBJECTIVES, Space, SweepError, load_space, suggest, trial_overrides
from pkd.sweep.storage import ask_lock, masked
from pkd.train.specs import check_models  # the sweep runs training; the app never imports this module

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- creating a sweep

def trial_config(base_file: Path, overrides: list[str]) -> RunConfig:
    """The config a trial trains with (base.yaml + its overrides), with every model built once on the meta device
    (pkd.train.specs.check_models): a bad or oversized trial stops here, before any training."""
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
            "command": [masked(arg) for arg in sys.argv]}


def _check_fresh(path: Path) -> None:
    """A new sweep folder must be empty (but for the app's sweep.log and lock files): nothing is overwritten."""
    extra = [p.name for p in path.iterdir() if p.name not in (SWEEP_LOG, LOCKS_DIR)]
    if extra:
        raise SweepError(f"{path} is not empty and not a sweep (it holds {printable(extra[0], 60)}); choose another "
                         "--sweep-dir or delete it")


def _write_sweep(sweep: Sweep, plan: dict) -> None:
    """base.yaml, space.yaml, the Optuna study in journal.log, then sweep.json (last: it marks a whole sweep)."""
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
        with held(sweep.lock_path("create")):
            if not sweep.exists():  # another worker may have created it meanwhile
                _check_fresh(sweep.path)
                _write_sweep(sweep, plan)
                logger.info("sweep %s created: objective %s", sweep.path, plan["objective"])
    if plan is not None:
        _same_plan(sweep, plan)
    return sweep


# ----------------------------------------------------------------------------------------------- handing out trials

def trusted_problem(sweep: Sweep, number: int, overrides: Any, space: Space, base: RunConfig) -> str:
    """Why a trial's stored overrides must not be trained ("" when they may): not written by a worker that lived to
    record them, not what pkd writes for the space (journal_check), or not a valid, trainable config."""
    if overrides is None:
        return "its worker died while setting it up"
    try:
        check_overrides(overrides, space, base, f"trial {number} in {sweep.path / JOURNAL_FILE}")
        trial_config(sweep.base_file, sweep.teacher_overrides() + overrides)
    except (SweepError, ConfigError, ValueError, RunError) as exc:
        return printable(exc, 500)
    return ""


@dataclass
class Job:
    """A trial this worker holds (its lock `fd`) and trains."""

    number: int
    trial_id: int
    overrides: list[str]
    fd: int


def _sampler(seed: int, number: int) -> Any:
    """Optuna's TPE sampler seeded by the base seed and the trial number: a trial's values depend on the sweep's
    history, not on which worker asks or in which order the workers started."""
    return TPESampler(seed=(seed * 1_000_003 + number) % 2**32)


def set_attrs(study: Any, trial_id: int, attrs: dict) -> None:
    """Record `attrs` as user attributes of the study's trial `trial_id` (what the app and the CLI report)."""
    trial = optuna.trial.Trial(study, trial_id)
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _adopt(sweep: Sweep, study: Any, space: Space, base: RunConfig) -> Job | None:
    """A trial left running by a worker that is gone (its lock is free): this worker takes it over, once its
    stored overrides are checked against the space and the config schema (journal_check; else it fails)."""
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if sweep.database() and not sweep.trial_dir(frozen.number).is_dir():
            continue  # on a database, another machine's trial: its heartbeat tells whether its worker lives
        fd = lock_fd(sweep.lock_path(trial_name(frozen.number)), blocking=False)
        if fd is None:
            continue  # its worker is alive
        now = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        overrides = frozen.user_attrs.get("overrides")
        if frozen.number not in now:  # finished while we looked
            os.close(fd)
            continue
        problem = trusted_problem(sweep, frozen.number, overrides, space, base)
        if problem:
            logger.warning("trial %d is not resumed: %s", frozen.number, problem)
            set_attrs(study, frozen._trial_id, {"error": problem})
            study.tell(frozen.number, state=TrialState.FAIL)
            os.close(fd)
            continue
        logger.info("trial %d: its worker is gone; %s takes it over", frozen.number, _worker_name())
        set_attrs(study, frozen._trial_id, {"worker": _worker_name()})
        return Job(frozen.number, frozen._trial_id, overrides, fd)
    return None


def _new_trial(sweep: Sweep, study: Any, number: int, space: Space, base: RunConfig) -> Job | None:
    """Ask Optuna for trial `number`, hold its lock, check its config (None when it cannot be trained: failed)."""
    study.sampler = _sampler(base.seed, number)
    trial = study.ask()
    fd = lock_fd(sweep.lock_path(trial_name(trial.number)))
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
    with ask_lock(sweep, study):
        while True:
            job = _adopt(sweep, study, space, base)
            if job is not None:
                return job
            fail_stale_trials(study)  # on a database: killed workers' trials failed, each retried once (WAITING)
            trials = study.get_trials(deepcopy=False)
            failed = sum(t.state == TrialState.FAIL for t in trials)
            if len(trials) - failed >= n_trials and not any(t.state == TrialState.WAITING for t in trials):
                return None
            if failed >= max(n_trials, 3):
                raise SweepError(f"{failed} trials of {sweep.path} failed; see their console.log files "
                                 "(`python -m pkd runs` lists them) and fix the base config or the space")
            job = _new_trial(sweep, study, len(trials), space, base)
            if job is not None:
                return job


