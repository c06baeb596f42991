"""Tests for pkd.data.safe_pickle: code in a pickle never runs, numpy arrays load, broken files give one line."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest

from pkd import data
from pkd.data import mnist as pkd_mnist
from pkd.data import safe_pickle
from tests.data.helpers import Evil, no_download, snapshot


def test_restricted_unpickler_refuses_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_download(monkeypatch)
    marker = tmp_path / "pwned"
    path = tmp_path / pkd_mnist.MNIST_PKL_NAME
    path.write_bytes(gzip.compress(pickle.dumps(Evil(marker))))
    before = snapshot(path)
    with pytest.raises(ValueError, match=r"mnist\.pkl\.gz: refusing to load global '(posix|os)\.system'"):
        data.load_split("mnist", "train", tmp_path)
    assert not marker.exists()
    assert snapshot(path) == before and sorted(p.name for p in tmp_path.iterdir()) == [pkd_mnist.MNIST_PKL_NAME]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_restricted_unpickler_reads_numpy(tmp_path: Path, protocol: int) -> None:
    obj = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": [np.int64(3), "s", b"x"]}
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    got = safe_pickle.restricted_load(path)
    assert np.array_equal(got["a"], obj["a"]) and got["b"] == [3, "s", b"x"]


def test_corrupt_or_truncated_gzip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mnist_root: Path) -> None:
    no_download(monkeypatch)
    path = tmp_path / pkd_mnist.MNIST_PKL_NAME
    path.write_bytes(b"this is not gzip at all")
    with pytest.raises(ValueError, match=r"mnist\.pkl\.gz: not a readable gzip pickle \(BadGzipFile"):
        data.load_split("mnist", "train", tmp_path)
    source = mnist_root / pkd_mnist.MNIST_PKL_NAME
    if source.is_file():  # a real file cut short
        path.write_bytes(source.read_bytes()[:100_000])
        before = snapshot(path)
        with pytest.raises(ValueError, match=r"not a readable gzip pickle \(EOFError"):
            data.load_split("mnist", "train", tmp_path)
        assert snapshot(path) == before
