"""The one way tests run pkd as a user does: `python -m pkd ...` in a real subprocess from the repository root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.yaml")
TIMEOUT = 600


def child_env(**extra: str) -> dict:
    """This process's environment without test-only switches (fault injection, forced scan backend)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PKD_FAULT", "PKD_SCAN_BACKEND")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def pkd(*args: str, env: dict | None = None, prefix: list[str] | None = None, check: bool = False,
        timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """Run `python -m pkd ARGS` to completion; with check, a non-zero exit fails the test with its output."""
    proc = subprocess.run([*(prefix or []), sys.executable, "-m", "pkd", *args], cwd=ROOT, env=env or child_env(),
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"pkd {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def pkd_ok(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """`pkd(...)` that must succeed."""
    return pkd(*args, check=True, **kwargs)


def start(*args: str, env: dict | None = None) -> subprocess.Popen:
    """Start `python -m pkd ARGS` in the background (output discarded)."""
    return subprocess.Popen([sys.executable, "-m", "pkd", *args], cwd=ROOT, env=env or child_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def train_tiny(run_dir: Path, *overrides: str, timeout: float = 900) -> Path:
    """Train configs/tiny.yaml into exactly run_dir (no kernel build); returns run_dir."""
    pkd_ok("train", "--config", TINY, "--run-dir", str(run_dir), "--no-progress", "--no-kernel-build", *overrides,
           timeout=timeout)
    return run_dir
