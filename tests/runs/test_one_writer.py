"""One run, one writer, written only inside itself (issue 10): paths resolved before they are checked, links out of
a run directory refused, an OS-level writer lock, clear states for runs that never started, finished runs and
edited configs. Real `python -m pkd` subprocesses throughout."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pkd.config import ConfigError, load_config
from pkd.runs import Run, RunError, State, check_run_name
from tests.pkd_process import ROOT, TINY, child_env, pkd, pkd_ok

FAST = ["students.optim.epochs=1", "data.train_limit=256", "--no-progress"]


def tree_digest(folder: Path) -> str:
    """Names and bytes of every file under `folder`: equal digests mean nothing was written there."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return h.hexdigest()


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error:") and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for needle in needles:
        assert needle in lines[-1], lines[-1]


def killed_early_run(tmp_path: Path) -> Run:
    """A tiny run SIGKILLed in its teacher's first epoch (the fault injection kills it mid-write)."""
    path = tmp_path / "killed"
    pkd("train", "--config", TINY, "--run-dir", str(path), *FAST, env=child_env(PKD_FAULT="kill:status.json:4"))
    run = Run(path)
    assert run.state() == State.DIED
    return run


# ----------------------------------------------------------------------------------------------- paths

def test_run_dir_through_a_missing_folder_onto_an_existing_one_is_refused(tmp_path):
    """`a/missing/../existing` is `a/existing`: it is resolved before the check, so nothing there is overwritten."""
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "config.yaml").write_text("precious: true\n")
    before = tree_digest(tmp_path)
    proc = pkd("train", "--config", TINY, "--run-dir", str(tmp_path / "missing" / ".." / "existing"), *FAST)
    one_line_error(proc, "already exists and is not empty")
    assert tree_digest(tmp_path) == before and not (tmp_path / "missing").exists()


