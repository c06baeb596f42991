"""The dataset registry: specs and loaders by name, the data directory, and cached, checked loading of splits.
(The specs by name, DATASETS and get_dataset_spec, live in pkd.data.spec beside the types, so that Split.spec
reads them without importing this module.)

The built-in datasets (pkd.data.catalog) register their specs with ``register_builtin`` and name their loaders
("module:function"), imported at the first ``load_split`` of the dataset: a spec is read without importing torch.

Shape letters: N examples in a split. A loader maps the data directory to {"train", "val", "test"} Splits (a dict,
or LazySplits that build a split only when it is asked for: the app shows test clips without making the 50,000
train clips); each split it returns is checked here against its spec, whoever wrote it.

Data directory: an explicit ``root`` argument, else ``$PKD_DATA_DIR``, else ``$XDG_CACHE_HOME/pkd/data``
(``~/.cache/pkd/data``). Loaders only read files found there; downloads go next to them atomically.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np

from pkd.data.spec import DATASETS, DatasetSpec, Split, get_dataset_spec

SPLITS = ("train", "val", "test")
DATA_DIR_ENV = "PKD_DATA_DIR"

Loader = Callable[[Path], Mapping[str, Split]]
LOADERS: dict[str, Loader] = {}  # by dataset name, beside its spec in DATASETS (pkd.data.spec)
BUILTIN_LOADERS: dict[str, str] = {}  # a built-in dataset's name -> "module:function" of its loader (imported lazily)


class LazySplits(Mapping[str, Split]):
    """{"train", "val", "test"} -> Split, each built by its function on first access and kept.

    A loader returns this when its splits are costly and independent (generated clips), so that `load_split(name,
    "test")` builds the test split alone.
    """

    def __init__(self, builders: Mapping[str, Callable[[], Split]]) -> None:
        self._builders = dict(builders)
        self._built: dict[str, Split] = {}
        self._lock = threading.Lock()  # the app's sessions are threads: a split is built once

    def __getitem__(self, split: str) -> Split:
        with self._lock:
            if split not in self._built:
                self._built[split] = self._builders[split]()
            return self._built[split]

    def __iter__(self) -> Iterator[str]:
        return iter(self._builders)

    def __len__(self) -> int:
        return len(self._builders)

    def built(self) -> tuple[str, ...]:
        """The splits built so far."""
        return tuple(self._built)


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


def register_builtin(spec: DatasetSpec, loader: str) -> DatasetSpec:
    """Register a built-in dataset's spec now and its loader by name, "module:function", imported at the dataset's
    first ``load_split`` (its module imports torch, which reading a spec should not). Returns ``spec``."""
    if spec.name in DATASETS:
        raise ValueError(f"dataset '{spec.name}' is already registered")
    DATASETS[spec.name] = spec
    BUILTIN_LOADERS[spec.name] = loader
    return spec


def _loader(name: str) -> Loader:
    """The loader of a registered dataset, a built-in one's imported from its module on first use."""
    if name not in LOADERS:
        module, _, function = BUILTIN_LOADERS[name].partition(":")
        LOADERS[name] = getattr(importlib.import_module(module), function)
    return LOADERS[name]


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
    part = _load_dataset(name, str(resolve_data_root(root)))[split]
    if tuple(part.inputs.shape[1:]) != DATASETS[name].sample_shape or part.dataset != name or part.split != split:
        raise ValueError(f"loader for '{name}' returned a bad {split} split: {tuple(part.inputs.shape)}")
    return part


def built_splits(name: str, root: str | os.PathLike[str] | None = None) -> tuple[str, ...]:
    """The splits of a dataset this process holds in memory (all three once an eager loader has run; those asked
    for when its loader returns LazySplits; none before the first ``load_split``)."""
    splits = _CACHE.get((name, str(resolve_data_root(root))))
    if splits is None:
        return ()
    return splits.built() if isinstance(splits, LazySplits) else tuple(splits)


CACHED_DATASETS = 4  # datasets kept loaded per process, least recently used dropped first
_CACHE: OrderedDict[tuple[str, str], Mapping[str, Split]] = OrderedDict()  # (name, data root) -> its splits
_CACHE_LOCK = threading.RLock()  # re-entrant: a loader may load another dataset (clips are made from MNIST)


def _load_dataset(name: str, root: str) -> Mapping[str, Split]:
    key = (name, root)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = _loader(name)(Path(root))
            while len(_CACHE) > CACHED_DATASETS:
                _CACHE.popitem(last=False)
        _CACHE.move_to_end(key)
        return _CACHE[key]


def clear_cache() -> None:
    """Forget every split loaded so far (the next ``load_split`` reads the files again)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def check_labels(labels: np.ndarray, n: int, num_classes: int, where: str) -> np.ndarray:
    """For loaders: ``labels`` must be n integers in 0..num_classes-1; returns them as int64 (n,)."""
    if not isinstance(labels, np.ndarray) or labels.shape != (n,) or labels.dtype.kind not in "iu":
        got = f"{labels.dtype} {labels.shape}" if isinstance(labels, np.ndarray) else type(labels).__name__
        raise ValueError(f"{where}: labels must be an integer array of shape ({n},), got {got}")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{where}: labels must lie in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}")
    return labels.astype(np.int64)
