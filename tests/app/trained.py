"""One trained run per test session for the app and browser tests: the shipped pretrained/mnist when it exists,
else the tiny config trained once into a temporary folder (so the suite is green either way)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.pkd_process import train_tiny

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "pretrained" / "mnist"
TINY_CONFIG = ROOT / "configs" / "tiny.yaml"
_CACHE: dict[str, Path] = {}


def pretrained_root(tmp_path_factory) -> Path:
    """A folder holding the run the app should open on, as `<folder>/mnist` (read it, never write to it)."""
    if "root" not in _CACHE:
        if (SHIPPED / "manifest.json").is_file() and (SHIPPED / "summary.json").is_file():
            _CACHE["root"] = SHIPPED.parent
        else:
            root = tmp_path_factory.mktemp("pretrained")
            train_tiny(root / "mnist")
            _CACHE["root"] = root
    return _CACHE["root"]


def copy_run(src: Path, runs_dir: Path, name: str) -> Path:
    """Copy a run directory into runs_dir under a new name (weights and results only; no console/log)."""
    dst = runs_dir / name
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoint.pt", "*.log"))
    return dst
