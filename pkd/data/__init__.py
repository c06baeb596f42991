"""Datasets as in-memory tensors: types, registry, batching; importing it registers MNIST, Fashion-MNIST, CIFAR-10
and the Moving MNIST clips (moving_mnist, moving_mnist_50k, moving_mnist_b2n, moving_mnist_small, moving_mnist_small_b2n).

Shape letters: B batch, N examples, T frames, C channels, H/W height/width; a sample is (C, H, W) or (T, C, H, W).
"""

from pkd.data import mnist, cifar10, moving_mnist, fashion_mnist  # noqa: F401, I001 - importing them registers the datasets, MNIST first
from pkd.data.batches import Batch, iterate_batches
from pkd.data.cifar10 import CIFAR10
from pkd.data.fashion_mnist import FASHION_MNIST
from pkd.data.mnist import MNIST
from pkd.data.moving_mnist import MOVING_MNIST
from pkd.data.registry import (
    DATA_DIR_ENV,
    DATASETS,
    SPLITS,
    LazySplits,
    built_splits,
    clear_cache,
    get_dataset_spec,
    load_split,
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
    "register_dataset",
    "resolve_data_root",
]
