"""Bad and hostile input: one table of named cases (configs, checkpoints, data files, run names and paths, images).

Every case feeds one bad input to the CLI (in-process `pkd.cli.main`) or to the library call the app uses, and
expects a clear one-line answer: an exit status (2 = refused) and a message naming what is wrong. After every case:
no code from a hostile file ran (its sentinel file does not exist), nothing outside the runs folder changed, and
no traceback was shown. Counts are in tests/cases.py.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import os
import pickle
import re
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml
from PIL import Image

from pkd import cli, launch
from pkd.models import build_model
from pkd.runs import Run, RunError, delete_run, list_runs
from tests.hostile_runs import BREAKERS, untrained_run
from tests.hostile_runs import manifest as manifest_change

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"
BREAKER = {b.name: b for b in BREAKERS}


class Ctx:
    """Per-test scratch space: a trained-looking run, a runs folder, an outside folder and a sentinel path."""

    def __init__(self, tmp: Path, template: Path) -> None:
        self.tmp = tmp
        self.runs = tmp / "runs"
        self.runs.mkdir()
        self.outside = tmp / "outside"
        self.outside.mkdir()
        (self.outside / "precious.txt").write_text("keep me")
        self.sentinel = tmp / "PWNED"
        self.template = template
        self.run = self.copy_run("run")

    def copy_run(self, name: str) -> Run:
        return Run(shutil.copytree(self.template, self.runs / name))

    def file(self, name: str, content: bytes | str) -> Path:
        path = self.tmp / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def config(self, change: Callable[[dict], None], name: str = "bad.yaml") -> Path:
        data = yaml.safe_load(TINY.read_text())
        change(data)
        return self.file(name, yaml.safe_dump(data))

    def evil(self) -> "Evil":
        return Evil(f"touch {self.sentinel}")

    def image(self, array: np.ndarray, name: str = "img.png") -> Path:
        path = self.tmp / name
        Image.fromarray(array).save(path)
        return path


class Evil:
    """Unpickling this runs a shell command: what a hostile checkpoint or data file would do."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def cli_run(*argv: str) -> tuple[int, str]:
    """`python -m pkd ARGV` in-process: (exit status, stdout + stderr); restores logging and signal handlers."""
    root = logging.getLogger()
    handlers, level, sigterm = list(root.handlers), root.level, signal.getsignal(signal.SIGTERM)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cli.main(list(argv))
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            if handler not in handlers:
                handler.close()
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        signal.signal(signal.SIGTERM, sigterm)
    return rc, out.getvalue() + err.getvalue()


def api(fn: Callable[[], object]) -> tuple[int, str]:
    """A library call the app makes: (2, message) when it refuses with a documented error, else (0, repr)."""
    try:
        return 0, repr(fn())
    except (RunError, ValueError, FileNotFoundError) as exc:
        return 2, f"{type(exc).__name__}: {exc}"


def train(ctx: Ctx, config: Path, *extra: str) -> tuple[int, str]:
    rc, text = cli_run("train", "--config", str(config), "--run-dir", str(ctx.tmp / "new"), "--no-progress",
                       "--no-kernel-build", *extra)
    return rc, text


def train_untouched(ctx: Ctx, config: Path) -> tuple[int, str]:
    """A bad config must stop before anything is created."""
    rc, text = train(ctx, config)
    assert not (ctx.tmp / "new").exists(), "a run folder was created for a bad config"
    return rc, text


def predict(ctx: Ctx, image: Path, *extra: str, run: Run | None = None) -> tuple[int, str]:
    return cli_run("predict", str((run or ctx.run).path), str(image), *extra)


def digit_png(ctx: Ctx) -> Path:
    img = np.zeros((140, 140), np.uint8)
    img[20:120, 60:80] = 255  # a "1"
    return ctx.image(img, "one.png")


def with_teacher_ckpt(ctx: Ctx, path: Path) -> Path:
    def change(d):
        d["teacher"]["checkpoint"] = str(path)
        d["teacher"]["optim"]["epochs"] = 0
    return ctx.config(change)


def replace_student(ctx: Ctx, obj: object) -> Run:
    run = ctx.copy_run("replaced")
    if isinstance(obj, bytes):
        run.student_path(1).write_bytes(obj)
    else:
        torch.save(obj, run.student_path(1))
    return run


def saved(path: Path, obj: object) -> Path:
    torch.save(obj, path)
    return path


