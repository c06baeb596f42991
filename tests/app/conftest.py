from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.trained import pretrained_root


@pytest.fixture(scope="session")
def shipped_root(tmp_path_factory) -> Path:
    """Folder with the run the app opens on at `<folder>/mnist` (the real pretrained/ if it is there)."""
    return pretrained_root(tmp_path_factory)


@pytest.fixture
def app_env(monkeypatch, tmp_path, shipped_root) -> Path:
    """An empty runs folder for the app under test, and the shipped runs folder; returns the runs folder."""
    runs = tmp_path / "runs"
    runs.mkdir()
    monkeypatch.setenv("PKD_RUNS_DIR", str(runs))
    monkeypatch.setenv("PKD_PRETRAINED_DIR", str(shipped_root))
    return runs
