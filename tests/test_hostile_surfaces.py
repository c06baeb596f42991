"""Hostile input on the surfaces that landed last (issue 31): the sweep folder (journal, trial records, trial and lock
folders, logs, stop file), `pkd pareto --csv`, `pkd export --out`, the app's Resume, clip files and model specs.

Every case feeds one hostile file or path to the CLI (in-process `pkd.cli.main`) or to the library call the app makes,
and expects a one-line answer (exit 2 = refused, 0 = handled) naming what is wrong; afterwards nothing outside the
folder changed (tests/test_hostile.py's Ctx: an `outside` folder with a precious file and a sentinel) and no file of
the sweep or the run was replaced. FIFOs stand in for "a file whose read never ends": a case that blocked would hang
(the case runs under a SIGALRM deadline, so it fails instead). Counted in tests/cases.py.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import struct
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from pkd import launch
from pkd.data import get_dataset_spec
from pkd.preprocess import read_clip
from pkd.runs import Run, RunError
from pkd.sweep import Sweep, log_tail, trial_table
from pkd.sweep.folder import stop_generation
from pkd.sweep.space import SweepError
from tests.hostile_runs import untrained_run
from tests.sweep.sweeping import FAST, SHIPPED_TEACHER, SPACE, write_space
from tests.test_hostile import TINY, Case, Ctx, cli_run, digit_png

DEADLINE_S = 60  # a case that blocks on a FIFO fails here instead of hanging the suite


class Place(Ctx):
    """Ctx plus a copy of a created (untrained) sweep folder, and a snapshot of what must not change."""

    def __init__(self, tmp: Path, template: Path, sweep_template: Path) -> None:
        super().__init__(tmp, template)
        self.sweep = Sweep(Path(shutil.copytree(sweep_template, tmp / "sweep", symlinks=True)))

    def snapshot(self) -> dict:
        """Every entry of the outside folder, the run and the sweep (the journal and the lock files, which a worker
        appends to or creates, aside): a file's bytes, a link's target, or its kind."""
        entries = {}
        for root in (self.outside, self.run.path, self.sweep.path):
            for path in [root, *sorted(root.rglob("*"))]:
                if path.name.startswith("journal.log") or ".locks" in path.parts or path.name == ".writer.lock":
                    continue
                entries[str(path)] = ("-> " + os.readlink(path) if path.is_symlink() else path.read_bytes()
                                      if path.is_file() else "folder" if path.is_dir() else "other")
        return entries


CURRENT: list[Place] = []  # the case being run (its setup done when it calls pkd: then `before` is taken)


def mark() -> None:
    """The case's setup is done: what it looks like now must be what it looks like after pkd answered."""
    CURRENT[-1].before = CURRENT[-1].snapshot()


def cli(*argv: str) -> tuple[int, str]:
    mark()
    return cli_run(*argv)


def call(fn: Callable[[], object]) -> tuple[int, str]:
    """A library call the app or a worker makes: (2, message) when it refuses, else (0, its repr)."""
    mark()
    try:
        return 0, repr(fn())
    except (RunError, ValueError, FileNotFoundError, OSError) as exc:
        return 2, f"{type(exc).__name__}: {exc}"


# ------------------------------------------------------------------------------------------------ sweep helpers

def sweep_cli(c: Place) -> tuple[int, str]:
    """Continue the sweep for one trial: every refusal below comes before any trial trains."""
    handler = signal.getsignal(signal.SIGINT)
    try:
        return cli("sweep", "--sweep-dir", str(c.sweep.path), "--trials", "1", "--no-kernel-build")
    finally:
        signal.signal(signal.SIGINT, handler)


def journal(c: Place) -> Path:
    return c.sweep.path / "journal.log"


def rewrite_journal(c: Place, change: Callable[[list[bytes]], list[bytes]]) -> Place:
    path = journal(c)
    path.write_bytes(b"".join(change(path.read_bytes().splitlines(keepends=True))))
    return c


def as_fifo(path: Path) -> Path:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    os.mkfifo(path)
    return path


def as_link(path: Path, target: Path) -> Path:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    os.symlink(target, path)
    return path


