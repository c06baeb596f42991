"""Tests for pkd.data.fashion_mnist on Zalando's real files (Debian's dataset-fashion-mnist, which .ci/run installs)
and on damaged or foreign copies of them in a user-named data directory."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from pkd import data
from pkd.data import fashion_mnist as fm
from tests.data.helpers import no_download, offline

# The first test image (an ankle boot) as 784 uint8 pixels, and the official labels the test file starts with.
FIRST_TEST_SHA256 = "ffc7351ed0f8bae542820866086177fa4e0b366b97bf9d998dffdb8dbe138787"
FIRST_TEST_LABELS = [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]

needs_debian = pytest.mark.skipif(
    not fm.DEBIAN_DIR.is_dir() and not os.environ.get("PKD_REQUIRE_FASHION"),
    reason=f"Fashion-MNIST files absent: {fm.INSTALL_HINT}")


def _write_idx(path: Path, array: np.ndarray) -> None:
    payload = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + \
        array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload, compresslevel=1) if path.suffix == ".gz" else payload)


@needs_debian
def test_reader_on_the_real_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_download(monkeypatch)  # an empty data directory: the Debian files are read, nothing is downloaded
    splits = {s: data.load_split("fashion_mnist", s, tmp_path) for s in data.SPLITS}
    assert [len(splits[s]) for s in data.SPLITS] == [55_000, 5_000, 10_000]
    test = splits["test"]
    assert np.bincount(test.labels.numpy()).tolist() == [1_000] * 10
    train_val = torch.cat([splits["train"].labels, splits["val"].labels])
    assert np.bincount(train_val.numpy()).tolist() == [6_000] * 10
    assert test.labels[:10].tolist() == FIRST_TEST_LABELS
    pixels = (test.inputs[0, 0] * 255).round().to(torch.uint8).numpy()
    assert hashlib.sha256(pixels.tobytes()).hexdigest() == FIRST_TEST_SHA256
    assert test.inputs.dtype == torch.float32 and 0.0 <= float(test.inputs.min()) and float(test.inputs.max()) == 1.0
    spec = test.spec
    assert spec.class_names[int(test.labels[0])] == "Ankle boot" and spec.hflip
    mean = float(splits["train"].inputs.mean())
    assert abs(mean - spec.mean[0]) < 0.002  # the spec's normalisation is this data's
    data.clear_cache()



@needs_debian
def test_the_test_split_alone_is_made_in_floats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app shows test images: asking for them makes the 31 MB test tensor, not all 220 MB of float splits."""
    no_download(monkeypatch)
    data.clear_cache()
    test = data.load_split("fashion_mnist", "test", tmp_path)
    assert data.built_splits("fashion_mnist", tmp_path) == ("test",) and len(test) == 10_000
    assert data.load_split("fashion_mnist", "test", tmp_path) is test  # made once
    assert len(data.load_split("fashion_mnist", "val", tmp_path)) == 5_000
    assert data.built_splits("fashion_mnist", tmp_path) == ("test", "val")
    data.clear_cache()

@needs_debian
def test_a_user_named_root_comes_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_download(monkeypatch)
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in fm.FASHION_RAW_FILES.values():
        shutil.copy(fm.DEBIAN_DIR / f"{name}.gz", raw / f"{name}.gz")
    assert fm.find_fashion_dir(tmp_path) == raw
    labels = raw / "t10k-labels-idx1-ubyte.gz"
    _write_idx(labels, np.zeros(10_000, np.uint8))  # a foreign labels file in the named root is refused
    with pytest.raises(ValueError, match=rf"^{labels}: labels have class counts \(10000, 0, .* official Fashion"):
        data.load_split("fashion_mnist", "test", tmp_path)


@pytest.mark.parametrize(("stem", "content", "message"), [
    ("t10k-images-idx3-ubyte.gz", b"not gzip", "cannot read it .*; replace it with a genuine Fashion-MNIST file"),
    ("t10k-images-idx3-ubyte", b"\x00\x00\x08\x01" + b"\x00" * 8, "not an IDX file of unsigned bytes with 3 dim"),
    ("t10k-images-idx3-ubyte", np.zeros((10, 28, 28)), r"expected shape \(10000, 28, 28\) .* got shape \(10, 28"),
    ("t10k-labels-idx1-ubyte", np.full(10_000, 12), "labels must lie in 0..9, got 12..12"),
])
def test_damaged_files_are_refused_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stem: str,
                                                    content: object, message: str) -> None:
    no_download(monkeypatch)
    raw = tmp_path / "fashion-mnist"
    raw.mkdir()
    _write_idx(raw / "train-images-idx3-ubyte", np.zeros((60_000, 28, 28), np.uint8))
    _write_idx(raw / "train-labels-idx1-ubyte", np.repeat(np.arange(10), 6_000))
    _write_idx(raw / "t10k-images-idx3-ubyte", np.zeros((10_000, 28, 28), np.uint8))
    _write_idx(raw / "t10k-labels-idx1-ubyte", np.repeat(np.arange(10), 1_000))
    target = raw / stem
    for old in raw.glob(stem.removesuffix(".gz") + "*"):
        old.unlink()
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        _write_idx(target, content)
    with pytest.raises(ValueError) as info:
        data.load_split("fashion_mnist", "test", tmp_path)
    text = str(info.value)
    assert "\n" not in text and text.startswith(str(target))
    assert re.search(message, text)


def test_partial_or_absent_files_say_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_download(monkeypatch)
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "no-debian")
    offline(monkeypatch, fm, "download_fashion_torchvision", "no network")
    with pytest.raises(FileNotFoundError) as info:
        data.load_split("fashion_mnist", "test", tmp_path)
    text = str(info.value)
    assert "\n" not in text and fm.INSTALL_HINT in text and "RuntimeError: no network" in text
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    _write_idx(raw / "t10k-labels-idx1-ubyte", np.repeat(np.arange(10), 1_000))
    with pytest.raises(FileNotFoundError, match="missing train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-i"):
        data.load_split("fashion_mnist", "test", tmp_path)


@needs_debian
def test_the_shipped_sample_is_the_real_test_images(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    no_download(monkeypatch)
    sample, index = fm.load_test_sample()
    test = data.load_split("fashion_mnist", "test", tmp_path)
    assert len(sample) == 1_000 and np.bincount(sample.labels.numpy()).tolist() == [100] * 10
    assert torch.equal(sample.inputs, test.inputs[index]) and torch.equal(sample.labels, test.labels[index])
    data.clear_cache()


def test_a_damaged_sample_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "sample.npz"
    bad.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match=rf"^{bad}: not pkd's Fashion-MNIST sample"):
        fm.load_test_sample(bad)
    np.savez(bad, images=np.zeros((3, 28, 28), np.uint8), labels=np.zeros(3, np.uint8), index=np.array([0, 1, 10_000]))
    with pytest.raises(ValueError, match="expected uint8 images"):
        fm.load_test_sample(bad)
    np.savez(bad, images=np.zeros((2, 28, 28), np.uint8), labels=np.array([0, 11], np.uint8), index=np.arange(2))
    with pytest.raises(ValueError, match="labels must lie in 0..9"):
        fm.load_test_sample(bad)
