"""Faults on real runs of configs/tiny.yaml: hard kills at many points, corrupt files, concurrent runs, a restarted
app, a read-only disk, no GPU and a missing or broken mamba-ssm. Cases are counted in tests/cases.py.

One uninterrupted reference run (launched by a short-lived "app" process through pkd.launch) trains while a second
run, started in the same moment in the same folder, is killed at seven points in turn and resumed each time; at the
end both must hold the same per-prefix accuracies. Kills inside a file write use the test-only fault injection
$PKD_FAULT="kill:<file>:<n>" (pkd.runs.io._fault): half the bytes are written, then the process SIGKILLs itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pkd import launch, ssm
from pkd.runs import (CHECKPOINT_FILE, METRICS_FILE, Run, RunError, list_runs, load_tensors, new_run_dir, printable,
                      save_tensors)
from pkd.ssm import cuda as ssm_cuda
from tests.hostile_runs import BREAKERS, make_runs, untrained_run
from tests.pkd_process import ROOT, TIMEOUT, TINY, child_env, pkd, start

BREAKER = {b.name: b for b in BREAKERS}


# The kill chain: each resumed process of the same run is killed at the next point. A (fresh) is started by the
# fixture; "poll" means an external SIGKILL once the status says student 2 is in its second epoch.
KILL_CHAIN = [
    ("A", "kill:status.json:5", "teacher mid-epoch, while status.json is written"),
    ("B", "kill:teacher.pt:1", "after the teacher's epoch, while teacher.pt is written"),
    ("C", "kill:checkpoint.pt:1", "student 1 epoch 1, while checkpoint.pt is written"),
    ("D", "kill:metrics.jsonl:1", "student 1 epoch 1, while its metrics line is appended"),
    ("E", "kill:student_01.pt:1", "after student 1's last epoch, while student_01.pt is written"),
    ("F", "kill:prefix.csv:1", "after student 1 is saved, while prefix.csv is written"),
    ("G", "poll", "student 2 in the middle of epoch 2 (external SIGKILL)"),
]


def log_tail(run: Run) -> str:
    path = run.path / "train.log"
    return path.read_text()[-3000:] if path.is_file() else "(no train.log)"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def epochs_logged(run: Run) -> dict[tuple[str, int], list[int]]:
    out: dict[tuple[str, int], list[int]] = {}
    for r in run.metrics():
        if r.get("event") == "epoch":
            out.setdefault((r["stage"], r["student"]), []).append(r["epoch"])
    return out


def wait_state(run: Run, states: tuple[str, ...], timeout: float = TIMEOUT) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = run.state()
        if state in states:
            return state
        time.sleep(0.2)
    raise AssertionError(f"{run.path} never reached {states}; status {run.status(raw=True)}")


class Watcher(threading.Thread):
    """A second 'browser session': polls a live run's files and records anything a reader should never see."""

    def __init__(self, run: Run) -> None:
        super().__init__(daemon=True)
        self.run_, self.problems, self.reads, self.stop = run, [], 0, threading.Event()

    def run(self) -> None:  # noqa: D102 - thread body
        last = 0
        while not self.stop.is_set():
            try:
                if (self.run_.path / "status.json").exists():
                    status = self.run_.status(raw=True)
                    if not status.get("state"):
                        self.problems.append(f"status read as {status!r}")
                records = self.run_.metrics()
                if len(records) < last:
                    self.problems.append(f"metrics shrank from {last} to {len(records)}")
                last = len(records)
                self.run_.prefix_table()
                self.run_.summary()
                self.run_.info()
                self.reads += 1
            except Exception as exc:  # noqa: BLE001 - every exception is a finding
                self.problems.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.02)


