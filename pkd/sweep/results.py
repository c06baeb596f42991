"""What a sweep found: every (run, k) point on the plane of cumulative FLOPs and accuracy, its Pareto front, the
study's trials and parameter importances, and the Optuna values of a finished trial.

Readers only (the app's Sweeps page and `pkd sweep` / `pkd pareto` print them); Optuna is imported inside the
functions that read a study, so that listing points costs the app no Optuna import.
"""

from __future__ import annotations

import logging
import socket
import warnings
from pathlib import Path
from typing import Any

from pkd.anytime_auc import auc_of_rows
from pkd.pareto import Point, pareto_front
from pkd.runs import Run, RunError, get_field, printable
from pkd.runs.schema import PrefixRow, Summary, TeacherFigures
from pkd.sweep.folder import BASE_RUN, Sweep
from pkd.sweep.space import OBJECTIVE_NAMES, OBJECTIVES, SweepError

logger = logging.getLogger(__name__)

# below this many complete trials a ranking of settings by importance is fitting noise (6 trials ranked distill.alpha
# first for FLOPs, which it cannot change): the app shows each setting against each objective instead
MIN_TRIALS_FOR_IMPORTANCE = 20
COST_OBJECTIVES = ("cumulative FLOPs",)  # OBJECTIVE_NAMES that only the students' sizes decide
# how the app and the CLI name Optuna's trial states (a trial in progress is "training")
POINTS_ATTR, CONFIG_ATTR = "points", "config"  # a finished trial's (k, FLOPs, accuracies) and config, in the study
TRIAL_WORDS = {"COMPLETE": "complete", "RUNNING": "training", "FAIL": "fail", "WAITING": "waiting", "PRUNED": "pruned"}


def trial_values(run: Run, objective: str) -> tuple[list[float], dict]:
    """The Optuna values of a finished trial (validation figures only) and what it reports beside them."""
    rows, summary = run.prefix_table(), run.summary()
    if not rows or rows[-1].get(PrefixRow.PREFIX_VAL_ACC) is None:
        raise SweepError(f"{run.path}: no validation accuracy in its prefix table")
    last, teacher_flops = rows[-1], get_field(summary, Summary.TEACHER, TeacherFigures.FLOPS)
    attrs = {"val_acc": last[PrefixRow.PREFIX_VAL_ACC], "test_acc": last[PrefixRow.PREFIX_ACC],
             "flops": last[PrefixRow.CUMULATIVE_FLOPS],
             PrefixRow.SHARE_OF_TEACHER: last.get(PrefixRow.SHARE_OF_TEACHER), "k": len(rows),
             "auc_val": auc_of_rows(rows, teacher_flops, PrefixRow.PREFIX_VAL_ACC),
             "auc_test": auc_of_rows(rows, teacher_flops, PrefixRow.PREFIX_ACC),
             # what a front needs, in the study: a database sweep's machines read every trial from it
             POINTS_ATTR: [_point_of(row) for row in rows], CONFIG_ATTR: run.config(), "host": socket.gethostname(),
             "path": str(run.path)}
    if objective == "anytime_auc":
        if attrs["auc_val"] is None:
            raise SweepError(f"{run.path}: no teacher FLOPs in its summary, so no anytime AUC")
        return [attrs["auc_val"]], attrs
    return [float(last[PrefixRow.PREFIX_VAL_ACC]), float(last[PrefixRow.CUMULATIVE_FLOPS])], attrs


def _point_of(row: dict) -> dict:
    """A prefix row's figures as a trial keeps them (the keys prefix_points gives its points)."""
    return {"k": row[PrefixRow.K], "flops": row[PrefixRow.CUMULATIVE_FLOPS],
            "share": row.get(PrefixRow.SHARE_OF_TEACHER), "val_acc": row.get(PrefixRow.PREFIX_VAL_ACC),
            "test_acc": row.get(PrefixRow.PREFIX_ACC)}


