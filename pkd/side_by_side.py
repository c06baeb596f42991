"""Runs laid side by side (the Compare page): which settings differ between them, one row of figures per run, every (run, k) point
with whether it lies on the Pareto front, and runs grouped by one setting (each group's spread over its runs,
per k, is pkd.groups.group_prefixes').

Readers only (the app's Compare page): run directories in, plain dicts out. No torch.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pkd.anytime_auc import auc_of_rows
from pkd.pareto import Point, front_flags
from pkd.runs import TEACHER_FILE, Run, RunError, file_sha256, get_field, printable
from pkd.runs.schema import PrefixRow, Summary, TeacherFigures, TeacherRef
from pkd.groups import group_prefixes
from pkd.sweep.results import schedule_text

SCHEDULE = "students.schedule"  # shown as schedule_text: d_model/d_state/n_layers of each student
IGNORED = ("name",)  # every run has its own name: never a "difference"
TEACHER_ID = "teacher file"  # the teacher a run distils from: the first 12 hex of its file's sha256
# the figures of a run's row, after its differing settings (names the app shows as column titles)
FIGURES = ("students", "test accuracy", "val accuracy", "FLOPs per sample", "% of the teacher's FLOPs",
           "teacher's accuracy", "anytime AUC (test)")


def flat_settings(config: dict) -> dict[str, Any]:
    """A run config as dotted keys -> values ('distill.alpha': 0.3); the students' schedule as one text
    (SCHEDULE: '24/8/1, 32/8/1'); lists other than the schedule as text."""
    out: dict[str, Any] = {}

    def walk(mapping: dict, prefix: str) -> None:
        for key, value in mapping.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict) and value:
                walk(value, name + ".")
            elif name == SCHEDULE:
                out[name] = schedule_text(config)
            else:
                out[name] = printable(value, 80) if isinstance(value, (list, dict)) else value
    walk(config if isinstance(config, dict) else {}, "")
    return out


def differing_settings(flats: list[dict]) -> list[str]:
    """The dotted settings whose values are not the same in every one of `flats` (flat_settings of run configs; a
    key one run lacks differs), in config order."""
    keys = list(dict.fromkeys(key for flat in flats for key in flat))
    return [key for key in keys if key not in IGNORED and len({repr(f.get(key)) for f in flats}) > 1]


@dataclass(frozen=True)
class RunFigures:
    """One run as the Compare page reads it: its settings (flat), prefix rows, summary and display name."""

    run: Run
    name: str
    settings: dict
    rows: list
    summary: dict
    teacher: str | None = None  # teacher_id(run)


def teacher_id(run: Run) -> str | None:
    """The teacher file a run distils from, as the first 12 hex digits of its sha256 (teacher-ref.json's for a
    shared one, else its own teacher.pt hashed), or None while it has none. Runs that share one teacher record
    different paths and stage settings for it (the run that trained it, the ones that load it, each on its own
    machine): the file says whether the teacher differs."""
    try:
        ref = run.teacher_reference()
    except (RunError, OSError):
        ref = None
    if ref:
        return ref[TeacherRef.SHA256][:12]
    own = run.path / TEACHER_FILE
    if not own.is_file():
        return None
    stat = own.stat()
    return _sha256_of(str(own.resolve()), stat.st_size, stat.st_mtime_ns)[:12]


@functools.lru_cache(maxsize=256)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    """file_sha256 once per file version (path, size, modification time): Compare re-draws on every widget change,
    and hashing a run's 4.8 MB teacher.pt each time cost 8 ms a run (2-core EPYC, load 2). It only labels a table
    column; loading a shared teacher still checks its full sha256 (pkd.runs.weights)."""
    return file_sha256(Path(path))


def read_runs(runs: list[Run], names: dict[str, str] | None = None) -> tuple[list[RunFigures], list[str]]:
    """The runs that can be read (with at least one finished student) and, for each one that cannot, one line
    saying why."""
    names, out, skipped = names or {}, [], []
    for run in runs:
        name = names.get(str(run.path), run.name)
        try:
            rows, summary, config = run.prefix_table(), run.summary(), run.config()
        except (RunError, OSError) as exc:
            skipped.append(f"{name}: {exc}")
            continue
        if not rows:
            skipped.append(f"{name}: no finished student yet")
            continue
        out.append(RunFigures(run, name, flat_settings(config), rows, summary, teacher_id(run)))
    return out, skipped


def figures_of(item: RunFigures) -> dict[str, Any]:
    """A run's headline figures (FIGURES): of all its finished students together, on test unless named."""
    last, teacher = item.rows[-1], item.summary.get(Summary.TEACHER) or {}
    return {"students": last[PrefixRow.K], "test accuracy": last.get(PrefixRow.PREFIX_ACC),
            "val accuracy": last.get(PrefixRow.PREFIX_VAL_ACC), "FLOPs per sample": last[PrefixRow.CUMULATIVE_FLOPS],
            "% of the teacher's FLOPs": last.get(PrefixRow.SHARE_OF_TEACHER),
            "teacher's accuracy": teacher.get(TeacherFigures.TEST_ACC),
            "anytime AUC (test)": auc_of_rows(item.rows, get_field(item.summary, Summary.TEACHER,
                                                                   TeacherFigures.FLOPS))}


