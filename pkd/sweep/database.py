"""A sweep whose Optuna study lives in a database (`pkd sweep --storage URL`): created there by the first worker,
joined by workers on other machines, each with a sweep folder of its own.

The study holds what every machine needs: the plan (sweep.json's content, as the study's user attribute
`pkd_sweep`) and, per finished trial, its points and config (pkd.sweep.results.trial_values). A machine's sweep
folder is written from the plan when it joins: base.yaml, space.yaml, sweep.json naming the database (without its
password) and the study; its trials' run directories stay on it. A teacher trained by the base run (BASE without
teacher.checkpoint) is trained in each machine's folder, from the same config and seed.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import optuna
import yaml

from pkd.runs import SWEEP_FILE, Run, atomic_write_bytes, atomic_write_json, printable
from pkd.sweep.folder import BASE_RUN, SPACE_FILE, STUDY_NAME, Sweep, held
from pkd.sweep.space import SweepError, load_space
from pkd.sweep.storage import (DEFAULT_HEARTBEAT_S, PASSWORD_ENV, PLAN_ATTR, connect, masked, plan_of, public_url,
                               study_lock)
from pkd.sweep.study import _check_fresh, plan_sweep

logger = logging.getLogger(__name__)

MAX_HEARTBEAT_S = 3600


@dataclass(frozen=True)
class DatabaseOptions:
    """Where a sweep's study lives when it is in a database (`pkd sweep --storage/--study/--heartbeat`)."""

    url: str | None = None  # None: the sweep folder's, else the space file's `storage`
    study: str | None = None  # the study's name in the database (default: the folder's, else "pkd")
    heartbeat_s: int | None = None  # a new study's heartbeat (default: the space file's `heartbeat`, else 60 s)

    def child_env(self) -> dict[str, str]:
        """What a worker this one starts needs beside its command line: the URL's password, if it has one (the
        command line, visible to every user of the machine, never carries it)."""
        from sqlalchemy.engine import make_url

        password = make_url(self.url).password if self.url else None
        return {PASSWORD_ENV: password} if password else {}


def uses_database(sweep_dir: str | os.PathLike, space_path: str | os.PathLike | None,
                  options: DatabaseOptions) -> bool:
    """Whether the sweep keeps its study in a database: --storage, the sweep folder's sweep.json, or the space."""
    sweep = Sweep(Path(sweep_dir).resolve())
    if options.url or (sweep.exists() and sweep.database()):
        return True
    return not sweep.exists() and space_path is not None and bool(load_space(space_path).raw.get("storage"))


def _same(stored: dict, plan: dict, where: str) -> None:
    for key, what in (("base", "base config (with its overrides)"), ("space", "search space")):
        if stored.get(key) != plan[key]:
            raise SweepError(f"{where} was started with another {what}; join it without --config and --space, or "
                             "start a new sweep under another --study")


def _heartbeat(options: DatabaseOptions, plan: dict) -> int:
    value = options.heartbeat_s or plan["space"].get("heartbeat") or DEFAULT_HEARTBEAT_S
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_HEARTBEAT_S:
        raise SweepError(f"heartbeat {printable(value, 40)}: give whole seconds from 1 to {MAX_HEARTBEAT_S}")
    return value


def _localized(sweep: Sweep, stored: dict, url: str, name: str) -> dict:
    """sweep.json of this machine's folder: the study's plan, the base run's teacher in this folder, where the
    study lives (the URL without its password)."""
    meta = json.loads(json.dumps(stored))
    if meta["teacher"]["source"] == BASE_RUN:
        meta["teacher"]["path"] = str(Run(sweep.path / BASE_RUN).teacher_path())
        meta["trial_base"]["teacher"]["checkpoint"] = meta["teacher"]["path"]
    return {**meta, "storage": public_url(url), "study": name}


def _write_folder(sweep: Sweep, meta: dict) -> None:
    sweep.path.mkdir(parents=True, exist_ok=True)
    with held(sweep.lock_path("create")):
        if sweep.exists():  # another worker of this machine wrote it meanwhile
            return
        _check_fresh(sweep.path)
        atomic_write_bytes(sweep.base_file, yaml.safe_dump(meta["base"], sort_keys=False).encode())
        atomic_write_bytes(sweep.path / SPACE_FILE, yaml.safe_dump(meta["space"], sort_keys=False).encode())
        atomic_write_json(sweep.path / SWEEP_FILE, meta)


def open_database_sweep(sweep_dir: str | os.PathLike, base_path: str | os.PathLike | None,
                        space_path: str | os.PathLike | None, overrides: list[str],
                        options: DatabaseOptions) -> Sweep:
    """The database sweep for `sweep_dir`: its study created in the database (after every pre-flight check) when
    it is not there yet, or joined; this machine's sweep folder written from the study's plan when it is new.
    Every error (the URL, the server, a foreign study, another plan) comes before anything is written."""
    sweep = Sweep(Path(sweep_dir).resolve())
    local = sweep.meta() if sweep.exists() else None
    if (base_path is None) != (space_path is None):
        raise SweepError("give both --config and --space (to start a sweep or check that they are its), or neither")
    url = options.url or (local or {}).get("storage") or \
        (load_space(space_path).raw.get("storage") if space_path else None)
    name = (local or {}).get("study") or options.study or STUDY_NAME
    if local is not None and options.study not in (None, name):
        raise SweepError(f"{sweep.path} belongs to the study {printable(name, 80)}, not {printable(options.study, 80)}"
                         "; give that --study, or another --sweep-dir")
    plan_of(connect(url), name)  # a wrong URL, a refused connection, a missing database, a foreign study: first
    plan = plan_sweep(sweep.path, base_path, space_path, list(overrides)) if base_path is not None else None
    if local is not None and not sweep.database():
        raise SweepError(f"{sweep.path} keeps its study in its journal file; give a new --sweep-dir for a sweep "
                         "on a database")
    if local is not None and public_url(url) != local["storage"]:
        raise SweepError(f"{sweep.path} keeps its study in {masked(local['storage'])}, not {masked(url)}; give "
                         "that --storage, or another --sweep-dir")
    storage = connect(url)
    with study_lock(storage, name, "create"):
        stored = plan_of(storage, name)  # a foreign study of that name: SweepError
        if stored is None:
            if plan is None:
                raise SweepError(f"the database {masked(url)} holds no sweep named {printable(name, 80)}: give "
                                 "--config BASE and --space SPACE to start one")
            if sweep.path.is_dir() and local is None:
                _check_fresh(sweep.path)
            stored = {**plan, "heartbeat_s": _heartbeat(options, plan)}
            study = optuna.create_study(study_name=name, storage=storage, directions=plan["directions"])
            study.set_user_attr(PLAN_ATTR, stored)
            logger.info("sweep %s created in %s: objective %s", name, masked(url), plan["objective"])
        elif plan is not None:
            _same(stored, plan, f"sweep {printable(name, 80)} in {masked(url)}")
    if local is None:
        _write_folder(sweep, _localized(sweep, stored, url, name))
        logger.info("%s: this machine's folder of sweep %s in %s", sweep.path, name, masked(url))
    return sweep
