"""Tests for pkd.data.registry: lookup errors, registering a dataset, checked loading, the data directory."""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pkd import data
from pkd.data import registry

ROOT = Path(__file__).resolve().parents[2]


def test_unknown_dataset_lists_choices() -> None:
    assert data.get_dataset_spec("mnist") is data.MNIST
    choices = ("cifar10, fashion_mnist, mnist, moving_mnist, moving_mnist_50k, moving_mnist_b2n, moving_mnist_small, "
               "moving_mnist_small_b2n")
    with pytest.raises(ValueError, match=rf"^unknown dataset 'x'; choose one of: {choices}$"):
        data.get_dataset_spec("x")
    with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
        data.load_split("svhn", "train")
    with pytest.raises(ValueError, match="unknown split 'valid'; choose one of: train, val, test"):
        data.load_split("mnist", "valid")


def test_register_dataset(scratch_registry: None, tmp_path: Path) -> None:
    spec = dataclasses.replace(data.MNIST, name="tiny", sample_shape=(1, 4, 4), max_shift=0)

    @data.register_dataset(spec)
    def load(root: Path) -> dict[str, data.Split]:
        return {s: data.Split(torch.rand(3, 1, 4, 4), torch.arange(3), "tiny", s) for s in data.SPLITS}

    assert data.get_dataset_spec("tiny") is spec
    split = data.load_split("tiny", "val", tmp_path)
    assert split.spec is spec and len(split) == 3
    with pytest.raises(ValueError, match="already registered"):
        data.register_dataset(spec)


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


def test_loader_output_is_checked(scratch_registry: None, tmp_path: Path) -> None:
    spec = dataclasses.replace(data.MNIST, name="wrong", sample_shape=(1, 4, 4))

    @data.register_dataset(spec)
    def load(root: Path) -> dict[str, data.Split]:
        return {s: data.Split(torch.rand(3, 1, 5, 4), torch.arange(3), "wrong", s) for s in data.SPLITS}

    with pytest.raises(ValueError, match=r"loader for 'wrong' returned a bad val split: \(3, 1, 5, 4\)"):
        data.load_split("wrong", "val", tmp_path)


def test_specs_are_read_without_torch_and_each_builtin_names_its_loader() -> None:
    """`import pkd.data` registers every built-in spec without importing torch (the app's first page reads specs
    only); each built-in's loader, named "module:function", is imported at the first load_split."""
    code = ("import sys, pkd.data as d; spec = d.get_dataset_spec('moving_mnist_small_b2n'); "
            "print(len(d.DATASETS), spec.kind, len(spec.novel_classes), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == [str(len(data.DATASETS)), "clip", "30", "False"], out.stderr
    assert set(registry.BUILTIN_LOADERS) == set(data.DATASETS)  # every dataset pkd ships
    for name, target in registry.BUILTIN_LOADERS.items():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), name
