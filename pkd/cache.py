"""pkd's own cache folder: `$PKD_CACHE_DIR`, default `~/.cache/pkd`. It holds what pkd can make again from checked
sources (onnxruntime-web's files for exported pages, pkd.web.runtime; MNIST's pixels as uint8,
pkd.data.pixel_cache), never a user's runs or data."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "PKD_CACHE_DIR"


def cache_root() -> Path:
    """$PKD_CACHE_DIR, else ~/.cache/pkd (not created here)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "pkd").expanduser()