def stored_trial(c: Place, overrides: object) -> tuple[int, str]:
    """A running trial whose worker is gone, its stored overrides `overrides` (as a hostile journal holds them);
    a worker asks for its next job: (2, the trial's error) when the trial was failed instead of trained."""
    trial = c.sweep.study().ask()
    trial.set_user_attr("run", "trial-000")
    trial.set_user_attr("overrides", overrides)
    return adopted(c)


def adopted(c: Place) -> tuple[int, str]:
    from pkd.sweep.study import next_job

    mark()
    study = c.sweep.study()
    job = next_job(c.sweep, study, 2, c.sweep.space(), c.sweep.base_config())
    os.close(job.fd)
    first = study.get_trials(deepcopy=False)[0]
    if first.state.name == "FAIL":
        return 2, f"trial 0 failed: {first.user_attrs['error']}"
    return 0, f"adopted trial {job.number}: {job.overrides}"


def sound_trials_are_adopted(c: Place) -> tuple[int, str]:
    """Positive control: five trials asked the real way, their workers gone, are adopted with their overrides."""
    from pkd.sweep.study import next_job

    mark()
    study, space, base = c.sweep.study(), c.sweep.space(), c.sweep.base_config()
    asked = []
    for _ in range(5):
        job = next_job(c.sweep, study, 5, space, base)
        asked.append(job.overrides)
        os.close(job.fd)  # the worker is gone
    again = []
    for _ in range(5):
        job = next_job(c.sweep, study, 5, space, base)
        again.append(job.overrides)
        os.close(job.fd)
    return (0 if again == asked and all(t.state.name == "RUNNING" for t in study.get_trials()) else 1), \
        f"adopted {len(again)} sound trials"


def run_trial_0(c: Place) -> tuple[int, str]:
    from pkd.sweep.study import Job
    from pkd.sweep.worker import Stopper, TrialOptions, run_trial

    return call(lambda: run_trial(c.sweep, None, Job(0, 0, [], -1), TrialOptions(build_kernel=False), Stopper()))


def base_run_teacher(c: Place) -> tuple[int, str]:
    """A sweep whose teacher is trained by its base run, the base run's folder a link out."""
    from pkd.sweep.worker import Stopper, TrialOptions, ensure_teacher

    meta = json.loads((c.sweep.path / "sweep.json").read_text())
    meta["teacher"] = {"source": "base", "path": str(c.sweep.path / "base" / "teacher.pt"), "share": True}
    (c.sweep.path / "sweep.json").write_text(json.dumps(meta))
    as_link(c.sweep.path / "base", c.outside)
    return call(lambda: ensure_teacher(c.sweep, TrialOptions(build_kernel=False), Stopper()))


def unstarted_trial_with_link(c: Place, name: str) -> tuple[int, str]:
    folder = c.sweep.path / "trial-000"
    folder.mkdir()
    (folder / "config.yaml").write_text("x: 1\n")
    os.symlink(c.outside / "precious.txt" if name != "students" else c.outside, folder / name)
    return run_trial_0(c)


# ------------------------------------------------------------------------------------------------ run helpers

def stopped(c: Place) -> Run:
    c.run.write_status(state="stopped")
    return c.run


def resume(c: Place) -> tuple[int, str]:
    return call(lambda: launch.resume_run(c.run, build_kernel=False))


def export(c: Place, *extra: str) -> tuple[int, str]:
    return cli("export", str(c.run.path), "--k", "1", "--format", "pt2", *extra)


def pareto(c: Place, *extra: str) -> tuple[int, str]:
    return cli("pareto", str(c.run.path), *extra)


def second_run(c: Place) -> Run:
    return c.copy_run("other")


# ------------------------------------------------------------------------------------------------ clip helpers

CLIP_SPEC = get_dataset_spec("moving_mnist")
T, _, S, _ = CLIP_SPEC.sample_shape


def npy_header(c: Place, name: str, shape: tuple, descr: str = "<f4", data: bytes = b"",
               version: tuple = (1, 0)) -> Path:
    """A .npy file whose header claims `shape` / `descr`, followed by `data` (tiny, whatever the header says)."""
    path = c.tmp / name
    with open(path, "wb") as fh:
        header = {"descr": descr, "fortran_order": False, "shape": shape}
        (np.lib.format.write_array_header_1_0 if version == (1, 0) else np.lib.format.write_array_header_2_0)(
            fh, header)
        fh.write(data)
    return path


