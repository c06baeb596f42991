"""What the Moving MNIST clip datasets are, without making any: the classes (a digit and one of six motions), the
generator's sizes (MovingMnistConfig), the DatasetSpec of clips made with them, and the built-in clip datasets'
settings. No torch here: reading a run's dataset (the app's first page) needs the specs, not the clips, which
pkd.data.moving_mnist makes (and re-exports every name below).

Shape letters: T frames, C channels (1), S canvas side (H = W = S).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from pkd.data.registry import SPLITS
from pkd.data.spec import DatasetSpec

if TYPE_CHECKING:  # annotations only
    import torch

DIGIT = 28  # side of an MNIST digit's box, px
MOTIONS = ("moving left", "moving right", "moving up", "moving down", "growing", "shrinking")
REVERSE_MOTION = (1, 0, 3, 2, 5, 4)  # the motion of the same clip played backwards
NUM_CLASSES = 10 * len(MOTIONS)


@dataclasses.dataclass(frozen=True)
class MovingMnistConfig:
    """The generator's sizes. Defaults: 8 frames of 48x48, speeds 1-2 px/frame, zoom 0.6x <-> 1.5x (see docs/data.md).

    Attributes:
        frames: T, frames per clip (>= 2).
        canvas: S, side of the square canvas in px (> 28).
        speed_min, speed_max: integer speed range in px per frame of the translations (inclusive).
        zoom: (small, large) scales of the digit box at the two ends of a growing or shrinking clip.
        train_clips, val_clips, test_clips: clips per split (at most the split's number of MNIST digits).
        seed: the generator's seed; split i draws from ``np.random.default_rng([seed, i])``.
    """

    frames: int = 8
    canvas: int = 48
    speed_min: int = 1
    speed_max: int = 2
    zoom: tuple[float, float] = (0.6, 1.5)
    train_clips: int = 10_000
    val_clips: int = 2_000
    test_clips: int = 2_000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.frames < 2:
            raise ValueError(f"moving_mnist frames: {self.frames} must be >= 2 (a motion needs two frames)")
        if self.canvas <= DIGIT:
            raise ValueError(f"moving_mnist canvas: {self.canvas} px must exceed the digit's {DIGIT} px")
        if not 1 <= self.speed_min <= self.speed_max:
            raise ValueError(f"moving_mnist speed_min, speed_max: {self.speed_min}, {self.speed_max} must satisfy "
                             "1 <= speed_min <= speed_max")
        travel, room = self.speed_max * (self.frames - 1), self.canvas - DIGIT
        if travel > room:
            raise ValueError(f"moving_mnist speed_max: {self.speed_max} px/frame over {self.frames} frames moves "
                             f"{travel} px but the canvas leaves {room} px; lower speed_max or frames, or raise canvas")
        small, large = self.zoom
        if not 0 < small < large or large * DIGIT + 2 > self.canvas:
            raise ValueError(f"moving_mnist zoom: {self.zoom} must satisfy 0 < small < large <= (canvas - 2) / "
                             f"{DIGIT} = {(self.canvas - 2) / DIGIT:.3f}")
        for split in SPLITS:
            if getattr(self, f"{split}_clips") < 1:
                raise ValueError(f"moving_mnist {split}_clips: {getattr(self, f'{split}_clips')} must be >= 1")

    @property
    def sample_shape(self) -> tuple[int, int, int, int]:
        """(T, C, S, S) of one clip."""
        return (self.frames, 1, self.canvas, self.canvas)


def class_names() -> tuple[str, ...]:
    """The 60 class names, index = 6 * digit + motion: "0 moving left", ..., "9 shrinking" (CLIP text prompts)."""
    return tuple(f"{d} {m}" for d in range(10) for m in MOTIONS)


def class_index(digit: int, motion: str) -> int:
    """Class of ``digit`` (0..9) with ``motion`` (one of MOTIONS)."""
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; choose one of: {', '.join(MOTIONS)}")
    if not 0 <= digit <= 9:
        raise ValueError(f"digit must be 0..9, got {digit}")
    return 6 * digit + MOTIONS.index(motion)


def digit_of(labels: torch.Tensor | int) -> torch.Tensor | int:
    """The digit part of class indices (0..9): an int, or a tensor or array of the same shape."""
    return labels // len(MOTIONS)


def motion_of(labels: torch.Tensor | int) -> torch.Tensor | int:
    """The motion part of class indices (an index into MOTIONS): an int, or a tensor or array of the same shape."""
    return labels % len(MOTIONS)


def novel_classes() -> tuple[int, ...]:
    """The 30 held-out classes of the base-to-novel setting: digit d with motion pair p (0 left/right, 1 up/down,
    2 growing/shrinking) when d + p is odd. Both motions of a pair go together, so a clip and its reverse are always
    on the same side; every digit and every motion has base and novel classes."""
    return tuple(6 * d + m for d in range(10) for m in range(6) if (d + m // 2) % 2 == 1)


def base_classes() -> tuple[int, ...]:
    """The 30 classes not in ``novel_classes()``."""
    novel = set(novel_classes())
    return tuple(c for c in range(NUM_CLASSES) if c not in novel)


def moving_mnist_spec(name: str, cfg: MovingMnistConfig = MovingMnistConfig(),
                      novel: Sequence[int] = ()) -> DatasetSpec:
    """The DatasetSpec of clips made with ``cfg``: (T, 1, S, S), 60 classes grouped by digit; shifts only (a flip
    changes a label); ``novel``: the classes kept out of train and val."""
    mean, std = _pixel_stats(cfg)
    return DatasetSpec(name=name, sample_shape=cfg.sample_shape, num_classes=NUM_CLASSES, class_names=class_names(),
                       mean=(mean,), std=(std,), max_shift=2, motion_labels=True, novel_classes=tuple(novel),
                       class_groups=tuple(digit_of(c) for c in range(NUM_CLASSES)))


def _pixel_stats(cfg: MovingMnistConfig) -> tuple[float, float]:
    """Mean and std of the pixels of clips made with ``cfg``: MNIST's (0.1307, 0.3081) diluted onto the canvas.

    A digit's box covers (28 / S)^2 of a frame at scale 1 and a mean of (28 * scale / S)^2 when zooming; the
    second moment scales alike (MNIST's E[p^2] = 0.3081^2 + 0.1307^2), bilinear resampling aside.
    """
    t = np.arange(cfg.frames) / (cfg.frames - 1)
    small, large = cfg.zoom
    zoom_area = np.mean((small * (large / small) ** t) ** 2)
    cover = (DIGIT / cfg.canvas) ** 2 * (4 + 2 * zoom_area) / 6  # four translations, two zooms
    mean, second = 0.1307 * cover, (0.3081**2 + 0.1307**2) * cover
    return round(float(mean), 4), round(float(np.sqrt(second - mean**2)), 4)


# The built-in clip datasets: name -> (sizes, the classes of train and val: None = every class). Their specs are
# registered by pkd.data.catalog, their clips made by pkd.data.moving_mnist.
# moving_mnist_50k: a clip for every one of MNIST's 50,000 train digits (5x the clips; val and test unchanged: each
# split is drawn with its own seed). Students distilled on it close their digit gap to the teacher
# (docs/results/video.md).
ALL_TRAIN_DIGITS = MovingMnistConfig(train_clips=50_000)
# Small clips for tests and classroom runs: 4 frames of 40x40 (5x5 patches of 8 px), speeds 1-2 px/frame.
SMALL = MovingMnistConfig(frames=4, canvas=40, zoom=(0.6, 1.35), train_clips=4_000, val_clips=1_000,
                          test_clips=1_000)
CLIP_SETS: dict[str, tuple[MovingMnistConfig, tuple[int, ...] | None]] = {
    "moving_mnist": (MovingMnistConfig(), None),
    "moving_mnist_b2n": (MovingMnistConfig(), base_classes()),
    "moving_mnist_50k": (ALL_TRAIN_DIGITS, None),
    "moving_mnist_small": (SMALL, None),
    "moving_mnist_small_b2n": (SMALL, base_classes()),
}


def novel_of(train_classes: Sequence[int] | None) -> tuple[int, ...]:
    """The classes kept out of train and val when only ``train_classes`` are trained on (None: every class)."""
    return () if train_classes is None else tuple(c for c in range(NUM_CLASSES) if c not in set(train_classes))
