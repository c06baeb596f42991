"""A sweep's shared teacher: a run that references a teacher file (teacher-ref.json) instead of copying it."""

from __future__ import annotations

import shutil

import pytest

from pkd.runs import Run, RunError
from tests.sweep.sweeping import SHIPPED_TEACHER


# ------------------------------------------------------------------------------------------------ the shared teacher

@pytest.mark.skipif(not SHIPPED_TEACHER.is_file(), reason="needs the shipped teacher pretrained/mnist/teacher.pt")
def test_a_referenced_teacher_that_changed_or_vanished_is_refused_in_one_line(tmp_path):
    teacher = tmp_path / "shared" / "teacher.pt"
    teacher.parent.mkdir()
    shutil.copy(SHIPPED_TEACHER, teacher)
    run = Run.create_at(tmp_path / "run", {"name": "x", "teacher": {"arch": "mnist_cnn"}})
    run.reference_teacher(teacher)
    assert run.has_teacher() and run.teacher_path() == teacher.resolve()
    assert run.load_teacher()["spec"]["arch"] == "mnist_cnn"
    moved = tmp_path / "moved"
    shutil.copytree(run.path, moved)  # a copy on the same machine still finds it (absolute path)
    assert Run(moved).teacher_path() == teacher.resolve()
    with teacher.open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(RunError, match=r"teacher-ref\.json: the shared teacher .* changed after"):
        run.load_teacher()
    teacher.unlink()
    with pytest.raises(RunError, match=r"teacher-ref\.json: the shared teacher .* is missing"):
        run.load_teacher()
    with pytest.raises(RunError, match="not a pkd"):
        Run.create_at(tmp_path / "other", {"name": "y"}).reference_teacher(tmp_path / "run" / "manifest.json")
