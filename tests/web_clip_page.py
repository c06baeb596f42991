"""The tiny video run's web page (tests/video_run.py), exported once per test session by the real CLI
(`python -m pkd export RUN --web --out DIR` in a subprocess), and pkd's own answers to compare the page with.
Shared by tests/test_web_export.py and tests/browser/test_web_clips.py; read the folder, never write to it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tests.built_once import built_once
from tests.pkd_process import pkd_ok
from tests.web_runtime import require_web_runtime


def clip_page_path(tmp_path_factory, run) -> Path:
    """The page's folder, exported on first use by whichever xdist worker asks first (skipped without
    onnxruntime-web in pkd's cache)."""
    require_web_runtime()

    def export(folder: Path) -> None:
        out = folder / "tiny-video-page"
        proc = pkd_ok("export", str(run.path), "--web", "--out", str(out))
        assert str(out / "index.html") in proc.stdout and "MB" in proc.stdout, proc.stdout

    return built_once(tmp_path_factory, "tiny-video-page", export) / "tiny-video-page"


def clip_reference(run):
    """pkd's answer in PyTorch: clips (B, T, 1, S, S) in [0, 1] -> every prefix's probabilities (B, k, C)."""
    from pkd.artifacts import load_ensemble
    from pkd.data import get_dataset_spec
    from pkd.export import PrefixModel

    spec = get_dataset_spec(run.setting("data", "dataset"))
    model = PrefixModel(load_ensemble(run), spec, all_prefixes=True).eval()

    def probs(clips: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return model(clips)[2].numpy()

    return probs
