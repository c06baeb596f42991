"""One tiny video run per test session for the clip tests (predict, the Clips page, the browser): configs/tiny-video.yaml
cut to 64 training clips, the teacher's stage 1 skipped, trained once by the real CLI (about 8 s on one thread).

Its figures are chance level, which is all these tests need: the models read clips and answer after every frame.
Import `video_run_path` from a session fixture; the run is shared by both xdist workers, so copy it before changing
it."""

from __future__ import annotations

from pathlib import Path

from tests.built_once import built_once
from tests.pkd_process import ROOT, child_env, pkd_ok

TINY_VIDEO = ROOT / "configs" / "tiny-video.yaml"
FAST = ("data.train_limit=64", "data.val_limit=32", "data.test_limit=32", "teacher.pretrain.epochs=0")


def video_run_path(tmp_path_factory) -> Path:
    """The session's tiny video run, `<folder>/tiny-video`, trained on first use by whichever xdist worker asks first
    (read it, never write to it)."""
    return built_once(tmp_path_factory, "tiny-video", _train) / "tiny-video"


def _train(folder: Path) -> None:
    pkd_ok("train", "--config", str(TINY_VIDEO), "--run-dir", str(folder / "tiny-video"), "--no-progress",
           "--no-kernel-build", *FAST, env=child_env(OMP_NUM_THREADS="1"), timeout=600)