APP = ("import sys; from pkd.launch import start_run; "
       "print(start_run(sys.argv[1], runs_dir=sys.argv[2], wait_s=0).path)")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The reference run (via a short-lived app process) and kill-chain process A, started together."""
    runs_dir = tmp_path_factory.mktemp("runs")
    victim = start("train", "--config", TINY, "--runs-dir", str(runs_dir), "--no-progress",
                   env=child_env(PKD_FAULT=KILL_CHAIN[0][1]))
    app = subprocess.run([sys.executable, "-c", APP, TINY, str(runs_dir)], cwd=ROOT, env=child_env(),
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert app.returncode == 0, app.stderr
    reference = Run(Path(app.stdout.strip().splitlines()[-1]))
    victim.wait(timeout=TIMEOUT)
    others = [p for p in runs_dir.iterdir() if p != reference.path]
    assert len(others) == 1, others
    chain = Run(others[0])
    assert victim.returncode == -signal.SIGKILL, log_tail(chain)
    wait_state(reference, ("running", "done"), timeout=120)
    watchers = [Watcher(reference), Watcher(reference)]
    for w in watchers:
        w.start()
    yield {"runs_dir": runs_dir, "reference": reference, "chain": chain, "watchers": watchers, "saved": {}}
    for w in watchers:
        w.stop.set()


def finished_reference(world) -> Run:
    ref = world["reference"]
    assert wait_state(ref, ("done", "failed", "died")) == "done", (ref.path / "console.log").read_text()[-2000:]
    return ref


# ----------------------------------------------------------------------------------------------- concurrency

def test_same_second_creations_never_collide(tmp_path, monkeypatch):
    """Run.create and bare new_run_dir folders (what launch uses): 40 at once in one frozen second, forced token
    collisions."""
    monkeypatch.setattr(time, "strftime", lambda fmt, *a: "20260101-000000")
    tokens = iter(["aaaa"] * 6 + [f"{i:04x}" for i in range(1000)])
    lock = threading.Lock()

    def token_hex(n):
        with lock:
            return next(tokens)

    monkeypatch.setattr("secrets.token_hex", token_hex)
    made, errors = [], []

    def make(i):
        try:
            made.append(Run.create(tmp_path, "t", {"name": "t"}).path if i % 2 else
                        new_run_dir(tmp_path, "t"))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=make, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(made) == 40 and len(set(made)) == 40
    assert all(p.name.startswith("t-20260101-000000-") for p in made)


def test_atomic_files_never_read_half_written(tmp_path):
    """A writer replaces status/summary/prefix 300 times while two readers read them: every read is whole."""
    run = Run.create(tmp_path, "t", {"name": "t"})
    stop, problems = threading.Event(), []
    big = {"rows": list(range(5000))}

    def writer():
        for i in range(300):
            run.write_status(state="running", step=i, padding="x" * (i * 50))
            run.write_summary({**big, "i": i})
            run.write_prefix_table([{"k": j, "prefix_acc": 0.5} for j in range(1, i % 7 + 2)])
            run.log_metrics("epoch", i=i)
        stop.set()

    def reader():
        while not stop.is_set():
            try:
                assert run.status(raw=True).get("state") in ("created", "running")
                assert run.summary() == {} or len(run.summary()["rows"]) == 5000
                assert all(r["prefix_acc"] == 0.5 for r in run.prefix_table())
            except Exception as exc:  # noqa: BLE001
                problems.append(repr(exc))

    threads = [threading.Thread(target=f) for f in (writer, reader, reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not problems, problems[:3]
    assert [r["i"] for r in run.metrics()] == list(range(300))
    assert not list(tmp_path.rglob("*.tmp"))


def test_two_runs_at_once_get_their_own_dirs(world):
    ref, chain = world["reference"], world["chain"]
    assert ref.path != chain.path and ref.path.parent == chain.path.parent
    stamp = lambda p: p.name.split("-")[1:3]  # noqa: E731 - tiny-YYYYmmdd-HHMMSS-hex
    print("same second:", stamp(ref.path) == stamp(chain.path), ref.name, chain.name)
    assert ref.status(raw=True)["pid"] != chain.status(raw=True)["pid"]
    assert ref.manifest()["config"] == chain.manifest()["config"]
    assert sorted(r.path for r in list_runs(world["runs_dir"])) == sorted([ref.path, chain.path])


def test_restarted_app_reattaches_and_sees_the_dead_run(world):
    """The app that launched the reference has exited; a fresh process finds it running and the victim died."""
    code = ("import json, sys; from pkd.runs import list_runs; "
            "print(json.dumps({r.name: r.state() for r in list_runs(sys.argv[1])}))")
    out = subprocess.run([sys.executable, "-c", code, str(world["runs_dir"])], cwd=ROOT, env=child_env(),
                         capture_output=True, text=True, timeout=TIMEOUT)
    states = json.loads(out.stdout)
    assert states[world["chain"].name] == "died"  # SIGKILLed while its status said running
    assert states[world["reference"].name] in ("running", "done")
    assert launch.child_process(world["reference"]) is None  # not our child: re-attached through its files only


# ----------------------------------------------------------------------------------------------- the kill chain

def kill_when_student2_mid_epoch2(proc: subprocess.Popen, run: Run) -> dict:
    deadline = time.time() + TIMEOUT
    while time.time() < deadline and proc.poll() is None:
        status = run.status(raw=True)
        if (status.get("stage"), status.get("student"), status.get("epoch")) == ("student", 2, 2) \
                and status.get("progress", 1.0) < 1.0:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return status
        time.sleep(0.01)
    raise AssertionError(f"the run ended before student 2's second epoch: {log_tail(run)}")


def test_kill_chain_resumes_to_the_uninterrupted_result(world):
    """Seven hard kills of one run, each resumed; nothing saved is lost and the result equals the reference."""
    run, path = world["chain"], world["chain"].path
    hashes: dict[str, str] = {}
    # A was killed by the fixture during the teacher, while status.json was being written.
    assert run.state() == "died" and run.status(raw=True)["stage"] == "teacher" and not run.has_teacher()
    assert list(path.glob(".status.json.*.tmp")), "the kill left no half-written temp file: it hit elsewhere"
    for step, fault, _ in KILL_CHAIN[1:]:
        if fault == "poll":
            proc = start("train", "--resume", str(path), "--no-progress")
            killed_at = kill_when_student2_mid_epoch2(proc, run)
            assert killed_at["student"] == 2
        else:
            proc = pkd("train", "--resume", str(path), "--no-progress", env=child_env(PKD_FAULT=fault))
            assert proc.returncode == -signal.SIGKILL, f"{step}: {proc.returncode}\n{proc.stderr[-3000:]}"
        assert run.state() == "died", step
        checkpoint = run.load_checkpoint()
        where = (checkpoint or {}).get("stage"), (checkpoint or {}).get("k"), (checkpoint or {}).get("epoch")
        if step == "B":
            assert where == ("teacher", 0, 1) and not run.has_teacher()
        elif step == "C":
            assert run.has_teacher() and checkpoint is None
            hashes["teacher.pt"] = sha(path / "teacher.pt")
        elif step == "D":
            assert where == ("student", 1, 1)
            assert not (path / METRICS_FILE).read_bytes().endswith(b"\n")  # half a line
        elif step == "E":
            assert where == ("student", 1, 2) and run.students_saved() == 0
            assert epochs_logged(run)[("student", 1)] == [1, 2]  # the half-written epoch-1 line was recovered
        elif step == "F":
            assert run.students_saved() == 1 and not (path / "prefix.csv").exists()
            hashes["students/student_01.pt"] = sha(run.student_path(1))
        elif step == "G":
            assert where == ("student", 2, 1) and run.students_saved() == 1
            world["saved"]["student2_epoch1"] = shutil.copytree(path, path.parent.parent / "saved-g")
    proc = pkd("train", "--resume", str(path), "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert run.state() == "done"
    log = (path / "train.log").read_text()
    assert "resuming student 2 at epoch 2" in log  # G lost only part of one epoch
    assert epochs_logged(run) == {("teacher", 0): [1], ("student", 1): [1, 2], ("student", 2): [1, 2]}
    assert {name: sha(path / name) for name in hashes} == hashes  # files saved before later kills are untouched
    assert not list(path.rglob(".*.tmp"))  # half-written temp files of killed writers were cleaned up
    lines = (path / METRICS_FILE).read_bytes().splitlines()
    assert len(lines) == len(run.metrics()) + 1  # exactly one line (D's half line) is unreadable, and skipped
    ref = finished_reference(world)
    assert [r["prefix_acc"] for r in run.prefix_table()] == [r["prefix_acc"] for r in ref.prefix_table()]
    assert [r["solo_acc"] for r in run.prefix_table()] == [r["solo_acc"] for r in ref.prefix_table()]
    assert run.summary()["teacher"]["test_acc"] == ref.summary()["teacher"]["test_acc"]


def test_watchers_saw_only_whole_files(world):
    """Two readers polled the reference during its whole run (two browser sessions): no error, no half file."""
    finished_reference(world)
    for w in world["watchers"]:
        w.stop.set()
        w.join(timeout=10)
        assert w.reads > 10 and not w.problems, w.problems[:3]


def test_reference_ran_on_cpu_and_said_so(world):
    log = (finished_reference(world).path / "train.log").read_text()
    if not torch.cuda.is_available():
        assert "device auto: no CUDA GPU visible, training on the CPU" in log
    assert "selective scan backend:" in log


# ----------------------------------------------------------------------------------------------- corrupt files

def saved_state(world, tmp_path, name: str) -> Run:
    source = world["saved"].get("student2_epoch1")
    if source is None:
        pytest.skip("needs the kill chain's saved state")
    return Run(shutil.copytree(source, tmp_path / name))


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04trunc", b"\x80\x04garbage\x00" * 50], ids=["zero", "trunc", "junk"])
def test_corrupt_checkpoint_reads_as_none(tmp_path, caplog, content):
    run = Run.create(tmp_path, "t", {"name": "t"})
    (run.path / CHECKPOINT_FILE).write_bytes(content)
    with caplog.at_level(logging.WARNING):
        assert run.load_checkpoint() is None
    assert "resuming from the last saved student" in caplog.text


def test_truncated_checkpoint_resume_falls_back_to_last_student(world, tmp_path):
    run = saved_state(world, tmp_path, "trunc")
    ckpt = run.path / CHECKPOINT_FILE
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    student1 = sha(run.student_path(1))
    proc = pkd("train", "--resume", str(run.path), "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from the last saved student" in (run.path / "train.log").read_text()
    assert sha(run.student_path(1)) == student1
    ref = finished_reference(world)
    assert [r["prefix_acc"] for r in run.prefix_table()] == [r["prefix_acc"] for r in ref.prefix_table()]


def test_corrupt_saved_student_is_a_clear_error(world, tmp_path):
    run = saved_state(world, tmp_path, "badstudent")
    run.student_path(1).write_bytes(b"\x00" * 100)
    proc = pkd("train", "--resume", str(run.path), "--no-progress")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "student_01.pt" in proc.stderr.splitlines()[-1] and run.state() == "failed"


def test_listing_survives_every_corrupt_file(tmp_path):
    """`pkd runs` lists every run whatever is broken in the others: each damaged one as broken with its one-line
    reason, odd names escaped on one line; it exits 0, nothing raises, nothing hangs. Bad metrics lines are
    skipped, student files beyond K ignored. The damage: tests/hostile_runs.py's BREAKERS."""
    good = Run.create(tmp_path, "good", {"name": "good"})
    good.write_status(state="done")
    runs = make_runs(tmp_path)
    proc = pkd("runs", str(tmp_path), timeout=60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 + len(runs) + 1, proc.stdout  # a header and one line per run: no name broke a line
    assert len(list_runs(tmp_path)) == len(runs) + 1
    assert any(line.startswith("done ") and line.endswith(f"/{good.name}") for line in lines)
    for name, run in runs.items():
        shown = f"{tmp_path}/{printable(name, 400)}"
        (line,) = [x for x in lines if x.endswith(shown) or f"{shown}  problem: " in x]
        info = run.info()
        assert "\n" not in info["problem"] and len(info["problem"]) < 400, info["problem"]
        breaker = BREAKER.get(name)
        if breaker is None or breaker.problem is None:  # an odd name, a skipped metrics line, extra students
            assert line.startswith("done ") and "problem" not in line and info["problem"] == "", line
        else:
            assert line.startswith("broken ") and info["state"] == "broken", line
            assert re.search(breaker.problem, line.split("  problem: ", 1)[1]), (breaker.problem, line)
        if name.startswith("metrics-"):
            epochs = {"metrics-half-line": [1], "metrics-fifo": []}.get(name, [1, 2])
            assert [r["epoch"] for r in run.metrics()] == epochs, name  # only the well-formed records


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> dict[str, Run]:
    """One copy of a trained-looking tiny run (untrained weights) per breaker, each with its damage."""
    folder = tmp_path_factory.mktemp("damaged")
    template = untrained_run(folder / "template")
    (folder / "runs").mkdir()
    return make_runs(folder / "runs", template.path, odd_names=[])


@pytest.mark.parametrize("breaker", BREAKERS, ids=[b.name for b in BREAKERS])
def test_predict_and_eval_on_every_corrupt_run_answer_in_one_line(damaged, breaker, tmp_path):
    """predict and eval on a damaged run answer, or stop with one line naming the damaged file; never a
    traceback. predict and eval read the manifest and the students; eval recomputes and rewrites prefix.csv and
    summary.json, so a damaged one of those is repaired."""
    from PIL import Image

    from tests.test_hostile import cli_run

    run = damaged[breaker.name]
    image = tmp_path / "one.png"
    Image.fromarray(np.pad(np.full((100, 20), 255, np.uint8), ((20, 20), (60, 60)))).save(image)
    for command, reads in (("predict", ("manifest",)), ("eval", ("manifest",))):
        rc, text = cli_run(command, str(run.path), *([str(image)] if command == "predict" else []))
        assert "Traceback" not in text, text
        if breaker.file in reads:
            last = text.strip().splitlines()[-1]
            assert rc == 2 and last.startswith("error: ") and text.count("error: ") == 1, text[-2000:]
            assert re.search(breaker.problem.lstrip("^"), last), (breaker.problem, last)
        else:
            assert rc == 0, text[-2000:]
            assert "prediction: " in text if command == "predict" else "prefix acc" in text
    if breaker.file in ("prefix", "summary"):
        assert run.info()["problem"] == ""  # eval rewrote the damaged prefix.csv / summary.json


# ----------------------------------------------------------------------------------------------- read-only disk

RO_SCRIPT = 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" "$1" && shift && exec "$@"'


def read_only(folder: Path) -> list[str] | None:
    """A command prefix that runs a process with `folder` mounted read-only (private mount namespace), or None."""
    if not shutil.which("unshare"):
        return None
    prefix = ["unshare", "-rm", "--", "sh", "-c", RO_SCRIPT, "sh", str(folder)]
    probe = subprocess.run([*prefix, "sh", "-c", 'touch "$0/.probe"', str(folder)], capture_output=True, timeout=30)
    if probe.returncode == 0 or (folder / ".probe").exists():
        (folder / ".probe").unlink(missing_ok=True)
        return None  # the namespace did not make it read-only
    return prefix if b"Read-only" in probe.stderr else None


def test_read_only_students_dir_stops_cleanly_and_loses_nothing(world, tmp_path):
    """Saving student 2 fails on a read-only students/ folder: one clear error, student 1 and the checkpoint
    intact; once writable again, resume saves student 2 without retraining it."""
    run = saved_state(world, tmp_path, "ro")
    ckpt = load_tensors(run.path / CHECKPOINT_FILE)
    ckpt["epoch"] = 2  # as if student 2's last epoch had just finished: the next write is student_02.pt
    ckpt["record"] = {**ckpt["record"], "epoch": 2}
    save_tensors(run.path / CHECKPOINT_FILE, ckpt)
    run.log_metrics("epoch", **ckpt["record"])
    student1, before = sha(run.student_path(1)), sha(run.path / CHECKPOINT_FILE)
    prefix = read_only(run.path / "students")
    env = child_env() if prefix else child_env(PKD_FAULT="erofs:student_02.pt:1")
    proc = pkd("train", "--resume", str(run.path), "--no-progress", env=env, prefix=prefix)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert last.startswith("error: ") and "cannot write" in last and "student_02.pt" in last and "Read-only" in last
    assert run.state() == "failed" and "student_02.pt" in run.status()["message"]
    assert sha(run.student_path(1)) == student1 and sha(run.path / CHECKPOINT_FILE) == before
    assert not run.student_path(2).exists() and not list(run.path.rglob(".*.tmp"))
    n_epochs = sum(len(v) for v in epochs_logged(run).values())
    proc = pkd("train", "--resume", str(run.path), "--no-progress")
    assert proc.returncode == 0 and run.state() == "done" and run.students_saved() == 2
    assert sum(len(v) for v in epochs_logged(run).values()) == n_epochs  # nothing was trained again


def test_read_only_run_dir_refuses_to_start(world, tmp_path):
    run = saved_state(world, tmp_path, "rodir")
    def files():
        return {p: sha(p) for p in run.path.rglob("*") if p.is_file() and not p.name.endswith(".tmp")}

    before = files()
    prefix = read_only(run.path)
    env = child_env() if prefix else child_env(PKD_FAULT="erofs:status.json:1")
    proc = pkd("train", "--resume", str(run.path), "--no-progress", env=env, prefix=prefix)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-2000:]
    assert "error: " in proc.stderr and "cannot write" in proc.stderr and "--resume" in proc.stderr
    assert files() == before


