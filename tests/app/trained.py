"""One trained run per test session for the app and browser tests: the shipped pretrained/mnist when it exists,
else the tiny config trained once into a temporary folder (so the suite is green either way)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "pretrained" / "mnist"
TINY_CONFIG = ROOT / "configs" / "tiny.yaml"
_CACHE: dict[str, Path] = {}


def train_tiny(run_dir: Path, timeout: float = 900) -> Path:
    """Train configs/tiny.yaml into exactly run_dir with the CLI (no kernel build); returns run_dir."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "pkd", "train", "--config", str(TINY_CONFIG), "--run-dir",
                           str(run_dir), "--no-progress", "--no-kernel-build"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"training the tiny config failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return run_dir


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
