"""A run's weights (pkd/runs/weights.py): the resume checkpoint and the saved students."""

import torch

from pkd.runs import Run

CONFIG = {"name": "t", "seed": 3, "data": {"dataset": "mnist"}, "distill": {"mode": "residual"},
          "students": {"schedule": [{"d_model": 4}]}}


def test_corrupt_checkpoint_falls_back(tmp_path):
    run = Run.create(tmp_path, "t", CONFIG)
    run.save_checkpoint({"epoch": 1})
    assert run.load_checkpoint()["epoch"] == 1
    (run.path / "checkpoint.pt").write_bytes(b"PK\x03\x04truncated")
    assert run.load_checkpoint() is None


def test_students_beyond_k_are_ignored(tmp_path):
    """A run of K students lists, stamps and loads students 1..K only, whatever else lies in students/."""
    run = Run.create(tmp_path, "t", CONFIG)  # K = 1
    for k in (1, 2, 3):
        run.save_student(k, {"w": torch.ones(1)}, {"arch": "mamba", "params": {}})
    run.student_path(4).write_bytes(b"garbage")
    assert run.students_planned() == 1 and run.students_saved() == 1
    assert run.weights_files() == [run.student_path(1)]