def clip(path: Path) -> tuple[int, str]:
    return call(lambda: read_clip(path, CLIP_SPEC))


def big_gif(c: Place) -> Path:
    """A 40-byte GIF whose screen and frame claim 65535 x 65535 pixels."""
    data = b"GIF89a" + struct.pack("<HHBBB", 65535, 65535, 0, 0, 0) + b"\x2c" + \
        struct.pack("<HHHHB", 0, 0, 65535, 65535, 0) + b"\x08\x02\x4c\x01\x00\x3b"
    return c.file("bomb.gif", data)


# ------------------------------------------------------------------------------------------------ spec helpers

def student_spec_change(c: Place, key: str, value: int, manifest_too: bool = True) -> tuple[int, str]:
    """Student 1's spec (and the manifest's config, so they agree) asks for `key` = `value`; its weights stay."""
    saved = c.run.load_student(1)
    saved["spec"]["params"][key] = value
    torch.save(saved, c.run.student_path(1))
    if manifest_too:
        data = json.loads((c.run.path / "manifest.json").read_text())
        data["config"]["students"]["schedule"][0][key] = value
        (c.run.path / "manifest.json").write_text(json.dumps(data))
    image = digit_png(c)
    return cli("predict", str(c.run.path), str(image))


def student_weights_cut(c: Place) -> tuple[int, str]:
    saved = c.run.load_student(2)
    saved["state_dict"] = dict(list(saved["state_dict"].items())[:1])
    torch.save(saved, c.run.student_path(2))
    image = digit_png(c)
    return cli("predict", str(c.run.path), str(image))


def teacher_spec_huge(c: Place) -> tuple[int, str]:
    saved = c.run.load_teacher()
    saved["spec"]["params"] = {**saved["spec"].get("params", {}), "width": 100_000}
    saved["state_dict"] = dict(list(saved["state_dict"].items())[:1])
    torch.save(saved, c.run.teacher_path())
    data = json.loads((c.run.path / "manifest.json").read_text())
    data["config"]["teacher"]["params"] = {**(data["config"]["teacher"].get("params") or {}), "width": 100_000}
    (c.run.path / "manifest.json").write_text(json.dumps(data))
    from pkd.artifacts import load_teacher

    return call(lambda: load_teacher(c.run))