def student_file(ctx: Ctx, **param_changes) -> dict:
    saved = ctx.run.load_student(1)
    spec = {**saved["spec"], "params": {**saved["spec"]["params"], **param_changes}}
    return {"state_dict": saved["state_dict"], "spec": spec}


# ----------------------------------------------------------------------------------------------- the cases

def c_symlink_delete(ctx: Ctx) -> tuple[int, str]:
    run = ctx.copy_run("victim")
    os.symlink(ctx.outside, run.path / "students" / "escape")
    run.write_status(state="done")
    rc, text = api(lambda: delete_run(ctx.runs, run.name))
    assert not run.path.exists()  # the run went, what its symlink pointed at stayed (checked after every case)
    return rc, text


def c_symlink_listing(ctx: Ctx) -> tuple[int, str]:
    elsewhere = Run(shutil.copytree(ctx.template, ctx.outside / "foreign"))
    os.symlink(elsewhere.path, ctx.runs / "link")
    rc, text = cli_run("runs", str(ctx.runs))
    assert "foreign" not in text and "link" not in text  # the symlinked run is not listed, the real one is
    return rc, text


def c_launch(ctx: Ctx, **kwargs) -> tuple[int, str]:
    rc, text = api(lambda: launch.start_run(TINY, runs_dir=ctx.runs, wait_s=0, **kwargs))
    assert sorted(p.name for p in ctx.runs.iterdir()) == ["run"], "start_run created something"
    return rc, text


def c_cifar_evil(ctx: Ctx) -> tuple[int, str]:
    folder = ctx.tmp / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"):
        (folder / name).write_bytes(pickle.dumps(ctx.evil()))

    def change(d):
        d["data"] = {"dataset": "cifar10", "root": str(ctx.tmp / "data")}
        d["teacher"] = {"arch": "resnet_cifar", "optim": {"epochs": 1}}
        d["students"]["common"]["patch"] = 4
    return train(ctx, ctx.config(change))


def c_mnist_evil(ctx: Ctx) -> tuple[int, str]:
    (ctx.tmp / "data").mkdir()
    (ctx.tmp / "data" / "mnist.pkl.gz").write_bytes(gzip.compress(pickle.dumps(ctx.evil())))
    return train(ctx, ctx.config(lambda d: d["data"].update(root=str(ctx.tmp / "data"))))


def c_evil_checkpoint(ctx: Ctx) -> tuple[int, str]:
    run = ctx.copy_run("resume")
    torch.save({"stage": "student", "k": 1, "x": ctx.evil()}, run.path / "checkpoint.pt")
    return api(run.load_checkpoint)


def c_evil_teacher_eval(ctx: Ctx) -> tuple[int, str]:
    run = ctx.copy_run("evilteacher")
    torch.save({"state_dict": {}, "spec": ctx.evil()}, run.path / "teacher.pt")
    return cli_run("eval", str(run.path))


def big_png(ctx: Ctx) -> Path:
    path = ctx.tmp / "huge.png"
    Image.new("L", (5000, 5000)).save(path)
    return path


