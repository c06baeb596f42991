"""Hostile clip files for the clip readers' tests (pkd.preprocess.clips and `pkd predict RUN clip`): a pickle, wrong
frame counts and shapes, NaN, values out of range, text, truncated or broken files, a folder, a missing path; each
with the words its one-line refusal must hold."""

from __future__ import annotations

import pickle

import numpy as np
import torch

from pkd.data import DatasetSpec
from pkd.preprocess import NPY_MAGIC, clip_gif


def hostile_files(tmp_path, spec: DatasetSpec) -> dict[str, tuple]:
    """name -> (path, what the one-line error says)."""
    t, _, s, _ = spec.sample_shape
    good = np.zeros((t, s, s), dtype=np.float32)
    files = {}

    def add(name, what, array=None, raw=None):
        path = tmp_path / name
        if array is not None:
            np.save(path, array, allow_pickle=True)
        elif raw is not None:
            path.write_bytes(raw)
        files[name] = (path, what)

    add("pickled.npy", "pickled objects", array=np.array([{"a": 1}, None], dtype=object))
    add("a-pickle.npy", "not an animated GIF or a .npy", raw=pickle.dumps({"x": 1}))
    add("wrong-t.npy", f"has {t + 1} frames but this run's clips have {t}", array=np.zeros((t + 1, s, s)))
    add("shape.npy", "array of shape", array=np.zeros((t, s, s + 1)))
    add("five-d.npy", "array of shape", array=np.zeros((1, t, 1, s, s)))
    add("nan.npy", "NaN or infinity", array=np.where(np.eye(s)[None] > 0, np.nan, good))
    add("range.npy", "values in [0, 1]", array=good + 2.0)
    add("text.npy", "not a number type", array=np.full((t, s, s), "a"))
    add("truncated.npy", "not a readable .npy", raw=NPY_MAGIC + b"\x01\x00garbage")
    add("picture.png", "not an animated GIF or a .npy", raw=b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    moving = torch.zeros(t - 1, 1, s, s)
    for i in range(t - 1):
        moving[i, 0, i, i] = 1.0  # distinct frames (Pillow merges identical consecutive ones)
    add("wrong-t.gif", f"has {t - 1} frames", raw=clip_gif(moving))
    add("broken.gif", "GIF", raw=b"GIF89a" + b"\x00" * 10)
    (tmp_path / "a-directory").mkdir()
    files["a-directory"] = (tmp_path / "a-directory", "is not a file")
    files["missing.gif"] = (tmp_path / "missing.gif", "clip file not found")
    return files