# ----------------------------------------------------------------------------------------------- no GPU, no mamba-ssm

@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu_for_eval_and_resume(world, tmp_path):
    ref = finished_reference(world)
    for args in (["eval", str(ref.path), "--device", "cuda"], ["train", "--resume", str(ref.path), "--device", "cuda"]):
        proc = pkd(*args)
        assert proc.returncode == 2 and proc.stderr.startswith("error: --device cuda: no CUDA GPU"), proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert ref.state() == "done"


@pytest.mark.parametrize("backend, message", [("cuda", "PKD_SCAN_BACKEND=cuda needs a CUDA GPU"),
                                              ("fast", "PKD_SCAN_BACKEND='fast' is not a scan backend")])
def test_forced_scan_backend_that_cannot_run_stops_before_anything(tmp_path, backend, message):
    if backend == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = pkd("train", "--config", TINY, "--run-dir", str(tmp_path / "r"), "--device", "cpu",
               env=child_env(PKD_SCAN_BACKEND=backend))
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def _fake_mamba(tmp_path: Path, body: str) -> None:
    pkg = tmp_path / "mamba_ssm" / "ops"
    pkg.mkdir(parents=True)
    (tmp_path / "mamba_ssm" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "selective_scan_interface.py").write_text(body)


@pytest.mark.parametrize("body, reason", [
    (None, "ModuleNotFoundError"),
    ("raise ImportError('selective_scan_cuda.so: undefined symbol: _ZN3c104cuda9SetDeviceEi')", "undefined symbol"),
], ids=["absent", "broken"])
def test_missing_or_broken_mamba_ssm_falls_back_and_says_so(tmp_path, monkeypatch, caplog, body, reason):
    """With a GPU visible but mamba-ssm unusable: auto uses the torch scan with a warning; forcing cuda is an error."""
    for name in [m for m in sys.modules if m.startswith("mamba_ssm")]:
        monkeypatch.delitem(sys.modules, name)
    if body is None:
        monkeypatch.setitem(sys.modules, "mamba_ssm", None)  # not installed
    else:
        _fake_mamba(tmp_path, body)  # installed, but its CUDA extension does not load
        monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(ssm_cuda, "CHECK", ssm_cuda.CudaCheck())
    monkeypatch.delenv(ssm.BACKEND_ENV, raising=False)
    with caplog.at_level(logging.WARNING):
        assert ssm.scan_backend("cuda") == "torch"
    assert reason in caplog.text and "pure-torch backend" in caplog.text and "pip install mamba-ssm" in caplog.text
    assert reason in ssm.available_backends()["cuda"]
    monkeypatch.setenv(ssm.BACKEND_ENV, "cuda")
    x = torch.zeros(1, 2, 3)
    with pytest.raises(RuntimeError, match=rf"PKD_SCAN_BACKEND=cuda but mamba_ssm selective_scan_fn unusable \(.*{reason}"):
        ssm.selective_scan(x, x, torch.zeros(2, 4), torch.zeros(1, 4, 3), torch.zeros(1, 4, 3))


def test_case_counts():
    """tests/cases.py names only tests that exist here, and the counts it reports add up."""
    import cases

    names = {name for name in globals() if name.startswith("test_")}
    assert {test for _, test, _ in cases.FAULTS} <= names
    for _, where, *_ in [*cases.MORE_FAULTS, *[(None, test) for _, _, test, _ in cases.MORE_INPUTS]]:
        file, test = where.split("::")
        assert f"def {test}(" in (ROOT / file).read_text(), where
    counts = cases.counts()
    assert counts["hard_kills"] == len(KILL_CHAIN) + 5 and counts["bad_inputs"] >= 25 and counts["data_lost"] == 0
