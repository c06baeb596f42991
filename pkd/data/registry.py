"""The dataset registry: specs and loaders by name, the data directory, and cached, checked loading of splits.
(The specs by name, DATASETS and get_dataset_spec, live in pkd.data.spec beside the types, so that Split.spec
reads them without importing this module.)

Shape letters: N examples in a split. A loader maps the data directory to {"train", "val", "test"} Splits; what
it returns is checked here once against its spec, whoever wrote it.

Data directory: an explicit ``root`` argument, else ``$PKD_DATA_DIR``, else ``$XDG_CACHE_HOME/pkd/data``
(``~/.cache/pkd/data``). Loaders only read files found there; downloads go next to them atomically.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pkd.data.spec import DATASETS, DatasetSpec, Split, get_dataset_spec

SPLITS = ("train", "val", "test")
DATA_DIR_ENV = "PKD_DATA_DIR"

Loader = Callable[[Path], dict[str, Split]]
LOADERS: dict[str, Loader] = {}  # by dataset name, beside its spec in DATASETS (pkd.data.spec)


def register_dataset(spec: DatasetSpec) -> Callable[[Loader], Loader]:
    """Decorator registering ``loader(root) -> {"train": Split, "val": ..., "test": ...}`` under spec.name.

    Args:
        spec: the dataset's spec; its name must not be registered yet.

    Returns:
        A decorator that registers the loader and returns it unchanged.
    """
    if spec.name in DATASETS:
        raise ValueError(f"dataset '{spec.name}' is already registered")

    def decorator(loader: Loader) -> Loader:
        DATASETS[spec.name] = spec
        LOADERS[spec.name] = loader
        return loader

    return decorator


def resolve_data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: ``root`` if given, else ``$PKD_DATA_DIR``, else ``$XDG_CACHE_HOME/pkd/data``."""
    if root is None:
        root = os.environ.get(DATA_DIR_ENV) or None
    if root is None:
        cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        root = Path(cache) / "pkd" / "data"
    return Path(root).expanduser().resolve()


def load_split(name: str, split: str, root: str | os.PathLike[str] | None = None) -> Split:
    """Load one split of a registered dataset (cached in-process per dataset and data directory).

    Args:
        name: registered dataset name, e.g. "mnist" or "cifar10".
        split: "train", "val" or "test".
        root: data directory; see ``resolve_data_root``.

    Returns:
        The split: inputs (N, *sample_shape) float32 in [0, 1], labels (N,) int64.
    """
    get_dataset_spec(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; choose one of: {', '.join(SPLITS)}")
    return _load_dataset(name, str(resolve_data_root(root)))[split]


@functools.lru_cache(maxsize=4)
def _load_dataset(name: str, root: str) -> dict[str, Split]:
    splits = LOADERS[name](Path(root))
    spec = DATASETS[name]
    for split in SPLITS:  # loaders are checked here once, whoever wrote them
        part = splits[split]
        if tuple(part.inputs.shape[1:]) != spec.sample_shape or part.dataset != name or part.split != split:
            raise ValueError(f"loader for '{name}' returned a bad {split} split: {tuple(part.inputs.shape)}")
    return splits


def clear_cache() -> None:
    """Forget every split loaded so far (the next ``load_split`` reads the files again)."""
    _load_dataset.cache_clear()


def check_labels(labels: np.ndarray, n: int, num_classes: int, where: str) -> np.ndarray:
    """For loaders: ``labels`` must be n integers in 0..num_classes-1; returns them as int64 (n,)."""
    if not isinstance(labels, np.ndarray) or labels.shape != (n,) or labels.dtype.kind not in "iu":
        got = f"{labels.dtype} {labels.shape}" if isinstance(labels, np.ndarray) else type(labels).__name__
        raise ValueError(f"{where}: labels must be an integer array of shape ({n},), got {got}")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{where}: labels must lie in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}")
    return labels.astype(np.int64)
