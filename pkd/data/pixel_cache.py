"""A uint8 copy of the genuine mnist.pkl.gz's pixels in pkd's cache folder (pkd.cache), read instead of the file.

Every process that trains, evaluates or serves on MNIST read the 17 MB gzip pickle of 220 MB float32 pixels again:
1.1-1.2 s of CPU on a 2-core EPYC, most of a small training's start and of every test that starts `python -m pkd`.
The copy (numpy's uncompressed .npz, no pickles: 55 MB of uint8 pixels and the labels) reads in a few ms. Only the
official file is copied, known by its size and sha256 (MNIST_PKL_SHA256: 14 ms of CPU to check on a 2-core EPYC):
any other file is read as it is, every time, with all of its checks. A copy that is missing, damaged or of other
shapes is ignored and written again; a cache folder that cannot be written only costs the speed.

Shapes: per split (N, 28, 28) uint8 pixels k (the pixel is k/255) and (N,) int64 labels; N = 50,000 / 10,000 /
10,000 for train / val / test.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from pkd.cache import cache_root

logger = logging.getLogger(__name__)

SPLIT_SIZES = {"train": 50_000, "val": 10_000, "test": 10_000}  # mnist.pkl.gz's (train, valid, test), in its order
Parts = dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (pixels (N, 28, 28) uint8, labels (N,) int64)


def copy_path(sha256: str) -> Path:
    """Where the copy of the file with this sha256 lives: <cache>/mnist-uint8-<first 16 hex digits>.npz."""
    return cache_root() / f"mnist-uint8-{sha256[:16]}.npz"


def read_copy(sha256: str) -> Parts | None:
    """The copy's splits, or None when there is none or it is not exactly what write_copy wrote."""
    path = copy_path(sha256)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            parts = {split: (saved[f"{split}_x"], saved[f"{split}_y"]) for split in SPLIT_SIZES}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        logger.info("%s: unreadable (%s); reading mnist.pkl.gz instead", path, exc)
        return None
    for split, n in SPLIT_SIZES.items():
        x, y = parts[split]
        if x.dtype != np.uint8 or x.shape != (n, 28, 28) or y.dtype != np.int64 or y.shape != (n,):
            logger.info("%s: %s is not (%d, 28, 28) uint8 + (%d,) int64; reading mnist.pkl.gz instead", path, split,
                        n, n)
            return None
    return parts


def write_copy(sha256: str, parts: Parts) -> None:
    """Save the splits for read_copy, atomically (a temporary file renamed over the copy); an unwritable cache folder
    is logged and skipped."""
    path = copy_path(sha256)
    arrays = {}
    for split in SPLIT_SIZES:
        x, y = parts[split]
        arrays[f"{split}_x"], arrays[f"{split}_y"] = np.ascontiguousarray(x, np.uint8), np.asarray(y, np.int64)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".mnist-", suffix=".npz")
    except OSError as exc:
        logger.info("cannot keep MNIST's uint8 copy in %s (%s); mnist.pkl.gz is read each time", path.parent, exc)
        return
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        logger.info("cannot keep MNIST's uint8 copy in %s (%s); mnist.pkl.gz is read each time", path.parent, exc)


def is_file_with(path: Path, size: int, sha256: str) -> bool:
    """Whether `path` is a regular file of exactly `size` bytes and this sha256 (anything else, or a file that cannot
    be read, is not: the caller reads it the slow way and reports what is wrong with it)."""
    try:
        if not path.is_file() or path.stat().st_size != size:
            return False
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return False
    return digest.hexdigest() == sha256
