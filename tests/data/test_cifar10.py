"""Tests for pkd.data.cifar10: the python batches are read, verified and split; bad or hostile files are refused."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from pkd import data
from pkd.data import cifar10 as pkd_cifar10
from tests.data.helpers import Evil, no_download, offline, snapshot


def _write_cifar(root: Path, per_batch: int = 4, n_test: int = 6, protocol: int = 4, bytes_keys: bool = False,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Write a tiny CIFAR-10 python folder; returns all training rows (5 * per_batch, 3072) and labels."""
    rng = np.random.default_rng(seed)
    folder = root / pkd_cifar10.CIFAR10_DIR
    folder.mkdir(parents=True)
    key = (lambda k: k.encode()) if bytes_keys else (lambda k: k)
    rows, labels = [], []
    for name, n in [(f, per_batch) for f in pkd_cifar10.CIFAR10_TRAIN_FILES] + [("test_batch", n_test)]:
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, n)]
        batch = {key("batch_label"): key(name), key("labels"): y, key("data"): x,
                 key("filenames"): [key(f"img{i}.png") for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        if name != "test_batch":
            rows.append(x)
            labels += y
    meta = {key("label_names"): [key(c) for c in data.CIFAR10.class_names], key("num_vis"): 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return np.concatenate(rows), np.asarray(labels)


@pytest.mark.parametrize(("protocol", "bytes_keys"), [(2, True), (4, False), (5, False)])
def test_cifar_synthetic_files_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protocol: int,
                                    bytes_keys: bool) -> None:
    no_download(monkeypatch)
    rows, labels = _write_cifar(tmp_path, per_batch=4, protocol=protocol, bytes_keys=bytes_keys)
    train, val, test = (data.load_split("cifar10", s, tmp_path) for s in data.SPLITS)
    assert (len(train), len(val), len(test)) == (18, 2, 6)
    assert train.inputs.shape == (18, 3, 32, 32) and train.inputs.dtype == torch.float32
    assert val.labels.dtype == torch.int64 and val.labels.tolist() == labels[18:].tolist()
    # row layout: 1024 red, 1024 green, 1024 blue values, each row-major 32x32
    assert abs(train.inputs[5, 1, 2, 3].item() - rows[5, 1024 + 2 * 32 + 3] / 255) < 1e-7
    assert torch.allclose(val.inputs * 255, torch.from_numpy(rows[18:].reshape(2, 3, 32, 32)).float(), atol=1e-4)
    assert 0 <= test.inputs.min() and test.inputs.max() <= 1 and train.spec is data.CIFAR10
    data.clear_cache()


def test_cifar_missing_files_and_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    offline(monkeypatch, pkd_cifar10, "download_cifar10_torchvision",
            "Error downloading cifar-10-python.tar.gz:\n<urlopen error>")
    with pytest.raises(FileNotFoundError) as info:
        data.load_split("cifar10", "train", tmp_path)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "cifar-10-batches-py") in message and "urlopen error" in message
    _write_cifar(tmp_path)
    (tmp_path / pkd_cifar10.CIFAR10_DIR / "data_batch_3").unlink()
    (tmp_path / pkd_cifar10.CIFAR10_DIR / "batches.meta").unlink()
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py lacks data_batch_3, batches.meta; it needs"):
        data.load_split("cifar10", "train", tmp_path)


def test_cifar_uses_download_when_folder_is_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pkd_cifar10, "download_cifar10_torchvision", lambda root: _write_cifar(root, per_batch=2))
    assert len(data.load_split("cifar10", "train", tmp_path)) == 9
    data.clear_cache()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("data_batch_2", {"data": np.zeros((4, 3000), np.uint8), "labels": [0] * 4}, r"= 3072 values, got uint8"),
        ("data_batch_2", {"data": np.zeros((4, 3072), np.float32), "labels": [0] * 4}, r"got float32 \(4, 3072\)"),
        ("test_batch", {"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2, 10]}, r"labels must lie in 0..9"),
        ("test_batch", {"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1]}, r"integer array of shape \(4,\)"),
        ("data_batch_1", {"data": np.zeros((4, 3072), np.uint8)}, r"expected keys 'data' and 'labels'"),
        ("data_batch_1", [1, 2], r"expected a dict with 'data' and 'labels', got list"),
        ("batches.meta", {"label_names": ["a"] * 10}, r"label_names \('a', .* are not CIFAR-10's"),
    ],
)
def test_cifar_structure_is_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, content: object,
                                     message: str) -> None:
    no_download(monkeypatch)
    _write_cifar(tmp_path)
    path = tmp_path / pkd_cifar10.CIFAR10_DIR / name
    path.write_bytes(pickle.dumps(content))
    before = snapshot(path)
    with pytest.raises(ValueError, match=message):
        data.load_split("cifar10", "train", tmp_path)
    assert snapshot(path) == before


def test_cifar_refuses_code_and_checks_full_size_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_download(monkeypatch)
    _write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    (tmp_path / pkd_cifar10.CIFAR10_DIR / "test_batch").write_bytes(pickle.dumps(Evil(marker)))
    with pytest.raises(ValueError, match=r"test_batch: refusing to load global"):
        data.load_split("cifar10", "train", tmp_path)
    assert not marker.exists()
    real_load = pkd_cifar10.restricted_load

    def full_size(path: Path) -> object:  # 10,000 rows per batch, all of class 0
        if path.name == "batches.meta":
            return real_load(path)
        return {"data": np.zeros((10_000, 3072), np.uint8), "labels": np.zeros(10_000, np.int64)}

    monkeypatch.setattr(pkd_cifar10, "restricted_load", full_size)
    with pytest.raises(ValueError, match=r"training batches have class counts \[50000, 0, .*5000 per class"):
        data.load_split("cifar10", "train", tmp_path)
