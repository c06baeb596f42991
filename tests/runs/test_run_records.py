"""The Run's records (pkd/runs/run.py, writer.py): creation, status and liveness, tolerant readers of corrupt
files, the prefix table, the State enum, and the live metrics tail."""

import json
import os
import subprocess
import sys

import pytest

from pkd.procs import process_alive
from pkd.runs import Run, RunError

CONFIG = {"name": "t", "seed": 3, "data": {"dataset": "mnist"}, "distill": {"mode": "residual"},
          "students": {"schedule": [{"d_model": 4}]}}


def test_create_is_unique_and_records_manifest(tmp_path):
    runs = [Run.create(tmp_path, "t", CONFIG) for _ in range(5)]
    assert len({r.path for r in runs}) == 5
    manifest = runs[0].manifest()
    assert manifest["seed"] == 3 and manifest["config"] == CONFIG and "torch" in manifest["versions"]
    assert (runs[0].path / "config.yaml").is_file()


def test_create_at_never_overwrites(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("precious")
    with pytest.raises(RunError, match="not empty"):
        Run.create_at(tmp_path / "full", CONFIG)
    assert (tmp_path / "full" / "keep.txt").read_text() == "precious"
    assert Run.create_at(tmp_path / "new", CONFIG).manifest()["name"] == "t"


def test_status_liveness(tmp_path):
    run = Run.create(tmp_path, "t", CONFIG)
    run.mark_started()
    assert run.state() == "running"  # this process
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    run.write_status(pid=child.pid, pid_start=None)
    assert run.state() == "died"
    assert not process_alive(None)


def test_heartbeat_status_skips_fsync_but_survives_a_kill(tmp_path, monkeypatch):
    """The per-second progress of an epoch (durable=False) is written without fsync, state changes with it; a
    process SIGKILLed right after a heartbeat leaves that heartbeat whole in status.json (atomic replace)."""
    run = Run.create(tmp_path, "t", CONFIG)
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    run.write_status(durable=False, progress=0.25)
    assert synced == [] and run.status(raw=True)["progress"] == 0.25
    run.write_status(progress=0.5)
    assert len(synced) == 1
    code = ("import os, signal; from pkd.runs import Run; "
            f"Run({str(run.path)!r}).write_status(durable=False, progress=0.75); os.kill(os.getpid(), signal.SIGKILL)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == -9
    assert run.status(raw=True)["progress"] == 0.75
    assert not list(run.path.glob(".status.json.*"))


def test_zombie_counts_as_dead(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    import time
    for _ in range(100):
        if not process_alive(child.pid):
            break
        time.sleep(0.05)
    assert not process_alive(child.pid)  # exited but not reaped yet: a zombie is not alive
    child.wait()


def test_corrupt_files_are_tolerated(tmp_path):
    run = Run.create(tmp_path, "t", CONFIG)
    run.log_metrics("epoch", loss=1.0)
    with open(run.path / "metrics.jsonl", "a") as fh:
        fh.write('{"event": "epoch", "loss": 0.5')  # half-written last line
    run.log_metrics("epoch", loss=0.25)
    assert [r["loss"] for r in run.metrics()] == [1.0]  # the joined garbage line is skipped
    (run.path / "status.json").write_bytes(b"")
    assert run.status() == {} and run.state() == "unknown"
    (run.path / "status.json").write_bytes(b"\x00garbage")
    assert run.info()["state"] == "broken" and run.info()["problem"] == "status.json: corrupt JSON (JSONDecodeError)"
    (run.path / "summary.json").write_text("{not json")
    with pytest.raises(RunError, match="summary.json"):
        run.summary()
    assert run.info()["name"] == run.name  # listing still works


def test_prefix_table_round_trip(tmp_path):
    run = Run.create(tmp_path, "t", CONFIG)
    run.write_prefix_table([{"k": 1, "student_flops": 10, "cumulative_flops": 10, "share_of_teacher": 0.5,
                             "prefix_acc": 0.9, "solo_acc": 0.9}])
    assert run.prefix_table()[0]["student_flops"] == 10 and run.prefix_table()[0]["prefix_acc"] == 0.9


def test_states_are_one_enum_and_unknown_values_read_as_unknown(tmp_path):
    """status.json's state is read as a State; hand-edited or hostile values are UNKNOWN, never an error."""
    import json

    from pkd.runs import State

    run = Run.create_at(tmp_path / "r", {"name": "r"})
    assert run.state() is State.CREATED and json.loads((run.path / "status.json").read_text())["state"] == "created"
    for value, expected in (("done", State.DONE), ("bogus", State.UNKNOWN), (12, State.UNKNOWN)):
        run.write_status(state=value)
        assert run.state() is expected
    run.write_status(state=State.RUNNING, pid=2**22 + 12345)  # no such process
    assert run.state() is State.DIED and not run.is_active() and f"{run.state()}" == "died"


def test_live_metrics_read_only_the_newest_bytes_of_a_huge_file(tmp_path):
    """A 1 GB metrics.jsonl (sparse: a hole of NUL bytes, nothing written) costs a live reader its tail only, and
    a full read skips the hole as over-long lines without holding them."""
    import time

    from pkd.runs import LIVE_METRICS_BYTES, MAX_METRICS_LINE

    run = Run.create(tmp_path, "t", CONFIG)
    path = run.path / "metrics.jsonl"
    run.log_metrics("epoch", epoch=1)
    with open(path, "r+b") as fh:
        fh.truncate(2**30)  # a hole of zeros: no disk space used where the file system is sparse
    if os.stat(path).st_blocks * 512 > 2**26:
        pytest.skip("this file system is not sparse")
    with open(path, "ab") as fh:
        fh.write(b"\n")
    run.log_metrics("epoch", epoch=2)
    run.log_metrics("epoch", epoch=3)
    start = time.perf_counter()
    assert [r["epoch"] for r in run.metrics(tail_bytes=LIVE_METRICS_BYTES)] == [2, 3]
    assert time.perf_counter() - start < 1.0
    small = tmp_path / "small.jsonl"  # the same shape, small enough to read whole: the hole is skipped
    small.write_bytes(b'{"event": "epoch", "epoch": 1}\n' + b"\0" * (3 * MAX_METRICS_LINE) + b'\n{"event": "x"}\n')
    os.replace(small, path)
    assert [r["event"] for r in run.metrics()] == ["epoch", "x"]