def truncated_png(ctx: Ctx) -> Path:
    data = digit_png(ctx).read_bytes()
    return ctx.file("trunc.png", data[: len(data) // 2])


def dot_png(ctx: Ctx) -> Path:
    img = np.zeros((280, 280), np.uint8)
    img[200:212, 30:42] = 255  # one click of a round brush
    return ctx.image(img, "dot.png")


def broken(ctx: Ctx, breaker: str) -> Run:
    """A copy of the trained-looking run damaged by one breaker of tests/hostile_runs.py."""
    run = ctx.copy_run(breaker)
    BREAKER[breaker].damage(run)
    return run


def list_beside_good(ctx: Ctx, breaker: str) -> tuple[int, str]:
    """`pkd runs` on the runs folder: the good run and one damaged by `breaker`."""
    broken(ctx, breaker)
    rc, text = cli_run("runs", str(ctx.runs))
    assert re.search(r"^done .*/runs/run$", text, re.MULTILINE), text  # the good run is listed, as sound
    return rc, text


def c_odd_name(ctx: Ctx) -> tuple[int, str]:
    shutil.copytree(ctx.template, ctx.runs / "odd\nname\x1b[2J")
    rc, text = cli_run("runs", str(ctx.runs))
    assert len(text.splitlines()) == 3, text  # header, two runs: the name did not break the table
    return rc, text


def c_no_data_section(ctx: Ctx) -> tuple[int, str]:
    run = ctx.copy_run("nodata")
    manifest_change(lambda m: m["config"].pop("data"))(run)
    return predict(ctx, digit_png(ctx), run=run)


def c_delete_broken(ctx: Ctx) -> tuple[int, str]:
    run = broken(ctx, "manifest-deep")
    rc, text = api(lambda: delete_run(ctx.runs, run.name))
    assert not run.path.exists()
    return rc, text


def c_eval_repairs_summary(breaker: str):
    """`pkd eval` recomputes every figure from the saved weights: a damaged summary.json is rewritten sound."""
    def case(ctx: Ctx) -> tuple[int, str]:
        run = broken(ctx, breaker)
        rc, text = cli_run("eval", str(run.path))
        summary = run.summary()  # raises on a damaged file
        assert run.info()["problem"] == "" and summary["teacher"]["arch"] and summary["anytime"]
        return rc, text
    return case


def c_eval_repairs_prefix(ctx: Ctx) -> tuple[int, str]:
    run = broken(ctx, "prefix-text-cell")
    rc, text = cli_run("eval", str(run.path))
    assert run.info()["problem"] == "" and len(run.prefix_table()) == 2  # eval rewrote prefix.csv
    return rc, text


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # config | checkpoint | data | path | image | cli | run (a damaged file inside a run directory)
    run: Callable[[Ctx], tuple[int, str]]
    rc: int  # expected exit status: 2 refused with a message; 0 handled (e.g. a corrupt checkpoint is ignored)
    expect: str  # regex the answer must contain


CASES = [
    # -- configs: rejected before any run folder exists, by field name
    Case("config unknown key", "config",
         lambda c: train_untouched(c, c.config(lambda d: d.update(distil={"alpha": 0.5}))), 2,
         r"unknown config key 'distil'"),
    Case("config wrong type", "config",
         lambda c: train_untouched(c, c.config(lambda d: d["students"]["optim"].update(epochs="three"))), 2,
         r"students\.optim\.epochs: expected an integer"),
    Case("config negative batch size", "config",
         lambda c: train_untouched(c, c.config(lambda d: d["teacher"]["optim"].update(batch_size=-8))), 2,
         r"teacher\.optim\.batch_size: -8 must be positive"),
    Case("config zero model width", "config",
         lambda c: train_untouched(c, c.config(lambda d: d["students"].update(schedule=[{"d_model": 0}]))), 2,
         r"students\.schedule\[0\]: .*d_model"),
    Case("config K = 0 students", "config",
         lambda c: train_untouched(c, c.config(lambda d: d["students"].update(schedule=[]))), 2,
         r"students\.schedule: has 0 students"),
    Case("config alpha outside [0, 1]", "config",
         lambda c: train_untouched(c, c.config(lambda d: d["distill"].update(alpha=-0.5))), 2,
         r"distill\.alpha: -0\.5 must lie in \[0, 1\]"),
    Case("config temperature <= 0", "config",
         lambda c: train_untouched(c, c.config(lambda d: d["distill"].update(temperature=0))), 2,
         r"distill\.temperature: 0(\.0)? must be > 0"),
    Case("config student deeper than allowed", "config",
         lambda c: train_untouched(c, c.config(lambda d: d["students"]["common"].update(n_layers=100_000))), 2,
         r"n_layers: 100000 exceeds the maximum"),
    Case("config teacher larger than allowed", "config",
         lambda c: train_untouched(c, c.config(lambda d: d["teacher"].update(params={"width": 5000}))), 2,
         r"teacher: [\d,]+ parameters exceed the maximum"),
    Case("config missing dataset root", "config",
         lambda c: train_untouched(c, c.config(lambda d: d["data"].update(root=str(c.tmp / "nope")))), 2,
         r"data\.root: directory .* does not exist"),
    Case("config YAML that is a list", "config",
         lambda c: train_untouched(c, c.file("list.yaml", "- 1\n- 2\n")), 2, r"must hold a mapping"),
    Case("config 50 MB file", "config",
         lambda c: train_untouched(c, c.file("huge.yaml", b"#" * (50 * 1024 * 1024))), 2,
         r"is 52428800 bytes; a config must be under"),
    Case("config YAML python tag runs code", "config",
         lambda c: train_untouched(c, c.file("tag.yaml", f"name: !!python/object/apply:os.system ['touch {c.sentinel}']\n")),
         2, r"is not valid YAML"),
    Case("config binary garbage", "config",
         lambda c: train_untouched(c, c.file("bin.yaml", bytes(range(256)) * 4)), 2, r"is not valid YAML"),
    Case("config name with control characters", "config",
         lambda c: train_untouched(c, c.config(lambda d: d.update(name="tiny\x1b[2J\n"))), 2, r"name: .* must be"),
    Case("config name is an absolute path", "config",
         lambda c: train_untouched(c, c.config(lambda d: d.update(name=str(c.outside)))), 2, r"name: .* must be"),
    # -- checkpoints given through the config: refused before anything is created
    Case("teacher.checkpoint pickle that runs code", "checkpoint",
         lambda c: train_untouched(c, with_teacher_ckpt(c, c.file("evil.pt", pickle.dumps({"x": c.evil()})))), 2,
         r"evil\.pt: not a pkd weights file"),
    Case("teacher.checkpoint torch.save of code", "checkpoint",
         lambda c: train_untouched(c, with_teacher_ckpt(c, saved(c.tmp / "evil2.pt", {"state_dict": c.evil()}))),
         2, r"evil2\.pt: not a pkd weights file"),
    Case("teacher.checkpoint of the wrong architecture", "checkpoint",
         lambda c: train_untouched(c, with_teacher_ckpt(c, c.run.student_path(1))), 2,
         r"does not fit the teacher architecture"),
    Case("teacher.checkpoint with wrong shapes", "checkpoint",
         lambda c: train_untouched(c, with_teacher_ckpt(c, saved(c.tmp / "narrow.pt", {"state_dict": build_model(
             {"kind": "teacher", "arch": "mnist_cnn", "params": {"width": 16}}).state_dict()}))), 2,
         r"does not fit the teacher architecture .*size"),
    Case("teacher.checkpoint that is an image", "checkpoint",
         lambda c: train_untouched(c, with_teacher_ckpt(c, digit_png(c))), 2, r"one\.png: not a pkd weights file"),
    Case("teacher.checkpoint of zero bytes", "checkpoint",
         lambda c: train_untouched(c, with_teacher_ckpt(c, c.file("empty.pt", b""))), 2,
         r"empty\.pt: not a pkd weights file"),
    Case("teacher.checkpoint whole pickled module", "checkpoint",
         lambda c: train_untouched(c, with_teacher_ckpt(c, saved(c.tmp / "module.pt", nn.Linear(2, 2)))), 2,
         r"module\.pt: not a pkd weights file"),
    # -- weights inside a run (predict / eval / resume)
    Case("predict: student weights replaced by code", "checkpoint",
         lambda c: predict(c, digit_png(c), run=replace_student(c, pickle.dumps({"x": c.evil()}))), 2,
         r"student_01\.pt: not a pkd weights file"),
    Case("predict: student weights with wrong shapes", "checkpoint",
         lambda c: predict(c, digit_png(c), run=replace_student(c, {
             "state_dict": c.run.load_student(2)["state_dict"], "spec": c.run.load_student(1)["spec"]})), 2,
         r"student_01\.pt: weights do not fit the saved spec"),
    Case("predict: teacher file in a student's place", "checkpoint",
         lambda c: predict(c, digit_png(c), run=replace_student(c, c.run.load_teacher())), 2,
         r"student_01\.pt: holds a 'mnist_cnn' model that the run's config does not describe"),
    Case("predict: student spec asking for a huge model", "checkpoint",
         lambda c: predict(c, digit_png(c), run=replace_student(c, student_file(c, d_model=200_000))), 2,
         r"student_01\.pt: holds a 'mamba' model that the run's config does not describe"),
    Case("predict: student spec for another image shape", "checkpoint",
         lambda c: predict(c, digit_png(c), run=replace_student(c, student_file(c, image_shape=[3, 32, 32]))), 2,
         r"does not describe"),
    Case("predict: weights file without a spec", "checkpoint",
         lambda c: predict(c, digit_png(c), run=replace_student(c, {"weights": torch.ones(3)})), 2,
         r"student_01\.pt: not a pkd model file"),
    Case("predict: student prev_scale that is not a number", "checkpoint",
         lambda c: predict(c, digit_png(c), run=replace_student(c, {**c.run.load_student(1), "prev_scale": "1e3"})),
         2, r"student_01\.pt: prev_scale '1e3' is not a finite number"),
    Case("predict: student prev_scale of inf", "checkpoint",
         lambda c: predict(c, digit_png(c), run=replace_student(c, {**c.run.load_student(1),
                                                                     "prev_scale": float("inf")})),
         2, r"student_01\.pt: prev_scale inf is not a finite number"),
    Case("eval: teacher.pt replaced by code", "checkpoint", c_evil_teacher_eval, 2,
         r"teacher\.pt: not a pkd weights file"),
    Case("resume: checkpoint.pt replaced by code", "checkpoint", c_evil_checkpoint, 0, r"^None$"),
    # -- data files
    Case("data: mnist.pkl.gz that runs code", "data", c_mnist_evil, 2,
         r"mnist\.pkl\.gz: refusing to load global '(posix|os)\.system'"),
    Case("data: CIFAR-10 batches that run code", "data", c_cifar_evil, 2,
         r"batches\.meta: refusing to load global '(posix|os)\.system'"),
    # -- run names and paths (web page and CLI)
    Case("run name with ..", "path", lambda c: c_launch(c, name="../escape"), 2, r"run name .* is not allowed"),
    Case("run name that is an absolute path", "path", lambda c: c_launch(c, name=str(c.outside)), 2,
         r"run name .* is not allowed"),
    Case("run name with control characters", "path", lambda c: c_launch(c, name="run\x1b]0;owned\x07"), 2,
         r"run name .* is not allowed"),
    Case("override that smuggles an option", "path", lambda c: c_launch(c, overrides=["--config=/etc/passwd"]), 2,
         r"expected key=value"),
    Case("delete a run holding a symlink out", "path", c_symlink_delete, 0, r"^None$"),
    Case("delete through a symlink out of the runs dir", "path",
         lambda c: (os.symlink(c.run.path, c.outside / "back"), os.symlink(c.outside, c.runs / "out"),
                    api(lambda: delete_run(c.runs, "out")))[-1], 2, r"does not lie inside"),
    Case("list runs with a symlink to a foreign run", "path", c_symlink_listing, 0, r"^done .*runs/run$"),
    Case("resume a path outside any run", "path", lambda c: cli_run("train", "--resume", "/"), 2,
         r"not a pkd run directory"),
    Case("predict a run named ../..", "path",
         lambda c: cli_run("predict", "../..", str(digit_png(c)), "--runs-dir", str(c.runs)), 2,
         r"not a pkd run directory|not found"),
    Case("resume a run name with a NUL byte", "path",
         lambda c: api(lambda: __import__("pkd.runs").runs.resolve_run("a\x00b", c.runs)), 2, r"is not allowed"),
    # -- damaged or hostile files inside a run (tests/hostile_runs.py): one-line errors, or skipped, never fatal
    Case("predict: manifest nested 100000 levels deep", "run", lambda c: predict(c, digit_png(c), run=broken(
        c, "manifest-deep")), 2, r"^error: .*/manifest-deep/manifest\.json: JSON nested too deeply"),
    Case("predict: manifest without its config", "run", lambda c: predict(c, digit_png(c), run=broken(
        c, "manifest-no-config")), 2, r"^error: .*manifest\.json: not a pkd manifest"),
    Case("predict: manifest config section that is a list", "run", lambda c: predict(c, digit_png(c), run=broken(
        c, "manifest-section-list")), 2, r"^error: .*manifest\.json: config\.students is \[1\], not a mapping"),
    Case("predict: manifest without the data section", "run", c_no_data_section, 2,
         r"^error: .*manifest\.json: the config has no data\.dataset$"),
    Case("predict: garbage student files beyond K", "run", lambda c: predict(c, digit_png(c), run=broken(
        c, "students-beyond-k")), 0, r"^prediction: .* using 2 of 2 students"),
    Case("eval: manifest created 1e20 seconds after 1970", "run", lambda c: cli_run("eval", str(broken(
        c, "manifest-created-far").path)), 2, r"^error: .*manifest\.json: created 1e\+20 is outside"),
    Case("eval: summary teacher that is a text", "run", c_eval_repairs_summary("summary-teacher-text"), 0,
         r"prefix acc"),
    Case("eval: summary anytime point with a text accuracy", "run", c_eval_repairs_summary("summary-anytime-text"),
         0, r"prefix acc"),
    Case("eval: prefix.csv with text in a number cell", "run", c_eval_repairs_prefix, 0, r"prefix acc"),
    Case("runs: status.json pid that is a list", "run", lambda c: list_beside_good(c, "status-pid-list"), 0,
         r"^broken .*/status-pid-list  problem: status\.json: pid \[1\] is not a whole number$"),
    Case("runs: summary.json nested 100000 levels deep", "run", lambda c: list_beside_good(c, "summary-deep"), 0,
         r"^broken .*/summary-deep  problem: summary\.json: JSON nested too deeply"),
    Case("runs: prefix.csv just over its size cap", "run", lambda c: list_beside_good(c, "prefix-over-the-cap"), 0,
         r"problem: prefix\.csv: file is over 256,000 bytes"),
    Case("runs: prefix.csv cell that is nan", "run", lambda c: list_beside_good(c, "prefix-nan-cell"), 0,
         r"problem: prefix\.csv row 1: prefix_acc nan is not a finite number$"),
    Case("runs: run named with a newline and an ANSI escape", "run", c_odd_name, 0,
         r"^done .*/runs/odd\\nname\\x1b\[2J$"),
    Case("delete a run whose manifest is nested 100000 deep", "run", c_delete_broken, 0, r"^None$"),
    # -- images for predict
    Case("image: blank canvas", "image", lambda c: predict(c, c.image(np.zeros((280, 280), np.uint8))), 2,
         r"blank\): nothing to classify"),
    Case("image: full-white canvas", "image",
         lambda c: predict(c, c.image(np.full((280, 280), 255, np.uint8))), 2, r"blank\): nothing to classify"),
    Case("image: a single dot", "image", lambda c: predict(c, dot_png(c)), 2, r"too little ink .*a dot"),
    Case("image: huge", "image", lambda c: predict(c, big_png(c)), 2, r"sides over 4096 px are refused"),
    Case("image: a text file", "image", lambda c: predict(c, c.file("note.png", "hello")), 2,
         r"note\.png: not an image"),
    Case("image: truncated PNG", "image", lambda c: predict(c, truncated_png(c)), 2, r"trunc\.png: (cannot decode|not an image)"),
    Case("image: zero bytes", "image", lambda c: predict(c, c.file("zero.png", b"")), 2, r"zero\.png: not an image"),
    Case("image: a directory", "image", lambda c: predict(c, c.outside), 2, r"image file not found"),
    Case("predict --k 0", "cli", lambda c: predict(c, digit_png(c), "--k", "0"), 2, r"error: .*k"),
    Case("predict --confidence 7", "cli", lambda c: predict(c, digit_png(c), "--confidence", "7"), 2,
         r"error: .*confidence"),
    Case("predict --flop-budget -1", "cli", lambda c: predict(c, digit_png(c), "--flop-budget", "-1"), 2,
         r"error: .*budget"),
]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A run directory shaped like a finished tiny run (untrained weights: enough for every refusal)."""
    return untrained_run(tmp_path_factory.mktemp("template") / "tiny").path


def test_case_table_is_large_and_distinct():
    assert len(CASES) >= 25 and len({c.name for c in CASES}) == len(CASES)
    assert {c.kind for c in CASES} >= {"config", "checkpoint", "data", "path", "image"}


@pytest.mark.parametrize("case", CASES, ids=[re.sub(r"\W+", "-", c.name).strip("-") for c in CASES])
def test_hostile_input(case, tmp_path, template):
    ctx = Ctx(tmp_path, template)
    rc, text = case.run(ctx)
    assert "Traceback" not in text, text
    assert rc == case.rc, f"exit {rc}, expected {case.rc}:\n{text}"
    match = re.search(case.expect, text, re.MULTILINE)
    assert match, f"{case.expect!r} not in:\n{text}"
    line = text[text.rfind("\n", 0, match.start()) + 1:].split("\n")[0]
    assert len(line) < 600, line  # one short line, not a dump
    assert not ctx.sentinel.exists(), "a hostile file ran code"
    assert (ctx.outside / "precious.txt").read_text() == "keep me"


def test_predict_still_answers_a_real_digit(tmp_path, template):
    """The refusals above are not a predict that refuses everything."""
    ctx = Ctx(tmp_path, template)
    rc, text = predict(ctx, digit_png(ctx), "--k", "2")
    assert rc == 0 and "prediction:" in text and "of 2 students" in text
