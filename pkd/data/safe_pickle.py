"""A restricted unpickler for data files (``mnist.pkl.gz``, CIFAR-10 python batches) that cannot run code.

It admits only numpy's array reconstruction callables; any other global in the pickle raises UnsafePickleError,
so loading an untrusted file never imports or calls anything else.
"""

from __future__ import annotations

import gzip
import importlib
import importlib.util
import pickle
from pathlib import Path
from typing import Any


def _numpy_global(module: str, name: str) -> Any:
    # numpy 2 moved numpy.core to numpy._core; old pickles name the old path (a deprecated alias).
    if module.startswith("numpy.core.") and importlib.util.find_spec("numpy._core") is not None:
        module = "numpy._core." + module[len("numpy.core."):]
    return getattr(importlib.import_module(module), name)


_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),  # numpy arrays pickled with protocol 5
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # bytes pickled by Python 3 with protocol 2 (str -> bytes, no imports)
}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a callable outside the numpy-array allow-list."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that admits only numpy array reconstruction; anything else raises UnsafePickleError."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise UnsafePickleError(f"refusing to load global '{module}.{name}' (only numpy arrays are allowed)")
        return _numpy_global(module, name)


def restricted_load(path: Path) -> Any:
    """Read a (optionally gzip-compressed) pickle of numpy arrays and builtins, refusing anything else.

    Args:
        path: the file; a ``.gz`` suffix means gzip.

    Returns:
        The unpickled object (Python 2 strings decoded as latin-1).
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return RestrictedUnpickler(f, encoding="latin1").load()
    except UnsafePickleError as exc:
        raise ValueError(f"{path}: {exc}; the file was left untouched, replace it with a genuine copy") from None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure of an untrusted file is the same user error
        raise ValueError(f"{path}: not a readable {'gzip ' if opener is gzip.open else ''}pickle "
                         f"({type(exc).__name__}: {exc}); replace it with a genuine copy") from None
