"""Helpers for the pkd.data tests: no downloads, a pickle that runs code, file snapshots."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from pkd.data import cifar10 as pkd_cifar10
from pkd.data import fashion_mnist as pkd_fashion_mnist
from pkd.data import mnist as pkd_mnist


def no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("no download may be attempted here")

    monkeypatch.setattr(pkd_mnist, "fetch_mnist_from_pypi", fail)
    monkeypatch.setattr(pkd_mnist, "download_mnist_torchvision", fail)
    monkeypatch.setattr(pkd_cifar10, "download_cifar10_torchvision", fail)
    monkeypatch.setattr(pkd_fashion_mnist, "download_fashion_torchvision", fail)


def offline(monkeypatch: pytest.MonkeyPatch, module: object, download: str, error: str) -> None:
    """`module.download` fails as on a machine without network: RuntimeError(error)."""
    def fail(root: Path) -> None:
        raise RuntimeError(error)

    monkeypatch.setattr(module, download, fail)


class Evil:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def snapshot(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns
