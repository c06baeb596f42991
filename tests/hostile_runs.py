"""Damaged and hostile run files, one breaker per kind (issue 10): the listing, CLI, app and browser tests put these
runs beside good ones. Each breaker damages one file of a run directory; `problem` is a regex that Run.info()'s
one-line `problem` must match, or None when the damage is skipped by design (a bad metrics line, student files
beyond K) and the run stays sound. Nothing here writes outside the folder it is given.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pkd.runs import MAX_PREFIX_BYTES, PREFIX_COLUMNS, Run

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"

DEEP = "[" * 100_000 + "]" * 100_000  # json.loads raises RecursionError on it
HEADER = ",".join(PREFIX_COLUMNS)
ROW = "{k},mamba,2874,188122,{cum},0.0078,{acc},0.96,0.96,0.96,1.0"  # a well-formed prefix.csv row
GOOD_LINE = '{"event": "epoch", "stage": "teacher", "student": 0, "epoch": %d, "val_acc": 0.5}\n'


@dataclass(frozen=True)
class Breaker:
    name: str  # also the run directory's name
    file: str  # the damaged file: status, manifest, metrics, prefix, summary, students
    damage: Callable[[Run], object]
    problem: str | None  # regex for Run.info()["problem"]; None: the run stays sound


def write(name: str, content: str | bytes) -> Callable[[Run], object]:
    data = content.encode() if isinstance(content, str) else content
    return lambda run: (run.path / name).write_bytes(data)


def fifo(name: str) -> Callable[[Run], object]:
    return lambda run: ((run.path / name).unlink(missing_ok=True), os.mkfifo(run.path / name))


def status(**fields) -> Callable[[Run], object]:
    return write("status.json", json.dumps({"state": "done", **fields}))


def manifest(change: Callable[[dict], object]) -> Callable[[Run], object]:
    """Rewrite the run's own manifest after `change(manifest)`."""
    def damage(run: Run) -> None:
        data = json.loads((run.path / "manifest.json").read_text())
        change(data)
        (run.path / "manifest.json").write_text(json.dumps(data))
    return damage


def prefix(*rows: str, header: str = HEADER) -> Callable[[Run], object]:
    return write("prefix.csv", "\n".join([header, *rows]) + "\n")


def metrics(bad: str | bytes) -> Callable[[Run], object]:
    """Two good epoch lines around one bad line: a reader must keep exactly the two good ones."""
    bad = bad.encode() if isinstance(bad, str) else bad
    return write("metrics.jsonl", (GOOD_LINE % 1).encode() + bad + b"\n" + (GOOD_LINE % 2).encode())


def students_beyond_k(run: Run) -> None:
    """Garbage student files past the schedule's K: loading any of them would fail, so none may be loaded."""
    k = len(run.config().get("students", {}).get("schedule", [])) or 32
    for extra in (k + 1, k + 2):
        run.student_path(extra).parent.mkdir(exist_ok=True)
        run.student_path(extra).write_bytes(b"\x80\x04 not a weights file" * 10)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


