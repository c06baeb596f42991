"""The run-directory format: atomic writes, tolerant readers, liveness, safe names and deletion."""

import json
import os
import subprocess
import sys

import pytest
import torch

from pkd.procs import process_alive
from pkd.runs import (Run, RunError, delete_run, list_runs, load_tensors, resolve_run,
                      safe_child, save_tensors)

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


def test_tensor_files_are_weights_only(tmp_path):
    path = tmp_path / "w.pt"
    save_tensors(path, {"w": torch.ones(2), "spec": {"arch": "mamba"}})
    assert torch.equal(load_tensors(path)["w"], torch.ones(2))

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    import pickle
    bad = tmp_path / "evil.pt"
    bad.write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(RunError, match="not a pkd weights file"):
        load_tensors(bad)
    assert not (tmp_path / "pwned").exists()
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(RunError):
        load_tensors(tmp_path / "text.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(RunError, match="dict"):
        load_tensors(tmp_path / "list.pt")


def test_corrupt_checkpoint_falls_back(tmp_path):
    run = Run.create(tmp_path, "t", CONFIG)
    run.save_checkpoint({"epoch": 1})
    assert run.load_checkpoint()["epoch"] == 1
    (run.path / "checkpoint.pt").write_bytes(b"PK\x03\x04truncated")
    assert run.load_checkpoint() is None


def test_prefix_table_round_trip(tmp_path):
    run = Run.create(tmp_path, "t", CONFIG)
    run.write_prefix_table([{"k": 1, "student_flops": 10, "cumulative_flops": 10, "share_of_teacher": 0.5,
                             "prefix_acc": 0.9, "solo_acc": 0.9}])
    assert run.prefix_table()[0]["student_flops"] == 10 and run.prefix_table()[0]["prefix_acc"] == 0.9


@pytest.mark.parametrize("name", ["..", "../x", "/etc", "a/b", "a\nb", "a\x00b", "", ".hidden", "a" * 300])
def test_bad_run_names_refused(tmp_path, name):
    with pytest.raises(RunError):
        safe_child(tmp_path, name)
    with pytest.raises(RunError):
        delete_run(tmp_path, name)


def test_delete_stays_inside(tmp_path):
    runs_dir = tmp_path / "runs"
    outside = Run.create(tmp_path / "elsewhere", "t", CONFIG)
    runs_dir.mkdir()
    os.symlink(outside.path, runs_dir / "link")
    with pytest.raises(RunError, match="inside"):
        delete_run(runs_dir, "link")
    assert outside.path.is_dir()
    inside = Run.create(runs_dir, "t", CONFIG)
    inside.write_status(state="done")
    delete_run(runs_dir, inside.name)
    assert not inside.path.exists()
    (runs_dir / "notarun").mkdir()
    with pytest.raises(RunError, match="not a pkd run"):
        delete_run(runs_dir, "notarun")


def test_delete_refuses_running(tmp_path):
    run = Run.create(tmp_path, "t", CONFIG)
    run.mark_started()
    with pytest.raises(RunError, match="still running"):
        delete_run(tmp_path, run.name)


def test_list_and_resolve(tmp_path):
    a = Run.create(tmp_path, "a", CONFIG)
    (tmp_path / "junk").mkdir()
    assert [r.name for r in list_runs(tmp_path)] == [a.name]
    assert resolve_run(a.name, tmp_path).path == a.path
    with pytest.raises(RunError, match="not found"):
        resolve_run("nope", tmp_path)
    with pytest.raises(RunError):
        resolve_run("junk", tmp_path)
    json.loads((a.path / "status.json").read_text())


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


def test_students_beyond_k_are_ignored(tmp_path):
    """A run of K students lists, stamps and loads students 1..K only, whatever else lies in students/."""
    run = Run.create(tmp_path, "t", CONFIG)  # K = 1
    for k in (1, 2, 3):
        run.save_student(k, {"w": torch.ones(1)}, {"arch": "mamba", "params": {}})
    run.student_path(4).write_bytes(b"garbage")
    assert run.students_planned() == 1 and run.students_saved() == 1
    assert run.weights_files() == [run.student_path(1)]


def test_every_prefix_column_has_a_rule():
    """prefix.csv's columns are each checked by type and range when read back."""
    from pkd.runs import PREFIX_COLUMNS, PREFIX_RULES

    assert set(PREFIX_RULES) == set(PREFIX_COLUMNS)


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


def test_a_sweep_trial_is_deleted_by_its_path_inside_the_runs_folder(tmp_path):
    """`sweep/trial` one folder down is deleted; a same-named run beside the sweep is untouched; deeper is refused."""
    trial = Run.create_at(tmp_path / "sweep-x" / "trial-000", {"name": "t"})
    twin = Run.create_at(tmp_path / "trial-000", {"name": "t"})
    for run in (trial, twin):
        run.write_status(state="done")
    delete_run(tmp_path, "sweep-x/trial-000")
    assert not trial.path.exists() and twin.path.is_dir()
    with pytest.raises(RunError, match="does not lie inside"):
        delete_run(tmp_path, "a/b/c")