ONE_LINE = r"[^\n]*"
NEW_SWEEP = r"start a new sweep"
CASES = [
    # -- the sweep's journal: one line naming journal.log and what to do, before anything trains
    Case("sweep: empty journal", "sweep", lambda c: (journal(c).write_bytes(b""), sweep_cli(c))[-1], 2,
         r"journal\.log: the sweep's journal is empty .*" + NEW_SWEEP),
    Case("sweep: one foreign line in the journal", "sweep",
         lambda c: sweep_cli(rewrite_journal(c, lambda lines: [*lines, b"hello from elsewhere\n"])), 2,
         r"journal\.log line \d+: not an Optuna journal record"),
    Case("sweep page: one foreign line in the journal", "sweep",
         lambda c: call(lambda: trial_table(rewrite_journal(c, lambda lines: [*lines, b"{}\n"]).sweep)), 2,
         r"SweepError: .*journal\.log line \d+: not an Optuna journal record"),
    Case("sweep: journal record with an unknown op code", "sweep",
         lambda c: sweep_cli(rewrite_journal(c, lambda lines: [*lines, b'{"op_code": 99, "worker_id": "x"}\n'])),
         2, r"line \d+: not an Optuna journal record"),
    Case("sweep: journal that starts with a trial, not the study", "sweep",
         lambda c: sweep_cli(rewrite_journal(c, lambda lines: [b'{"op_code": 4, "worker_id": "x", "study_id": 0}\n',
                                                               *lines])), 2,
         r"line 1: the journal does not start by creating the study"),
    Case("sweep: journal of another study name", "sweep",
         lambda c: sweep_cli(rewrite_journal(c, lambda lines: [lines[0].replace(b'"pkd"', b'"other"'), *lines[1:]])),
         2, r"Optuna cannot replay the sweep's journal .*" + NEW_SWEEP),
    Case("sweep: journal record Optuna cannot replay", "sweep",
         lambda c: sweep_cli(rewrite_journal(c, lambda lines: [*lines, json.dumps(
             {"op_code": 4, "worker_id": "x", "study_id": 0, "datetime_start": "yesterday"}).encode() + b"\n"])), 2,
         r"Optuna cannot replay the sweep's journal"),
    Case("sweep: journal line of 2 MB", "sweep",
         lambda c: sweep_cli(rewrite_journal(c, lambda lines: [*lines, b"{" + b" " * (2 << 20) + b"}\n"])), 2,
         r"line \d+: over 1,048,576 bytes"),
    Case("sweep: journal that is a FIFO", "sweep", lambda c: (as_fifo(journal(c)), sweep_cli(c))[-1], 2,
         r"journal\.log: the sweep's journal is not a regular file"),
    Case("sweep page: journal that is a FIFO", "sweep",
         lambda c: (as_fifo(journal(c)), call(lambda: trial_table(c.sweep)))[-1], 2, r"not a regular file"),
    Case("sweep: journal that is a link out of the folder", "sweep",
         lambda c: (as_link(journal(c), c.outside / "precious.txt"), sweep_cli(c))[-1], 2,
         r"journal cannot be read \(it is a symbolic link\)"),
    Case("sweep: journal that is a folder", "sweep",
         lambda c: (journal(c).unlink(), journal(c).mkdir(), sweep_cli(c))[-1], 2,
         r"journal\.log: the sweep's journal is not a regular file"),
    # -- a trial's stored record: checked against the space and the config before anything runs
    Case("sweep: stored trial smuggles --run-dir", "sweep",
         lambda c: stored_trial(c, [f"--run-dir={c.outside / 'run'}"]), 2, r"trial 0 failed: .*is not one pkd writes"),
    Case("sweep: stored trial sets a key outside the space", "sweep",
         lambda c: stored_trial(c, [f"data.root={json.dumps(str(c.outside))}"]), 2,
         r"sets a key the search space does not search"),
    Case("sweep: stored trial value outside the range", "sweep", lambda c: stored_trial(c, ["distill.alpha=5.0"]), 2,
         r"distill\.alpha=5\.0 is outside the search space"),
    Case("sweep: stored trial overrides that are not a list", "sweep",
         lambda c: stored_trial(c, "distill.alpha=0.5 --run-dir=/tmp/x"), 2, r"not a list of key=value texts"),
    Case("sweep: stored trial schedule with a smuggled key", "sweep",
         lambda c: stored_trial(c, ["distill.alpha=0.5", 'students.schedule=[{"d_model": 8, "n_layers": 30}]']), 2,
         r"not what pkd writes for the sweep's search space"),
    Case("sweep: stored trial schedule size outside the space", "sweep",
         lambda c: stored_trial(c, ["distill.alpha=0.5", 'students.schedule=[{"d_model": 1024}]']), 2,
         r"schedule\.1\.d_model=1024 is outside the search space"),
    Case("sweep: stored trial turns on a setting the space does not search", "sweep",
         lambda c: stored_trial(c, ["distill.alpha=0.5", "distill.learn_prev_scale=true"]), 2,
         r"sets a key the search space does not search"),
    # -- trial and lock folders: never written through a link
    Case("sweep: trial folder replaced by a link out", "sweep",
         lambda c: (as_link(c.sweep.path / "trial-000", c.outside), run_trial_0(c))[-1], 2,
         r"trial-000 is a symbolic link; pkd writes only inside .*/sweep: remove the link"),
    Case("sweep: unstarted trial holding a link to a folder", "sweep",
         lambda c: unstarted_trial_with_link(c, "students"), 2, r"students is a symbolic link"),
    Case("sweep: unstarted trial holding a link to a file", "sweep",
         lambda c: unstarted_trial_with_link(c, "summary.json"), 2, r"summary\.json is a symbolic link"),
    Case("sweep: base run folder replaced by a link out", "sweep", base_run_teacher, 2,
         r"base is a symbolic link; pkd writes only inside .*/sweep: remove the link"),
    Case("sweep: lock folder replaced by a link out", "sweep",
         lambda c: (as_link(c.sweep.path / ".locks", c.outside), sweep_cli(c))[-1], 2,
         r"\.locks is a symbolic link"),
    Case("sweep: lock file that is a FIFO", "sweep",
         lambda c: ((c.sweep.path / ".locks").mkdir(exist_ok=True), as_fifo(c.sweep.path / ".locks" / "ask.lock"),
                    sweep_cli(c))[-1], 2, r"lock file .*ask\.lock is not a regular file"),
    Case("sweep page: a lock file that is a FIFO (is it running?)", "sweep",
         lambda c: ((c.sweep.path / ".locks").mkdir(exist_ok=True),
                    as_fifo(c.sweep.path / ".locks" / "trial-000.lock"), call(c.sweep.active))[-1], 0, r"^False$"),
    Case("sweep page: stop-request that is a FIFO", "sweep",
         lambda c: (as_fifo(c.sweep.path / "stop-request"), call(lambda: stop_generation(c.sweep.path)))[-1], 0,
         r"^0$"),
    Case("sweep page: sweep.log that is a FIFO", "sweep",
         lambda c: (as_fifo(c.sweep.path / "sweep.log"), call(lambda: log_tail(c.sweep)))[-1], 0,
         r"sweep\.log cannot be read: .*not a regular file"),
    Case("sweep page: Continue with sweep.log a link out", "sweep",
         lambda c: (as_link(c.sweep.path / "sweep.log", c.outside / "precious.txt"),
                    call(lambda: __import__("pkd.sweep").sweep.start_sweep(1, sweep_dir=c.sweep.path)))[-1], 2,
         r"cannot write the log .*sweep\.log \(it is a symbolic link\)"),
    Case("sweep: sweep.json that is a FIFO", "sweep",
         lambda c: (as_fifo(c.sweep.path / "sweep.json"), call(c.sweep.meta))[-1], 2,
         r"sweep\.json: cannot be read .*not a regular file"),
    # -- pkd pareto --csv: never a file of a run or a sweep, never an existing file unless --force
    Case("pareto --csv onto a run's prefix.csv", "pareto",
         lambda c: pareto(c, "--csv", str(c.run.path / "prefix.csv")), 2, r"lies inside the run .*write the file outside"),
    Case("pareto --csv --force onto a run's summary.json", "pareto",
         lambda c: pareto(c, "--csv", str(c.run.path / "summary.json"), "--force"), 2, r"lies inside the run"),
    Case("pareto --csv onto a sweep's journal", "pareto",
         lambda c: pareto(c, "--csv", str(journal(c)), "--force"), 2, r"lies inside the sweep"),
    Case("pareto --csv onto an existing file", "pareto",
         lambda c: pareto(c, "--csv", str(c.outside / "precious.txt")), 2, r"already exists; .*--force"),
    Case("pareto --csv through a link", "pareto",
         lambda c: pareto(c, "--csv", str(as_link(c.tmp / "front.csv", c.outside / "precious.txt")), "--force"), 2,
         r"is a symbolic link"),
    Case("pareto --csv into a missing folder", "pareto", lambda c: pareto(c, "--csv", str(c.tmp / "no" / "f.csv")),
         2, r"folder .* does not exist"),
    Case("pareto --csv onto a device", "pareto", lambda c: pareto(c, "--csv", "/dev/null", "--force"), 2,
         r"already exists"),
    Case("pareto --csv --force onto its own earlier file", "pareto",
         lambda c: (c.file("front.csv", "old"), pareto(c, "--csv", str(c.tmp / "front.csv"), "--force"))[-1], 0,
         r"^wrote .*front\.csv$"),
    # -- pkd export --out: refused before anything is built
    Case("export --out into another run", "export", lambda c: export(c, "--out", str(second_run(c).path)), 2,
         r"lies inside another run directory"),
    Case("export --out into a sweep folder", "export", lambda c: export(c, "--out", str(c.sweep.path)), 2,
         r"lies inside the sweep folder"),
    Case("export --out into this run outside export/", "export",
         lambda c: export(c, "--out", str(c.run.path / "students")), 2, r"outside its export/ folder"),
    Case("export --out onto an existing file", "export",
         lambda c: export(c, "--out", str(c.file("x.pt2", "mine"))), 2, r"already exists; pass --force"),
    Case("export --out that is a link", "export",
         lambda c: export(c, "--out", str(as_link(c.tmp / "x.pt2", c.outside / "precious.txt"))), 2,
         r"is a symbolic link"),
    Case("export with the run's export/ a link out", "export",
         lambda c: (as_link(c.run.path / "export", c.outside), export(c))[-1], 2,
         r"export is a symbolic link; a run directory is written only inside itself"),
    Case("export --out folder whose model card is a link", "export",
         lambda c: (as_link(c.outside / "prefix_k1.pt2.card.md", c.outside / "precious.txt"),
                    export(c, "--out", str(c.outside), "--force"))[-1], 2, r"card\.md is a symbolic link"),
    Case("export --out with the wrong suffix", "export", lambda c: export(c, "--out", str(c.tmp / "model.onnx")), 2,
         r"must end in \.pt2"),
    # -- the app's Resume: console.log is appended to before the training process starts
    Case("resume: console.log a link out of the run", "resume",
         lambda c: (stopped(c), as_link(c.run.path / "console.log", c.outside / "precious.txt"), resume(c))[-1], 2,
         r"console\.log is a symbolic link"),
    Case("resume: train.log a link out of the run", "resume",
         lambda c: (stopped(c), as_link(c.run.path / "train.log", c.outside / "precious.txt"), resume(c))[-1], 2,
         r"train\.log is a symbolic link"),
    Case("resume: console.log a FIFO", "resume",
         lambda c: (stopped(c), as_fifo(c.run.path / "console.log"), resume(c))[-1], 2,
         r"cannot write the log .*not a regular file: a FIFO"),
    Case("resume: console.log a folder", "resume",
         lambda c: (stopped(c), (c.run.path / "console.log").mkdir(), resume(c))[-1], 2,
         r"cannot write the log .*console\.log"),
    Case("train --resume with train.log a FIFO", "resume",
         lambda c: (stopped(c), as_fifo(c.run.path / "train.log"),
                    cli("train", "--resume", str(c.run.path), "--no-kernel-build", "--no-progress"))[-1], 2,
         r"^error: .*cannot write the log .*train\.log \(not a regular file: a FIFO\)"),
    Case("train page: console.log a FIFO is shown, not read", "resume",
         lambda c: (as_fifo(c.run.path / "console.log"), call(lambda: launch.console_tail(c.run)))[-1], 0,
         r"console\.log cannot be read: .*not a regular file"),
    # -- clips: the .npy header (shape, dtype, data size) and the GIF header checked before anything is decoded
    Case("clip: 128-byte .npy claiming an 18 PiB array", "clip",
         lambda c: clip(npy_header(c, "bomb.npy", (2**40, 2**12, 2**12), "<f8")), 2,
         r"bomb\.npy: array of shape \(1099511627776, 4096, 4096\)"),
    Case("clip: .npy claiming 2**40 frames of the right size", "clip",
         lambda c: clip(npy_header(c, "frames.npy", (2**40, S, S))), 2, r"has 1099511627776 frames but"),
    Case("clip: .npy whose data is shorter than its header says", "clip",
         lambda c: clip(npy_header(c, "short.npy", (T, S, S), data=b"\0" * 64)), 2,
         r"header promises [\d,]+ bytes of data, the file holds 64"),
    Case("clip: .npy with data beyond its header's shape", "clip",
         lambda c: clip(npy_header(c, "long.npy", (T, S, S), "|u1", data=b"\0" * (T * S * S + 1))), 2,
         r"header promises"),
    Case("clip: .npy version 2 header claiming 2**60 frames", "clip",
         lambda c: clip(npy_header(c, "v2.npy", (2**60, 1, S, S), version=(2, 0))), 2, r"has \d+ frames but"),
    Case("clip: .npy header of a structured dtype", "clip",
         lambda c: clip(npy_header(c, "rec.npy", (T, S, S), [("a", "<f4")])), 2, r"is not a number type"),
    Case("clip: GIF claiming 65535 x 65535 pixels", "clip", lambda c: clip(big_gif(c)), 2,
         r"bomb\.gif: not a GIF Pillow can read"),
    Case("clip: a FIFO in the clip's place", "clip", lambda c: clip(as_fifo(c.tmp / "clip.npy")), 2,
         r"is not a file"),
    # -- model specs: checked against the config's bounds and the weights file before a model is built
    Case("predict: student spec and manifest asking for d_model 100000", "spec",
         lambda c: student_spec_change(c, "d_model", 100_000), 2,
         r"student_01\.pt: its spec asks for d_model 100000 \(pkd builds 1\.\.1024\)"),
    Case("predict: student spec and manifest asking for 1000000 layers", "spec",
         lambda c: student_spec_change(c, "n_layers", 1_000_000), 2, r"asks for n_layers 1000000"),
    Case("predict: student file holding fewer numbers than its spec", "spec", student_weights_cut, 2,
         r"student_02\.pt: its spec describes a model of [\d,]+ parameters but the file holds only"),
    Case("eval: teacher spec and manifest asking for a 100000-wide teacher", "spec", teacher_spec_huge, 2,
         r"teacher\.pt: its spec describes a model of [\d,]+ parameters but the file holds only"),
]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A run directory shaped like a finished tiny run (untrained weights)."""
    return untrained_run(tmp_path_factory.mktemp("template") / "tiny").path


@pytest.fixture(scope="module")
def sweep_template(tmp_path_factory) -> Path:
    """A created sweep of configs/tiny.yaml sharing the shipped teacher: no trial trained, nothing to train first."""
    from pkd.sweep.study import open_sweep

    if not SHIPPED_TEACHER.is_file():
        pytest.skip("needs the shipped teacher pretrained/mnist/teacher.pt")
    tmp = tmp_path_factory.mktemp("sweep-template")
    return open_sweep(tmp / "sweep", TINY, write_space(tmp, SPACE),
                      [*FAST, f"teacher.checkpoint={SHIPPED_TEACHER}"]).path


def test_sound_trials_of_dead_workers_are_adopted(tmp_path, template, sweep_template):
    """The checks above are not a worker that refuses everything: trials asked the real way are adopted."""
    ctx = Place(tmp_path, template, sweep_template)
    CURRENT.append(ctx)
    try:
        assert sound_trials_are_adopted(ctx) == (0, "adopted 5 sound trials")
    finally:
        CURRENT.pop()


def test_case_table_covers_the_new_surfaces():
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)
    assert {c.kind for c in CASES} == {"sweep", "pareto", "export", "resume", "clip", "spec"}


def _deadline(signum, frame):  # noqa: ARG001
    raise TimeoutError(f"the case blocked for {DEADLINE_S} s (a read of a FIFO?)")


def _drop_closed_log_handlers() -> None:
    """An earlier in-process command may leave a log handler on a stream pytest has closed since; its "Logging
    error" traceback would be read as this case's own."""
    for logger in [logging.getLogger(), *logging.root.manager.loggerDict.values()]:
        for handler in list(getattr(logger, "handlers", [])):
            if getattr(getattr(handler, "stream", None), "closed", False):
                logger.removeHandler(handler)


@pytest.mark.parametrize("case", CASES, ids=[re.sub(r"\W+", "-", c.name).strip("-") for c in CASES])
def test_hostile_surface(case, tmp_path, template, sweep_template):
    _drop_closed_log_handlers()
    ctx = Place(tmp_path, template, sweep_template)
    CURRENT.append(ctx)
    old = signal.signal(signal.SIGALRM, _deadline)
    signal.alarm(DEADLINE_S)
    try:
        rc, text = case.run(ctx)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        CURRENT.pop()
    assert "Traceback" not in text, text
    assert rc == case.rc, f"exit {rc}, expected {case.rc}:\n{text}"
    match = re.search(case.expect, text, re.MULTILINE)
    assert match, f"{case.expect!r} not in:\n{text}"
    line = text[text.rfind("\n", 0, match.start()) + 1:].split("\n")[0]
    assert len(line) < 600, line
    after = ctx.snapshot()
    changed = sorted(k for k in set(ctx.before) | set(after) if ctx.before.get(k) != after.get(k))
    assert not changed, f"changed by pkd: {changed}"
    assert not ctx.sentinel.exists()
    assert (ctx.outside / "precious.txt").read_text() == "keep me"