@pytest.mark.parametrize("linked", ["metrics.jsonl", "train.log", "students", "students/student_01.pt"])
def test_resume_refuses_a_run_directory_with_links_out_of_it(tmp_path, linked):
    run = killed_early_run(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    target = run.path / linked
    (run.path / "students").mkdir(exist_ok=True)
    if target.exists():
        shutil.move(str(target), outside / "moved")
    (outside / "victim").mkdir() if linked == "students" else (outside / "victim").write_text("keep me\n")
    target.symlink_to(outside / "victim")
    before = tree_digest(outside)
    one_line_error(pkd("train", "--resume", str(run.path), "--no-progress"), "symbolic link")
    assert tree_digest(outside) == before


# ----------------------------------------------------------------------------------------------- one writer

def test_a_run_held_by_another_process_is_not_resumed(tmp_path):
    """While a process holds the writer lock, `train --resume` stops before writing a byte."""
    run = killed_early_run(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pkd.runs import Run; "
                               "Run(sys.argv[1]).lock_writer(); print('held', flush=True); time.sleep(60)",
                               str(run.path)], cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert run.writer_alive() and run.is_active()
        before = tree_digest(run.path)
        one_line_error(pkd("train", "--resume", str(run.path), "--no-progress"), "another process")
        assert tree_digest(run.path) == before
    finally:
        holder.kill()
        holder.wait()
    assert not run.writer_alive()  # the kernel dropped the lock with the process


def test_two_resumes_at_the_same_instant_train_the_run_once(tmp_path):
    run = killed_early_run(tmp_path)
    args = [sys.executable, "-m", "pkd", "train", "--resume", str(run.path), "--no-progress"]
    procs = [subprocess.Popen(args, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert "another process" in loser or "still running" in loser or "already done" in loser, loser
    epochs = [(r["stage"], r["student"], r["epoch"]) for r in run.metrics() if r["event"] == "epoch"]
    assert len(epochs) == len(set(epochs)) and run.state() == State.DONE


# ----------------------------------------------------------------------------------------------- clear states

def test_a_run_killed_between_creation_and_start_reads_as_died_and_resumes(tmp_path):
    path = tmp_path / "never-started"
    code = "import sys; from pkd.config import load_config; from pkd.runs import Run; " \
           "Run.create_at(sys.argv[1], load_config(sys.argv[2], sys.argv[3:]).to_dict())"
    subprocess.run([sys.executable, "-c", code, str(path), TINY, *FAST[:-1]], cwd=ROOT, env=child_env(), check=True)
    run = Run(path)
    assert run.state() == State.DIED  # its creator is gone: resumable, not "created" forever
    pkd_ok("train", "--resume", str(path), "--no-progress")
    assert run.state() == State.DONE and run.students_saved() == 2


def test_whoever_sees_the_manifest_finds_the_status_naming_the_process(tmp_path, monkeypatch):
    """The manifest is written last: pkd.launch returns when it appears, and a reader polling the run must then find
    status.json with the training process (a CI run once read the state between the two writes)."""
    import pkd.runs.writer as writer
    seen = {}
    real_write = writer.atomic_write_json

    def write_and_look(path, data, **kwargs):
        if Path(path).name == "manifest.json":
            seen["status"] = Run(Path(path).parent).status(raw=True)
        return real_write(path, data, **kwargs)

    monkeypatch.setattr(writer, "atomic_write_json", write_and_look)
    Run.create_at(tmp_path / "r", load_config(TINY).to_dict())
    assert seen["status"]["state"] == "created" and seen["status"]["pid"] > 0


def test_resuming_a_finished_run_is_refused_and_leaves_it_done(tiny_run, tmp_path):
    copy = Path(shutil.copytree(tiny_run.path, tmp_path / "done"))
    before = tree_digest(copy)
    one_line_error(pkd("train", "--resume", str(copy), "--no-progress"), "already done")
    assert tree_digest(copy) == before and Run(copy).state() == State.DONE


def test_an_edited_config_yaml_is_not_silently_ignored(tmp_path):
    run = killed_early_run(tmp_path)
    text = (run.path / "config.yaml").read_text()
    (run.path / "config.yaml").write_text(text.replace("alpha: 0.5", "alpha: 0.9"))
    one_line_error(pkd("train", "--resume", str(run.path), "--no-progress"), "config.yaml was changed")


def test_a_manifest_edited_under_saved_students_is_a_clear_error(tiny_run, tmp_path):
    """Weights saved under one config, manifest.json then edited: one line naming the file, no torch traceback."""
    copy = Path(shutil.copytree(tiny_run.path, tmp_path / "edited"))
    run = Run(copy)
    manifest = run.manifest()
    manifest["config"]["students"]["schedule"][0]["d_model"] = 12
    (copy / "manifest.json").write_text(__import__("json").dumps(manifest))
    (copy / "config.yaml").write_text(yaml.safe_dump(manifest["config"], sort_keys=False))
    (copy / "students" / "student_02.pt").unlink()
    run.write_status(state=State.STOPPED)
    one_line_error(pkd("train", "--resume", str(copy), "--no-progress"), "student_01.pt")
    one_line_error(pkd("eval", str(copy)), "student_01.pt")


# ----------------------------------------------------------------------------------------------- configs, names

def test_yaml_alias_bombs_are_refused_at_once(tmp_path):
    bomb = tmp_path / "laughs.yaml"
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    bomb.write_text("\n".join(lines) + "\n")
    assert bomb.stat().st_size < 1024
    started = time.monotonic()
    one_line_error(pkd("train", "--config", str(bomb), "--run-dir", str(tmp_path / "r")), "aliases")
    print(f"refused in {time.monotonic() - started:.1f} s (including interpreter start)")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("override, field", [
    ("distill.alpha=.nan", "distill.alpha"), ("students.optim.lr=.inf", "students.optim.lr"),
    ("distill.temperature=-.inf", "distill.temperature"),
    ("students.schedule=[{d_model: 8, optim: {lr: .nan}}]", "students.schedule[0].optim.lr"),
    ("teacher.params={width: .inf}", "teacher.params.width"),
])
def test_non_finite_numbers_are_refused_before_anything_is_created(tmp_path, override, field):
    one_line_error(pkd("train", "--config", TINY, "--run-dir", str(tmp_path / "r"), override), field, "finite")
    assert not (tmp_path / "r").exists()


def test_numbers_in_exponent_notation_are_numbers():
    """YAML 1.1 reads 5e-3 and 1e3 as text; numeric fields take them as the numbers they spell."""
    cfg = load_config(TINY, ["students.optim.lr=5e-3", "data.train_limit=1e3", "distill.temperature=4E0"])
    assert cfg.students.optim.lr == 0.005 and cfg.data.train_limit == 1000 and cfg.distill.temperature == 4.0
    with pytest.raises(ConfigError, match="data.train_limit: expected an integer"):
        load_config(TINY, ["data.train_limit=1.5e0"])


@pytest.mark.parametrize("name", ["-leading-dash", "née", "a" * 129, "a/b", "..", "a..b", "tab\there", ""])
def test_run_names_outside_the_rule_are_refused_with_the_rule(name):
    with pytest.raises(RunError, match="1 to 128 ASCII letters, digits, '-', '_' and '.', starting with a letter"):
        check_run_name(name)
    assert check_run_name("a" * 128) and check_run_name("mnist-quick_2.v1")