BREAKERS = [
    # -- status.json
    Breaker("status-empty", "status", write("status.json", b""), r"^status\.json: corrupt JSON"),
    Breaker("status-garbage", "status", write("status.json", b"\xff\xfe{{{"), r"^status\.json: corrupt JSON"),
    Breaker("status-list", "status", write("status.json", '["running"]'), r"^status\.json: expected a mapping"),
    Breaker("status-odd-state", "status", write("status.json", '{"state": ["x"], "pid": "1"}'),
            r"^status\.json: state \['x'\] is not a text"),
    Breaker("status-unknown-state", "status", status(state="exploded"),
            r"^status\.json: state 'exploded' is not one of created, running"),
    Breaker("status-fifo", "status", fifo("status.json"), r"^status\.json: not a regular file"),
    Breaker("status-deep", "status", write("status.json", DEEP), r"^status\.json: JSON nested too deeply"),
    Breaker("status-pid-list", "status", status(state="running", pid=[1]), r"^status\.json: pid \[1\] is not a"),
    Breaker("status-pid-text", "status", status(state="running", pid="12"), r"^status\.json: pid '12' is not a"),
    Breaker("status-pid-float", "status", status(state="running", pid=1.5), r"^status\.json: pid 1\.5 is not a"),
    Breaker("status-pid-bool", "status", status(state="running", pid=True), r"^status\.json: pid True is not a"),
    Breaker("status-pid-negative", "status", status(state="running", pid=-1), r"^status\.json: pid -1 is outside"),
    Breaker("status-time-far", "status", status(updated=1e300),
            r"^status\.json: updated 1e\+300 is outside 0\.\.4,102,444,800"),
    Breaker("status-time-negative", "status", status(started=-5), r"^status\.json: started -5 is outside 0\.\."),
    Breaker("status-progress-nan", "status", write("status.json", '{"state": "running", "progress": NaN}'),
            r"^status\.json: progress nan is not a finite number"),
    # -- manifest.json
    Breaker("manifest-empty", "manifest", write("manifest.json", b""), r"^manifest\.json: corrupt JSON"),
    Breaker("manifest-list", "manifest", write("manifest.json", "[1, 2]"), r"^manifest\.json: not a pkd manifest"),
    Breaker("manifest-deep", "manifest", write("manifest.json", DEEP), r"^manifest\.json: JSON nested too deeply"),
    Breaker("manifest-nested-40", "manifest", manifest(lambda m: m.update(versions=json.loads(nested(40)))),
            r"^manifest\.json: JSON nested over 32 levels"),
    Breaker("manifest-no-config", "manifest", manifest(lambda m: m.pop("config")),
            r"^manifest\.json: not a pkd manifest \(expected a mapping with a config\)"),
    Breaker("manifest-bad-config", "manifest", manifest(lambda m: m.update(
        config={"data": 5, "students": {"schedule": 3}}, created="yesterday")),
        r"^manifest\.json: created 'yesterday' is not a finite number"),
    Breaker("manifest-section-list", "manifest", manifest(lambda m: m["config"].update(students=[1])),
            r"^manifest\.json: config\.students is \[1\], not a mapping"),
    Breaker("manifest-section-null", "manifest", manifest(lambda m: m["config"].update(data=None)),
            r"^manifest\.json: config\.data is None, not a mapping"),
    Breaker("manifest-schedule-40", "manifest", manifest(lambda m: m["config"].update(
        students={"schedule": [{"d_model": 8}] * 40})),
        r"^manifest\.json: config\.students\.schedule is .*not a list of up to 32 mappings"),
    Breaker("manifest-dataset-number", "manifest", manifest(lambda m: m["config"].update(data={"dataset": 5})),
            r"^manifest\.json: config\.data\.dataset 5 is not a text"),
    Breaker("manifest-created-far", "manifest", manifest(lambda m: m.update(created=1e20)),
            r"^manifest\.json: created 1e\+20 is outside 0\.\.4,102,444,800"),
    Breaker("manifest-huge-integer", "manifest",
            write("manifest.json", '{"config": {}, "created": ' + "9" * 5000 + "}"), r"^manifest\.json: corrupt JSON"),
    # -- metrics.jsonl: a bad line is skipped, the run stays sound
    Breaker("metrics-half-line", "metrics", write("metrics.jsonl", GOOD_LINE % 1 + '{"event": "ep'), None),
    Breaker("metrics-binary", "metrics", metrics(bytes(range(256)).replace(b"\n", b"")), None),
    Breaker("metrics-list-line", "metrics", metrics("[1, 2, 3]"), None),
    Breaker("metrics-number-line", "metrics", metrics("42"), None),
    Breaker("metrics-string-line", "metrics", metrics('"epoch"'), None),
    Breaker("metrics-no-event", "metrics", metrics('{"stage": "teacher", "epoch": 3}'), None),
    Breaker("metrics-wrong-field", "metrics", metrics('{"event": "student_done", "k": "two"}'), None),
    Breaker("metrics-nan-accuracy", "metrics", metrics('{"event": "epoch", "val_acc": NaN}'), None),
    Breaker("metrics-deep-line", "metrics", metrics(DEEP), None),
    Breaker("metrics-megabyte-line", "metrics", metrics('{"event": "epoch", "pad": "' + "x" * 2**20 + '"}'), None),
    Breaker("metrics-fifo", "metrics", fifo("metrics.jsonl"), None),
    # -- prefix.csv
    Breaker("prefix-truncated", "prefix", write("prefix.csv", "k,arch,params\n1,mam"),
            r"^prefix\.csv: no student_flops column"),
    Breaker("prefix-text-cell", "prefix",
            prefix(ROW.format(k=1, cum=188122, acc=0.96), ROW.format(k=2, cum="abc", acc=0.97)),
            r"^prefix\.csv row 2: cumulative_flops 'abc' is not a number"),
    Breaker("prefix-nan-cell", "prefix", prefix(ROW.format(k=1, cum=188122, acc="nan")),
            r"^prefix\.csv row 1: prefix_acc nan is not a finite number"),
    Breaker("prefix-inf-cell", "prefix", prefix(ROW.format(k=1, cum="inf", acc=0.96)),
            r"^prefix\.csv row 1: cumulative_flops inf is not a finite number"),
    Breaker("prefix-fractional-k", "prefix", prefix(ROW.format(k=1.5, cum=188122, acc=0.96)),
            r"^prefix\.csv row 1: k '1\.5' is not a whole number"),
    Breaker("prefix-k-gap", "prefix", prefix(ROW.format(k=1, cum=1, acc=0.9), ROW.format(k=3, cum=2, acc=0.9)),
            r"^prefix\.csv row 2: k is 3, expected 2"),
    Breaker("prefix-accuracy-7", "prefix", prefix(ROW.format(k=1, cum=188122, acc=7)),
            r"^prefix\.csv row 1: prefix_acc 7 is outside 0\.\.1"),
    Breaker("prefix-33-rows", "prefix", prefix(*(ROW.format(k=k, cum=k, acc=0.9) for k in range(1, 34))),
            r"^prefix\.csv: more than 32 rows"),
    Breaker("prefix-over-the-cap", "prefix", write("prefix.csv", HEADER + "\n" + "#" * MAX_PREFIX_BYTES),
            r"^prefix\.csv: file is over 256,000 bytes"),
    Breaker("prefix-nul", "prefix", prefix(ROW.format(k="1\x00", cum=1, acc=0.9)),
            r"^prefix\.csv row 1: k '1\\x00' is not a whole number"),
    Breaker("prefix-huge-field", "prefix", write("prefix.csv", HEADER + "\n1," + "a" * 140_000 + "\n"),
            r"^prefix\.csv: corrupt CSV \(field larger than field limit"),
    Breaker("prefix-fifo", "prefix", fifo("prefix.csv"), r"^prefix\.csv: not a regular file"),
    # -- summary.json
    Breaker("summary-list", "summary", write("summary.json", "[]"), r"^summary\.json: expected a mapping"),
    Breaker("summary-garbage", "summary", write("summary.json", '{"teacher": 7'), r"^summary\.json: corrupt JSON"),
    Breaker("summary-deep", "summary", write("summary.json", DEEP), r"^summary\.json: JSON nested too deeply"),
    Breaker("summary-teacher-text", "summary", write("summary.json", '{"teacher": "x"}'),
            r"^summary\.json: teacher is 'x', not a mapping"),
    Breaker("summary-teacher-null", "summary", write("summary.json", '{"teacher": null}'),
            r"^summary\.json: teacher is None, not a mapping"),
    Breaker("summary-teacher-acc-text", "summary", write("summary.json", '{"teacher": {"test_acc": "high"}}'),
            r"^summary\.json: teacher\.test_acc 'high' is not a finite number"),
    Breaker("summary-teacher-flops-null", "summary", write("summary.json", '{"teacher": {"flops": null}}'),
            r"^summary\.json: teacher\.flops is null"),
    Breaker("summary-prefixes-mapping", "summary", write("summary.json", '{"prefixes": {"k": 1}}'),
            r"^summary\.json: prefixes is \{'k': 1\}, not a list"),
    Breaker("summary-prefixes-number", "summary", write("summary.json", '{"prefixes": [1]}'),
            r"^summary\.json: prefixes\[0\] is 1, not a mapping"),
    Breaker("summary-anytime-text", "summary",
            write("summary.json", '{"anytime": [{"confidence": 0.5, "acc": "hi", "mean_flops": 3}]}'),
            r"^summary\.json: anytime\[0\]\.acc 'hi' is not a finite number"),
    Breaker("summary-anytime-missing", "summary", write("summary.json", '{"anytime": [{"confidence": 0.5}]}'),
            r"^summary\.json: anytime\[0\]\.acc is missing"),
    Breaker("summary-k-planned-float", "summary", write("summary.json", '{"k_planned": 2.5}'),
            r"^summary\.json: k_planned 2\.5 is not a whole number"),
    Breaker("summary-teacher-test-verdict", "summary", write("summary.json", json.dumps({"teacher_tests": [
        {"k": 1, "n": 10, "prefix_only": 1, "teacher_only": 0, "diff": 0.1, "p_value": 1.0, "verdict": "won"}]})),
            r"^summary\.json: teacher_tests\[0\]\.verdict 'won' is not one of ahead, behind, within noise"),
    Breaker("summary-teacher-test-p", "summary", write("summary.json", json.dumps({"teacher_tests": [
        {"k": 1, "n": 10, "prefix_only": 1, "teacher_only": 0, "diff": 0.1, "p_value": 7, "verdict": "ahead"}]})),
            r"^summary\.json: teacher_tests\[0\]\.p_value 7 is outside 0\.\.1"),
    # -- weights: files beyond the run's K are never loaded
    Breaker("students-beyond-k", "students", students_beyond_k, None),
]
ODD_NAMES = ["odd\nnewline", "odd\ttab", "odd\x1b[31mansi", "odd-" + "long" * 50]  # sound runs, hostile names


