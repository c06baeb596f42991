"""Finding and deleting runs (pkd/runs/listing.py): safe names, deletion inside the runs folder only, listing and
resolving."""

import json
import os

import pytest

from pkd.runs import Run, RunError, delete_run, list_runs, resolve_run, safe_child

CONFIG = {"name": "t", "seed": 3, "data": {"dataset": "mnist"}, "distill": {"mode": "residual"},
          "students": {"schedule": [{"d_model": 4}]}}


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


def test_a_seed_groups_members_are_listed_one_level_down(tmp_path):
    """A folder holding group.json (pkd train --seeds) lists its members as runs, as a sweep folder its trials; a
    run two levels down in a plain folder is not listed."""
    member = Run.create_at(tmp_path / "tiny-seeds" / "seed-0", {"name": "t", "seed": 0})
    (tmp_path / "tiny-seeds" / "group.json").write_text(json.dumps({"seeds": [0], "config": {}}))
    hidden = Run.create_at(tmp_path / "plain" / "seed-0", {"name": "t"})
    listed = {run.path for run in list_runs(tmp_path)}
    assert member.path in listed and hidden.path not in listed
    delete_run(tmp_path, "tiny-seeds/seed-0")
    assert not member.path.exists()