def study_points(study: Any, base: dict | None = None) -> list[dict]:
    """prefix_points from the study alone (a database sweep: every machine's trials): each complete trial's points
    and config as trial_values recorded them. A point's run is the trial's run directory where it was trained,
    written `host:path` when another machine trained it."""
    from optuna.trial import TrialState

    points = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        attrs = trial.user_attrs
        rows, config, path = attrs.get(POINTS_ATTR), attrs.get(CONFIG_ATTR), str(attrs.get("path", ""))
        if not (isinstance(rows, list) and isinstance(config, dict)):
            continue  # a trial of a pkd before the study kept its points
        run = path if attrs.get("host") == socket.gethostname() else f"{attrs.get('host', '?')}:{path}"
        diff = config_diff(base, config) if base is not None else []
        points += [{**row, "run": run, "name": Path(path).name or str(attrs.get("run", "")), "k_planned": len(rows),
                    "diff": diff} for row in rows if isinstance(row, dict)]
    return points


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
            points.append({"run": str(run.path), "name": run.name, "k": row[PrefixRow.K], "k_planned": len(rows),
                           "flops": row[PrefixRow.CUMULATIVE_FLOPS], "share": row.get(PrefixRow.SHARE_OF_TEACHER),
                           "val_acc": row.get(PrefixRow.PREFIX_VAL_ACC), "test_acc": row.get(PrefixRow.PREFIX_ACC),
                           "diff": diff})
    return points


def front(points: list[dict], split: str = "val") -> list[dict]:
    """The points on the Pareto front of (cumulative FLOPs, `split` accuracy), cheapest first (pkd.pareto)."""
    chosen = [Point(p["flops"], p[f"{split}_acc"], p["run"], p["k"], extra=p) for p in points
              if p.get(f"{split}_acc") is not None]
    return [point.extra for point in pareto_front(chosen)]


def sweep_points(sweep: Sweep) -> list[dict]:
    """prefix_points of the sweep's runs, each with how its config differs from the trials' base; on a database,
    every machine's trials from the study (study_points) and this folder's base run."""
    meta = sweep.meta()
    if sweep.database():
        base_runs = [run for run in sweep.runs() if run.name == BASE_RUN]
        points = prefix_points(base_runs, meta["trial_base"]) + study_points(sweep.study(), meta["trial_base"])
    else:
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


def can_change(param: str, objective_name: str) -> bool:
    """Whether a searched setting can change an objective at all: FLOPs per sample depend on the students' sizes
    (schedule.*) alone, never on how they are trained (distill.alpha, distill.temperature, students.optim.*, seed);
    accuracy and anytime AUC can depend on every setting."""
    return objective_name not in COST_OBJECTIVES or param.startswith("schedule.")


def param_importances(sweep: Sweep) -> dict[str, dict[str, float]]:
    """Optuna's parameter importances (its default evaluator, PED-ANOVA: how much each setting decides whether a
    trial is among the best) for each objective, over only the settings that can change it (can_change), once 2 or
    more trials are complete ({} before, or when Optuna cannot tell). PED-ANOVA ranks for low values, so a
    maximised objective is negated. With fewer than MIN_TRIALS_FOR_IMPORTANCE trials the ranking is noise."""
    import optuna
    from optuna.trial import TrialState

    study = sweep.study()
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
        return {}
    out = {}
    meta = sweep.meta()
    searched = sorted({p for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) for p in t.params})
    for i, (name, direction) in enumerate(zip(OBJECTIVE_NAMES[meta["objective"]], OBJECTIVES[meta["objective"]])):
        sign = -1.0 if direction == "maximize" else 1.0
        params = [p for p in searched if can_change(p, name)]
        if not params:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "few trials" and direction notes: the page says what it shows
                out[name] = dict(optuna.importance.get_param_importances(
                    study, params=params, target=lambda t, i=i, sign=sign: sign * t.values[i]))
        except (RuntimeError, ValueError, ZeroDivisionError) as exc:
            logger.info("no importances for %s yet: %s", name, exc)
    return out


def sweep_counts(sweep: Sweep) -> dict[str, int]:
    """How many trials are complete, training and failed (keys: TRIAL_WORDS' words)."""
    counts = {word: 0 for word in TRIAL_WORDS.values()}
    for trial in trial_table(sweep):
        counts[trial["state"]] = counts.get(trial["state"], 0) + 1
    return counts

