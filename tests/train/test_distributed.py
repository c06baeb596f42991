"""Training beyond one process: real `torchrun --standalone` runs of configs/tiny.yaml with 2 gloo ranks on CPU."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pkd.runs import Run, State
from tests.built_once import built_once
from tests.pkd_process import ROOT, TINY, child_env, pkd, pkd_ok

pytestmark = pytest.mark.distributed
DIGEST = re.compile(r"student (\d) weights sha256 (\w+) \(rank (\d) of 2\)")


def digests(text: str) -> dict[tuple[int, int], str]:
    """(student k, rank) -> weights digest, from the ranks' log lines."""
    return {(int(k), int(rank)): digest for k, digest, rank in DIGEST.findall(text)}


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory):
    """configs/tiny.yaml trained by 2 ranks, and what the ranks printed; made once per session (both xdist workers
    read it: copy it before changing it)."""
    base = built_once(tmp_path_factory, "ddp", _train_two_ranks)
    return Run(base / "tiny-ddp"), (base / "output.txt").read_text()


def _train_two_ranks(base: Path) -> None:
    proc = pkd_ok("train", "--config", TINY, "--run-dir", str(base / "tiny-ddp"), "--no-progress", "--nproc", "2")
    (base / "output.txt").write_text(proc.stdout + proc.stderr)


def test_two_ranks_train_identical_weights_and_only_rank_0_writes(two_rank_run):
    run, output = two_rank_run
    found = digests(output)
    assert {k for k, _ in found} == {1, 2} and all(found[(k, 0)] == found[(k, 1)] for k in (1, 2)), found
    assert run.state() == State.DONE and run.status()["world_size"] == 2
    epochs = [(r["stage"], r["student"], r["epoch"]) for r in run.metrics() if r["event"] == "epoch"]
    assert len(epochs) == len(set(epochs)) == 1 + 2 + 2  # one record per epoch: rank 1 wrote none
    assert "[rank 1]" not in run.log_path().read_text() and "[rank 1]" in output
    assert {p.name for p in run.path.iterdir()} <= {"manifest.json", "config.yaml", "status.json", "metrics.jsonl",
                                                    "prefix.csv", "summary.json", "teacher.pt", "teacher_logits.pt",
                                                    "students", "train.log", ".writer.lock"}


def test_two_rank_figures_equal_the_same_weights_evaluated_in_one_process(two_rank_run, tiny_run, tmp_path):
    trained = two_rank_run[0].prefix_table()
    run = Run(shutil.copytree(two_rank_run[0].path, tmp_path / "copy"))  # eval rewrites the tables; the run is shared
    pkd_ok("eval", str(run.path))
    assert run.prefix_table() == trained  # exact: every sample counted once, no padding
    one = tiny_run.prefix_table()
    print("world size 2 vs 1, prefix accuracy:", [(a["prefix_acc"], b["prefix_acc"]) for a, b in zip(trained, one)])


def rank_pid(rank: int, run_dir: Path) -> int | None:
    """The pid of the training process of `rank` for `run_dir` (read from /proc: torchrun's children)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"pkd" in cmd and str(run_dir).encode() in cmd and f"RANK={rank}".encode() in env \
                and b"torch.distributed.run" not in cmd:
            return int(entry.name)
    return None


def test_a_killed_rank_stops_the_run_and_resume_finishes_it(two_rank_run, tmp_path):
    """SIGKILL rank 1 in student 2: the whole run stops; `--resume --nproc 2` ends with the uninterrupted figures."""
    path = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "pkd", "train", "--config", TINY, "--run-dir", str(path),
                             "--no-progress", "--nproc", "2"], cwd=ROOT, env=child_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run, deadline, killed = Run(path), time.time() + 300, False
    while time.time() < deadline and proc.poll() is None and not killed:
        status = run.status(raw=True) if (path / "status.json").exists() else {}
        if status.get("stage") == "student" and status.get("student") == 2 and (pid := rank_pid(1, path)):
            os.kill(pid, signal.SIGKILL)
            killed = True
        time.sleep(0.01)
    assert killed, "the run finished before rank 1 could be killed"
    assert proc.wait(timeout=120) != 0
    assert run.state() in (State.STOPPED, State.DIED, State.FAILED) and run.students_saved() == 1
    pkd_ok("train", "--resume", str(path), "--no-progress", "--nproc", "2")
    expected = two_rank_run[0].prefix_table()
    assert [r["prefix_acc"] for r in run.prefix_table()] == [r["prefix_acc"] for r in expected]


def test_resume_with_another_world_size(two_rank_run, tmp_path):
    """A run killed under 2 ranks continues in 1 process (global batches do not depend on the world size)."""
    import shutil

    path = Path(shutil.copytree(two_rank_run[0].path, tmp_path / "copy"))
    (path / "students" / "student_02.pt").unlink()
    Run(path).write_status(state=State.STOPPED)
    pkd_ok("train", "--resume", str(path), "--no-progress")
    assert Run(path).state() == State.DONE and Run(path).status()["world_size"] == 1


@pytest.mark.parametrize("args, message", [
    (["--nproc", "0"], "--nproc 0"),
    (["--nproc", "2", "data.train_limit=1"], "smaller than the world size 2"),
])
def test_hostile_process_counts(tmp_path, args, message):
    proc = pkd("train", "--config", TINY, "--run-dir", str(tmp_path / "r"), "--no-progress", *args)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-3000:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_rank_given_another_run_dir_is_refused(tmp_path):
    """Every rank must name rank 0's run directory; a rank that names another one stops with a clear error."""
    port = free_port()
    procs = []
    for rank, folder in ((0, "a"), (1, "b")):
        env = child_env(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                        MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, "-m", "pkd", "train", "--config", TINY, "--run-dir",
                                       str(tmp_path / folder), "--no-progress"], cwd=ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    rank1 = procs[1].communicate(timeout=300)[1]
    procs[0].kill()
    procs[0].wait()
    assert procs[1].returncode == 2 and "give every rank the same" in rank1.strip().splitlines()[-1], rank1[-2000:]
    assert not (tmp_path / "b").exists()
