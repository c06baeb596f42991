"""Fashion-MNIST (Zalando: 28x28 grey photos of 10 kinds of clothes and shoes; train 55,000 / val 5,000 /
test 10,000) and the places it is read from.

Shape letters: N examples in a split. Sources, in order: the four original IDX files (plain or .gz) in
``<root>/FashionMNIST/raw`` (torchvision's layout) or ``<root>/fashion-mnist``, where ``root`` is the data
directory the user names (``data.root``, ``$PKD_DATA_DIR``); then Debian's package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist``); then torchvision's download into ``<root>/FashionMNIST/raw``.
Validation is the last 5,000 of the official 60,000 training images, fixed. Shapes, labels and the official
class counts (6,000 per class in train, 1,000 in test) are verified whatever the source: a damaged or foreign
file is refused with a one-line error that names it.
"""

from __future__ import annotations

import functools
import zipfile
from pathlib import Path

import numpy as np
import torch

from pkd.data.mnist import _find_raw, _read_idx, torchvision_download
from pkd.data.registry import DATA_DIR_ENV, LazySplits, check_labels
from pkd.data.spec import Split


FASHION_RAW_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")  # apt-get install dataset-fashion-mnist
ROOT_SUBDIRS = ("FashionMNIST/raw", "fashion-mnist")  # torchvision's layout, the Debian folder's name
FASHION_TRAIN_COUNT = 6_000  # per class, official 60k training set
FASHION_TEST_COUNT = 1_000  # per class, official 10k test set
FASHION_VAL_SIZE = 5_000  # the last 5,000 training images are the validation split
INSTALL_HINT = "apt-get install dataset-fashion-mnist"
SAMPLE_FILE = Path(__file__).with_name("fashion_mnist_sample.npz")  # shipped: 100 test images of each class

def _check_counts(labels: np.ndarray, per_class: int, path: Path) -> None:
    counts = np.bincount(labels, minlength=10)
    if not (counts == per_class).all():
        raise ValueError(f"{path}: labels have class counts {tuple(int(c) for c in counts)}, official "
                         f"Fashion-MNIST has {per_class} of each class; this is not the standard Fashion-MNIST")


def read_fashion_raw(raw_dir: Path) -> LazySplits:
    """The three splits from the four original IDX files in raw_dir (each plain or .gz), read and checked now; each
    split's float tensor is made when it is first asked for, from the uint8 pixels kept meanwhile (as MNIST's: the
    app shows test images with 55 MB of pixels and the 31 MB test tensor instead of all 220 MB of float tensors).

    Returns:
        {"train", "val", "test"} Splits: images (N, 1, 28, 28) float32 k/255, labels (N,) int64.
    """
    paths = {key: _find_raw(raw_dir, stem) for key, stem in FASHION_RAW_FILES.items()}
    missing = [FASHION_RAW_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        raise FileNotFoundError(f"{raw_dir} has only part of the Fashion-MNIST files: missing {', '.join(missing)} "
                                "(plain or .gz); add them or move the folder away")
    x_train = _read_idx(paths["train_images"], (60_000, 28, 28), "Fashion-MNIST")
    y_train = check_labels(_read_idx(paths["train_labels"], (60_000,), "Fashion-MNIST"), 60_000, 10,
                           str(paths["train_labels"]))
    x_test = _read_idx(paths["test_images"], (10_000, 28, 28), "Fashion-MNIST")
    y_test = check_labels(_read_idx(paths["test_labels"], (10_000,), "Fashion-MNIST"), 10_000, 10,
                          str(paths["test_labels"]))
    _check_counts(y_train, FASHION_TRAIN_COUNT, paths["train_labels"])
    _check_counts(y_test, FASHION_TEST_COUNT, paths["test_labels"])
    t = 60_000 - FASHION_VAL_SIZE
    parts = {"train": (x_train[:t], y_train[:t]), "val": (x_train[t:], y_train[t:]), "test": (x_test, y_test)}

    def make(split: str) -> Split:
        x, y = parts[split]
        return Split(torch.from_numpy(x).unsqueeze(1).to(torch.float32).div_(255.0),  # (N, 1, 28, 28)
                     torch.from_numpy(y), "fashion_mnist", split)

    return LazySplits({split: functools.partial(make, split) for split in parts})


def load_test_sample(path: Path = SAMPLE_FILE) -> tuple[Split, torch.Tensor]:
    """The 1,000 test images shipped with pkd (the first 100 of each class, in test order; 0.4 MB), for the
    Playground when the dataset itself is not installed: read without pickle and checked like the full files.

    Returns:
        (Split of the images (1000, 1, 28, 28) and labels (1000,), test split "test"), and their indices in the
        official 10,000-image test set (1000,) int64.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            images, labels, index = npz["images"], npz["labels"], npz["index"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not pkd's Fashion-MNIST sample ({exc}); reinstall pkd") from None
    n = len(labels)
    if images.dtype != np.uint8 or images.shape != (n, 28, 28) or index.shape != (n,) or index.dtype.kind not in "iu" \
            or (n and (index.min() < 0 or index.max() >= 10_000)):
        raise ValueError(f"{path}: expected uint8 images (N, 28, 28) with N labels and test indices, got "
                         f"{images.dtype} {images.shape}, {index.dtype} {index.shape}")
    y = torch.from_numpy(check_labels(labels, n, 10, str(path)))
    x = torch.from_numpy(images).unsqueeze(1).to(torch.float32).div_(255.0)  # (N, 1, 28, 28)
    return Split(x, y, "fashion_mnist", "test"), torch.from_numpy(index.astype(np.int64))


def find_fashion_dir(root: Path) -> Path | None:
    """The first folder holding any of the original files: under root (as named), else Debian's; None if none."""
    for folder in [root / sub for sub in ROOT_SUBDIRS] + [DEBIAN_DIR]:
        if any(_find_raw(folder, stem) for stem in FASHION_RAW_FILES.values()):
            return folder
    return None


def download_fashion_torchvision(root: Path) -> Path:
    """Let torchvision download the four original files into root/FashionMNIST/raw (needs internet)."""
    from torchvision.datasets import FashionMNIST

    return torchvision_download(FashionMNIST, root)


def load_fashion_mnist(root: Path) -> LazySplits:
    """The loader of Fashion-MNIST (pkd.data.catalog names it): root's files, else Debian's, else torchvision's
    download into root."""
    folder = find_fashion_dir(root)
    if folder is not None:
        return read_fashion_raw(folder)
    try:
        return read_fashion_raw(download_fashion_torchvision(root))
    except (OSError, RuntimeError, ImportError) as exc:
        why = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
    raise FileNotFoundError(
        f"Fashion-MNIST is not in {root / ROOT_SUBDIRS[0]} nor {DEBIAN_DIR} and could not be downloaded ({why}); "
        f"run `{INSTALL_HINT}` (Debian/Ubuntu), or put train-images-idx3-ubyte.gz etc. in "
        f"{root / ROOT_SUBDIRS[0]} (or set {DATA_DIR_ENV})"
    )
