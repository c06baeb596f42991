"""CIFAR-10 (32x32 colour photos of 10 classes) from the python version's batches in ``cifar-10-batches-py/``.

Shape letters: N examples in a split. train = the first 9/10 of data_batch_1..5 (45,000), val = the last 1/10
(5,000), test = test_batch (10,000). Batches are read with the restricted unpickler; torchvision downloads the
archive when the folder is absent.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pkd.data.catalog import CIFAR10
from pkd.data.registry import DATA_DIR_ENV, check_labels
from pkd.data.safe_pickle import restricted_load
from pkd.data.spec import Split

logger = logging.getLogger(__name__)

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_FILES = (*CIFAR10_TRAIN_FILES, "test_batch", "batches.meta")
CIFAR10_VAL_FRACTION = 10  # the last 1/10 of the training batches (5,000 of 50,000) is the validation split

def _text(value: Any) -> Any:
    return value.decode("latin1") if isinstance(value, bytes) else value


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: a dict with 'data' uint8 (n, 3072) and 'labels' (n ints in 0..9)."""
    obj = restricted_load(path)
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict with 'data' and 'labels', got {type(obj).__name__}")
    batch = {_text(k): v for k, v in obj.items()}
    if "data" not in batch or "labels" not in batch:
        raise ValueError(f"{path}: expected keys 'data' and 'labels', got {sorted(map(str, batch))}")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{path}: 'data' must be uint8 rows of 3x32x32 = 3072 values, got {got}")
    labels = batch["labels"]
    if isinstance(labels, list) and all(isinstance(v, int) for v in labels):
        labels = np.asarray(labels, dtype=np.int64)
    if not isinstance(labels, np.ndarray):
        raise ValueError(f"{path}: 'labels' must be a list of ints, got {type(labels).__name__}")
    return data.reshape(-1, 3, 32, 32), check_labels(labels, len(data), 10, str(path))


def download_cifar10_torchvision(root: Path) -> None:
    """Download and unpack the official archive (md5-checked) into root; needs internet."""
    from torchvision.datasets import CIFAR10 as TorchvisionCIFAR10
    from torchvision.datasets.utils import download_and_extract_archive

    out = io.StringIO()
    with contextlib.redirect_stdout(out):  # torchvision prints its progress
        try:
            download_and_extract_archive(TorchvisionCIFAR10.url, str(root), filename=TorchvisionCIFAR10.filename,
                                         md5=TorchvisionCIFAR10.tgz_md5)
        finally:
            logger.info("torchvision: %s", " | ".join(out.getvalue().split("\n"))[:2000])


def _cifar10_folder(root: Path) -> Path:
    """root/cifar-10-batches-py, downloaded if absent, with every file present and CIFAR-10's label names."""
    folder = root / CIFAR10_DIR
    if not folder.exists():
        try:
            logger.info("CIFAR-10 not in %s; downloading it (163 MB)", root)
            download_cifar10_torchvision(root)
        except (OSError, RuntimeError, ImportError) as exc:
            error = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            raise FileNotFoundError(
                f"CIFAR-10 is not in {folder} and could not be downloaded ({error}); unpack the python version "
                "(https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz) there, or set "
                f"{DATA_DIR_ENV} to a directory that holds {CIFAR10_DIR}/"
            ) from None
    missing = [name for name in CIFAR10_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {', '.join(missing)}; it needs {', '.join(CIFAR10_FILES)}")
    meta = restricted_load(folder / "batches.meta")
    names = tuple(_text(n) for n in meta.get("label_names", meta.get(b"label_names", ()))) \
        if isinstance(meta, dict) else ()
    if names != CIFAR10.class_names:
        raise ValueError(f"{folder / 'batches.meta'}: label_names {names} are not CIFAR-10's {CIFAR10.class_names}")
    return folder


def _check_cifar10_counts(folder: Path, y_train: np.ndarray, y_test: np.ndarray) -> None:
    """The full-size set must have 5,000 training and 1,000 test images per class; other sizes get a warning."""
    if len(y_train) == 50_000 and len(y_test) == 10_000:
        for labels, n_per_class, part in ((y_train, 5000, "training batches"), (y_test, 1000, "test_batch")):
            counts = np.bincount(labels, minlength=10)
            if not (counts == n_per_class).all():
                raise ValueError(f"{folder}: {part} have class counts {counts.tolist()}, CIFAR-10 has "
                                 f"{n_per_class} per class")
    else:
        logger.warning("%s holds %d training and %d test images, not the standard 50,000 and 10,000",
                       folder, len(y_train), len(y_test))


def load_cifar10(root: Path) -> dict[str, Split]:
    """The loader of CIFAR-10 (pkd.data.catalog names it), from root/cifar-10-batches-py: train = first 9/10 of
    data_batch_1..5, val = last 1/10."""
    folder = _cifar10_folder(root)
    parts = [_read_cifar_batch(folder / name) for name in CIFAR10_TRAIN_FILES]
    x_train = np.concatenate([p[0] for p in parts])  # (50000, 3, 32, 32)
    y_train = np.concatenate([p[1] for p in parts])
    x_test, y_test = _read_cifar_batch(folder / "test_batch")
    n_val = len(x_train) // CIFAR10_VAL_FRACTION
    if n_val < 1 or len(x_test) < 1:
        raise ValueError(f"{folder}: needs at least {CIFAR10_VAL_FRACTION} training and 1 test image, "
                         f"got {len(x_train)} and {len(x_test)}")
    _check_cifar10_counts(folder, y_train, y_test)

    def make(x: np.ndarray, y: np.ndarray, split: str) -> Split:
        images = torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32).div_(255.0)  # (N, 3, 32, 32)
        return Split(images, torch.from_numpy(y), "cifar10", split)

    t = len(x_train) - n_val
    return {"train": make(x_train[:t], y_train[:t], "train"), "val": make(x_train[t:], y_train[t:], "val"),
            "test": make(x_test, y_test, "test")}
