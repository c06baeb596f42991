"""`pkd sweep`'s search space: hostile spaces stopped before any training, in the library and on the CLI."""

from __future__ import annotations

import pytest

from pkd.config import ConfigError
from pkd.sweep import SweepError
from pkd.sweep.study import open_sweep
from tests.pkd_process import TINY, pkd
from tests.sweep.sweeping import FAST, env, write_space

HOSTILE = {
    "unknown-section": ({"parms": {}}, r"unknown key 'parms'"),
    "unknown-field": ({"params": {"distill.alfa": [0.1]}}, r"params\.distill\.alfa: unknown config key"),
    "teacher-field": ({"params": {"teacher.optim.epochs": [1, 2]}}, r"params\.teacher\.optim\.epochs.*cannot be searched"),
    "empty-range": ({"params": {"distill.alpha": {"low": 0.9, "high": 0.1}}}, r"params\.distill\.alpha: empty range"),
    "no-choices": ({"schedule": {"d_model": []}}, r"schedule\.d_model: an empty list of choices"),
    "wrong-type": ({"params": {"distill.temperature": ["hot", 2]}}, r"params\.distill\.temperature\[0\]: expected a number"),
    "range-on-text": ({"params": {"distill.mode": {"low": 1, "high": 2}}}, r"params\.distill\.mode: a str field"),
    "out-of-config-range": ({"params": {"distill.alpha": {"low": 0.5, "high": 1.5}}},
                            r"params\.distill\.alpha: 1\.5 is not allowed: distill\.alpha: 1\.5 must lie in \[0, 1\]"),
    "too-many-students": ({"schedule": {"students": {"low": 1, "high": 40}}}, r"schedule\.students: .*at most 32"),
    "too-wide": ({"schedule": {"d_model": [8, 4096]}}, r"schedule\.d_model: the largest students .*d_model.*4096"),
    "too-many-parameters": ({"schedule": {"d_model": [8, 1024], "n_layers": {"low": 1, "high": 32}}},
                            r"space schedule: the largest students it allows \(d_model 1024, n_layers 32\).*"
                            r"parameters exceed the maximum"),
    "searches-nothing": ({}, r"searches nothing"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_space_is_refused_before_anything_is_created(tmp_path, name):
    space, message = HOSTILE[name]
    folder = tmp_path / "sweep"
    with pytest.raises((SweepError, ConfigError), match=message):
        open_sweep(folder, TINY, write_space(tmp_path, space), FAST)
    assert not folder.exists()


def test_cli_refuses_an_oversized_space_in_one_line_before_training(tmp_path):
    space = write_space(tmp_path, HOSTILE["too-many-parameters"][0])
    runs = tmp_path / "runs"
    proc = pkd("sweep", "--config", TINY, "--space", str(space), "--trials", "2", "--runs-dir", str(runs), *FAST,
               env=env(), timeout=300)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: space schedule: the largest students") and "n_layers 32" in line, proc.stderr
    assert not runs.exists() or not any(runs.iterdir())