def run_table(items: list[RunFigures]) -> tuple[list[str], list[dict]]:
    """The settings that differ between the runs and one row per run: run, those settings, FIGURES. When every run
    distils the same teacher file, how each got it (teacher.* settings: a path, the epochs of the run that trained
    it) is no difference; when the files differ, TEACHER_ID is one."""
    keys = differing_settings([item.settings for item in items]) if len(items) > 1 else []
    teachers = {item.teacher for item in items}
    if len(teachers) == 1 and None not in teachers:
        keys = [key for key in keys if not key.startswith("teacher.")]
    elif len(items) > 1 and len(teachers) > 1:
        keys.append(TEACHER_ID)
    rows = [{"run": item.name, **{key: item.settings.get(key) for key in keys if key != TEACHER_ID},
             **({TEACHER_ID: item.teacher} if TEACHER_ID in keys else {}), **figures_of(item)} for item in items]
    return keys, rows


def prefix_points(items: list[RunFigures]) -> list[dict]:
    """Every (run, k): its name, k, cumulative FLOPs, test accuracy and `front`, whether no other point is both no
    costlier and at least as accurate on test (pkd.pareto; points without a test accuracy are left out)."""
    points = [Point(row[PrefixRow.CUMULATIVE_FLOPS], row[PrefixRow.PREFIX_ACC], item.name, row[PrefixRow.K])
              for item in items for row in item.rows if row.get(PrefixRow.PREFIX_ACC) is not None]
    return [{"run": p.run, "k": p.k, "flops": p.flops, "acc": p.acc, "front": on}
            for p, on in zip(points, front_flags(points))]


@dataclass(frozen=True)
class Group:
    """The runs sharing one value of the grouping setting and, per prefix k, their spread (pkd.groups)."""

    value: Any
    names: tuple
    prefixes: tuple  # pkd.groups.PrefixSpread per k: k, n runs, mean cumulative FLOPs, test Spread


def group_runs(items: list[RunFigures], setting: str) -> list[Group]:
    """The runs grouped by their value of `setting` (a dotted key of flat_settings), in first-seen order, each
    group's prefixes aggregated by pkd.groups.group_prefixes (mean ± SE over the runs that have each k)."""
    by_value: dict[str, list[RunFigures]] = {}
    for item in items:
        by_value.setdefault(repr(item.settings.get(setting)), []).append(item)
    return [Group(members[0].settings.get(setting), tuple(m.name for m in members),
                  tuple(group_prefixes([m.run for m in members]))) for members in by_value.values()]


def same_samples(a: RunFigures, b: RunFigures) -> str | None:
    """Why runs a and b cannot be compared sample by sample (another dataset or test-set size), or None."""
    for key in ("data.dataset", "data.test_limit"):
        if a.settings.get(key) != b.settings.get(key):
            return (f"{a.name} and {b.name} differ in {key} ({a.settings.get(key)} vs {b.settings.get(key)}): a "
                    "per-sample comparison needs the same test samples; pick runs of one dataset and test set")
    return None
