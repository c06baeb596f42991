"""Shared pieces of the sweep tests: a fast tiny base, a small space, waiting for sweep processes."""

from __future__ import annotations

import json
import time
from pathlib import Path

from pkd.sweep import Sweep
from tests.pkd_process import ROOT, child_env

SHIPPED_TEACHER = ROOT / "pretrained" / "mnist" / "teacher.pt"
FAST = ["data.train_limit=256", "data.val_limit=128", "data.test_limit=128", "teacher.optim.epochs=1",
        "students.optim.epochs=1", "students.optim.batch_size=64"]
SPACE = {"params": {"distill.alpha": {"low": 0.2, "high": 0.8}},
         "schedule": {"students": {"low": 1, "high": 2}, "d_model": [4, 8]}}
TIMEOUT = 420


def write_space(tmp_path: Path, space: dict, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(space))  # JSON is YAML
    return path


def env() -> dict:
    return child_env(OMP_NUM_THREADS="1")  # several trainings at once on a shared 2-core machine


def study_trials(folder: Path) -> list:
    return Sweep(folder).study().get_trials(deepcopy=False)


def wait_for(condition, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def consoles(folder: Path) -> str:
    """Every trial's console log, for a failure message."""
    return "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in sorted(folder.glob("*/console.log")))