def untrained_run(path: Path) -> Run:
    """A run directory shaped like a finished configs/tiny.yaml run, with untrained weights (quick to make; enough
    for predict and eval to answer)."""
    from pkd import data as pkd_data
    from pkd.config import load_config
    from pkd.models import build_model
    from pkd.train.specs import student_specs
    from pkd.train.teacher import teacher_spec

    cfg = load_config(TINY)
    run = Run.create_at(path, cfg.to_dict())
    t_spec = teacher_spec(cfg)
    run.save_teacher(build_model(t_spec).state_dict(), t_spec)
    for k, s_spec in enumerate(student_specs(cfg, pkd_data.get_dataset_spec(cfg.data.dataset)), start=1):
        run.save_student(k, build_model(s_spec).state_dict(), s_spec)
    run.write_status(state="done")
    return run


def make_runs(folder: Path, template: Path | None = None, breakers: list[Breaker] = BREAKERS,
              odd_names: list[str] = ODD_NAMES) -> dict[str, Run]:
    """One damaged run per breaker (a copy of `template`, else a bare run) and one sound run per odd name, all
    inside `folder`; returns them by name."""
    runs = {}
    for name in [b.name for b in breakers] + odd_names:
        if template is not None:
            run = Run(shutil.copytree(template, folder / name))
        else:
            run = Run.create_at(folder / name, {"name": "hostile", "data": {"dataset": "mnist"}})
            run.write_status(state="done")
        runs[name] = run
    for breaker in breakers:
        breaker.damage(runs[breaker.name])
    return runs
