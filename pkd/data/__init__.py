"""Datasets as in-memory tensors: types, registry, batching. Importing it registers the built-in datasets' specs
(pkd.data.catalog: MNIST, Fashion-MNIST, CIFAR-10 and the Moving MNIST clips moving_mnist, moving_mnist_50k,
moving_mnist_b2n, moving_mnist_small, moving_mnist_small_b2n) without importing torch: a loader's module (which
does) is imported at its dataset's first ``load_split``, so reading a spec costs no torch import.

Shape letters: B batch, N examples, T frames, C channels, H/W height/width; a sample is (C, H, W) or (T, C, H, W).
"""

from pkd.data.batches import Batch, iterate_batches
from pkd.data.catalog import CIFAR10, FASHION_MNIST, MNIST, MOVING_MNIST
from pkd.data.registry import (
    DATA_DIR_ENV,
    DATASETS,
    SPLITS,
    LazySplits,
    built_splits,
    clear_cache,
    get_dataset_spec,
    load_split,
    register_builtin,
    register_dataset,
    resolve_data_root,
)
from pkd.data.spec import DatasetSpec, Split

__all__ = [
    "CIFAR10",
    "DATASETS",
    "DATA_DIR_ENV",
    "FASHION_MNIST",
    "MNIST",
    "MOVING_MNIST",
    "SPLITS",
    "Batch",
    "LazySplits",
    "DatasetSpec",
    "Split",
    "built_splits",
    "clear_cache",
    "get_dataset_spec",
    "iterate_batches",
    "load_split",
    "register_builtin",
    "register_dataset",
    "resolve_data_root",
]
