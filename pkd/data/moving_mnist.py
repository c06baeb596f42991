"""Moving MNIST clips, generated offline and seeded from pkd's own MNIST splits; labels name a digit and its motion.

The recipe of Srivastava et al. 2015 ("Unsupervised Learning of Video Representations using LSTMs"): a 28x28 MNIST
digit on a larger black canvas, given a direction and a speed, one frame per step, frames clipped to [0, 1]. Here
each clip holds one digit (a label names one digit) and its motion is one of six, in three time-reverse pairs:
moving left / right, moving up / down (an integer speed in px per frame) and growing / shrinking (the digit scaled
geometrically between two sizes about a fixed centre). Class c = 6 * digit + motion, named e.g. "3 moving left".

No bounces: a clip's start and speed are drawn so that the digit's 28x28 box (its largest size when it zooms)
stays inside the canvas in every frame, so it never touches a wall and its velocity never changes; a motion too
large for the canvas is refused when the config is built. Time symmetry: the reverse of a clip is a valid clip of
the reversed class, drawn with the same probability (the motion is uniform, the box's range of positions along
the motion is drawn uniformly whatever the direction, and zoom clips use the same sizes both ways).

Train clips use train digits only, val val, test test; each split draws its digits without replacement from a
seeded permutation, so no two clips of a split share a digit. Same config and seed -> byte-identical clips.
Shape letters: N clips, M source digits, T frames, C channels (1), S canvas side (H = W = S). The classes, the
sizes and the specs are in pkd.data.clip_specs (no torch: the app reads them without making clips), re-exported here.
"""

from __future__ import annotations

import dataclasses
import functools
import weakref
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pkd.data.catalog import (MOVING_MNIST, MOVING_MNIST_50K, MOVING_MNIST_B2N, MOVING_MNIST_SMALL,
                              MOVING_MNIST_SMALL_B2N)
from pkd.data.clip_specs import (ALL_TRAIN_DIGITS, CLIP_SETS, DIGIT, MOTIONS, NUM_CLASSES, REVERSE_MOTION, SMALL,
                                 MovingMnistConfig, base_classes, class_index, class_names, digit_of, motion_of,
                                 moving_mnist_spec, novel_classes, novel_of)
from pkd.data.registry import SPLITS, LazySplits, Loader, load_split, register_dataset
from pkd.data.spec import DatasetSpec, Split

__all__ = ["MOTIONS", "MovingMnistConfig", "Clips", "MOVING_MNIST", "MOVING_MNIST_50K", "MOVING_MNIST_B2N",
           "MOVING_MNIST_SMALL",
           "class_names", "class_index", "digit_of", "motion_of", "reverse_label", "reverse_clips", "novel_classes",
           "base_classes", "generate_clips", "make_clip", "moving_mnist_spec", "register_moving_mnist", "clip_loader",
           "DIGIT", "REVERSE_MOTION", "NUM_CLASSES", "ALL_TRAIN_DIGITS", "SMALL", "MOVING_MNIST_SMALL_B2N"]

_STEP = {0: (0, -1), 1: (0, 1), 2: (-1, 0), 3: (1, 0)}  # translation motion -> (dy, dx) per unit of speed


@dataclasses.dataclass(frozen=True)
class Clips:
    """Generated clips with how they were made.

    Attributes:
        frames: float32 in [0, 1], (N, T, 1, S, S).
        labels: int64 classes 6 * digit + motion, (N,).
        source: int64 index of each clip's digit in the MNIST split it was drawn from, (N,).
        centre: float64 (y, x) of the digit box's centre in canvas px per frame, (N, T, 2).
        scale: float64 size of the digit box per frame, in units of 28 px, (N, T).
    """

    frames: torch.Tensor
    labels: torch.Tensor
    source: torch.Tensor
    centre: np.ndarray
    scale: np.ndarray


def reverse_label(labels: torch.Tensor | int) -> torch.Tensor | int:
    """The class of the time-reversed clip: same digit, reversed motion (an involution). Int or tensor (N,)."""
    reverse = torch.tensor(REVERSE_MOTION)
    if isinstance(labels, torch.Tensor):
        return labels - labels % 6 + reverse.to(labels.device)[labels % 6]
    return labels - labels % 6 + REVERSE_MOTION[labels % 6]


def reverse_clips(clips: torch.Tensor) -> torch.Tensor:
    """Play clips backwards.

    Args:
        clips: (..., T, C, H, W), e.g. one clip (T, C, H, W) or a batch (B, T, C, H, W).

    Returns:
        The frames in reverse order, same shape (a copy).
    """
    if clips.dim() < 4:
        raise ValueError(f"reverse_clips expects (..., T, C, H, W), got shape {tuple(clips.shape)}")
    return clips.flip(-4)  # (..., T, C, H, W)


def _allowed_motions(classes: Sequence[int] | None) -> list[list[int]]:
    """Per digit, the motions whose class is in ``classes`` (all when None); checked closed under reversal."""
    if classes is None:
        return [list(range(6)) for _ in range(10)]
    chosen = {int(c) for c in classes}
    if not chosen or min(chosen) < 0 or max(chosen) >= NUM_CLASSES:
        raise ValueError(f"classes must be a non-empty list of class indices in 0..{NUM_CLASSES - 1}")
    unpaired = sorted(c for c in chosen if reverse_label(c) not in chosen)
    if unpaired:
        raise ValueError(f"classes must hold each class with its time-reverse (reverse_label), missing the reverse "
                         f"of {unpaired[:5]}; otherwise a clip's reverse would not be as likely as the clip")
    return [[m for m in range(6) if 6 * d + m in chosen] for d in range(10)]


def _trajectories(motion: np.ndarray, speed: np.ndarray, u_along: np.ndarray, u_across: np.ndarray,
                  u_centre: np.ndarray, cfg: MovingMnistConfig) -> tuple[np.ndarray, np.ndarray]:
    """Box centre (N, T, 2) and scale (N, T) per clip from its motion and uniform draws (N,), (N,), (N,), (N, 2).

    Translations: the box's range [lo, lo + span] along the motion (span = speed * (T - 1)) has lo uniform on
    0..S-28-span, the same for both directions, and a frame walks it forwards or backwards; across the motion the
    box sits at a uniform integer in 0..S-28. Zooms: a centre uniform where the largest box fits.
    """
    n, t = len(motion), cfg.frames
    room = cfg.canvas - DIGIT
    steps = np.arange(t)  # (T,)
    span = speed * (t - 1)  # (N,)
    lo = np.floor(u_along * (room - span + 1)).astype(np.int64)  # (N,) in 0..room-span
    across = np.floor(u_across * (room + 1)).astype(np.int64)  # (N,) in 0..room
    forwards = np.isin(motion, (1, 3))  # right and down walk towards larger coordinates
    walked = speed[:, None] * steps  # (N, T)
    along = np.where(forwards[:, None], lo[:, None] + walked, (lo + span)[:, None] - walked)  # (N, T)
    vertical = np.isin(motion, (2, 3))[:, None]  # (N, 1)
    top_left = np.stack([np.where(vertical, along, across[:, None]), np.where(vertical, across[:, None], along)], -1)
    centre = top_left.astype(np.float64) + DIGIT / 2  # (N, T, 2)
    scale = np.ones((n, t))  # (N, T)

    zooms = motion >= 4
    small, large = cfg.zoom
    grow = small * (large / small) ** (steps / (t - 1))  # (T,) geometric sizes, small -> large
    scale[zooms] = np.where((motion[zooms] == 4)[:, None], grow, grow[::-1])  # shrinking = growing reversed
    half = large * DIGIT / 2 + 1  # + 1 px: bilinear sampling spreads the box's edge by up to half a pixel
    centre[zooms] = (half + u_centre[zooms] * (cfg.canvas - 2 * half))[:, None, :]  # (Z, T, 2) fixed centre
    return centre, scale


def _render(digits: torch.Tensor, centre: np.ndarray, scale: np.ndarray, canvas: int) -> torch.Tensor:
    """Draw digit i at centre[i, t] with size scale[i, t] in frame t; integer placements at scale 1 are pasted
    exactly, the others sampled bilinearly (zero outside the digit).

    Args:
        digits: (N, 28, 28) float32 in [0, 1].
        centre: (N, T, 2) box centres (y, x) in canvas px.
        scale: (N, T) box sizes in units of 28 px.
        canvas: S.

    Returns:
        (N, T, 1, S, S) float32 in [0, 1].
    """
    n, t = scale.shape
    out = np.zeros((n, t, canvas, canvas), dtype=np.float32)  # (N, T, S, S)
    top_left = centre - DIGIT / 2  # (N, T, 2)
    pasted = (scale == 1.0).all(1) & (top_left == np.round(top_left)).all((1, 2))  # (N,)
    pixels = digits.numpy()
    for i in np.flatnonzero(pasted):
        for f, (y, x) in enumerate(top_left[i].astype(np.int64)):
            out[i, f, y:y + DIGIT, x:x + DIGIT] = pixels[i]
    frames = torch.from_numpy(out).view(n * t, canvas, canvas)  # (N*T, S, S), shares out's memory
    zoomed = torch.from_numpy(np.flatnonzero(np.repeat(~pasted, t)))  # (Z*T,) frames to resample
    s = torch.from_numpy(scale.reshape(-1)).float()  # (N*T,)
    c = torch.from_numpy(centre.reshape(-1, 2)).float()  # (N*T, 2)
    # grid_sample reads the digit at normalised coords in [-1, 1] (pixel centres, align_corners=False):
    # digit coord = (canvas px - centre) / (14 * scale) at the canvas pixel centres j + 0.5.
    px = torch.arange(canvas, dtype=torch.float32) + 0.5  # (S,)
    for chunk in zoomed.split(2048):
        gy = (px[None] - c[chunk, :1]) / (DIGIT / 2 * s[chunk, None])  # (F, S)
        gx = (px[None] - c[chunk, 1:]) / (DIGIT / 2 * s[chunk, None])  # (F, S)
        grid = torch.stack([gx[:, None, :].expand(-1, canvas, -1), gy[:, :, None].expand(-1, -1, canvas)], -1)
        src = digits[torch.div(chunk, t, rounding_mode="floor")][:, None]  # (F, 1, 28, 28)
        drawn = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # (F, 1, S, S)
        frames[chunk] = drawn[:, 0].clamp_(0.0, 1.0)  # (F, S, S)
    return frames.view(n, t, 1, canvas, canvas)  # (N, T, 1, S, S)


def generate_clips(
    digits: torch.Tensor,
    digit_labels: torch.Tensor,
    n: int,
    cfg: MovingMnistConfig = MovingMnistConfig(),
    seed: int | Sequence[int] = 0,
    classes: Sequence[int] | None = None,
) -> Clips:
    """Make n clips from n distinct digits of one split, each with a uniformly drawn allowed motion.

    Args:
        digits: the split's digits, (M, 1, 28, 28) or (M, 28, 28), float in [0, 1].
        digit_labels: their digits 0..9, (M,).
        n: clips to make (<= M, and <= the digits whose label has an allowed motion).
        cfg: sizes.
        seed: seeds ``np.random.default_rng``; same inputs and seed -> byte-identical clips.
        classes: the classes clips may have (e.g. ``base_classes()``), closed under ``reverse_label``; None = all.

    Returns:
        Clips: frames (N, T, 1, S, S), labels (N,), source (N,) indices into ``digits``, centre, scale.
    """
    digits = digits.reshape(-1, DIGIT, DIGIT).to(torch.float32)  # (M, 28, 28)
    if len(digit_labels) != len(digits):
        raise ValueError(f"digit_labels has {len(digit_labels)} entries for {len(digits)} digits")
    allowed = _allowed_motions(classes)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits))  # (M,)
    usable = order[np.array([len(allowed[d]) > 0 for d in digit_labels[order].tolist()], dtype=bool)]
    if not 1 <= n <= len(usable):
        raise ValueError(f"cannot make {n} clips from {len(usable)} usable digits; ask for 1..{len(usable)}")
    source = usable[:n]  # (N,) each digit once
    digit = digit_labels[source].numpy()  # (N,)
    count = np.array([len(allowed[d]) for d in digit])  # (N,)
    pick = np.floor(rng.random(n) * count).astype(np.int64)  # (N,) uniform among the allowed motions
    motion = np.array([allowed[d][k] for d, k in zip(digit, pick)], dtype=np.int64)  # (N,)
    speed = rng.integers(cfg.speed_min, cfg.speed_max + 1, n)  # (N,)
    u_along, u_across, u_centre = rng.random(n), rng.random(n), rng.random((n, 2))
    centre, scale = _trajectories(motion, speed, u_along, u_across, u_centre, cfg)
    chosen = digits[torch.from_numpy(source)].clamp(0.0, 1.0)  # (N, 28, 28)
    frames = _render(chosen, centre, scale, cfg.canvas)  # (N, T, 1, S, S)
    labels = torch.from_numpy(6 * digit.astype(np.int64) + motion)  # (N,)
    return Clips(frames, labels, torch.from_numpy(source.astype(np.int64)), centre, scale)


def make_clip(
    image: torch.Tensor,
    motion: str,
    cfg: MovingMnistConfig = MovingMnistConfig(),
    speed: int | None = None,
) -> torch.Tensor:
    """One clip of a single digit image (e.g. a drawing, as MNIST-preprocessed) with a chosen motion, centred.

    Args:
        image: (28, 28) or (1, 28, 28), float in [0, 1].
        motion: one of MOTIONS.
        cfg: sizes.
        speed: px per frame for translations, in cfg.speed_min..cfg.speed_max (default speed_max).

    Returns:
        (T, 1, S, S) float32 in [0, 1].
    """
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; choose one of: {', '.join(MOTIONS)}")
    if tuple(image.shape) not in ((DIGIT, DIGIT), (1, DIGIT, DIGIT)) or not torch.is_floating_point(image):
        raise ValueError(f"make_clip expects a float (28, 28) or (1, 28, 28) image, got {tuple(image.shape)}")
    speed = cfg.speed_max if speed is None else speed
    if not cfg.speed_min <= speed <= cfg.speed_max:
        raise ValueError(f"speed: {speed} must lie in {cfg.speed_min}..{cfg.speed_max} px per frame")
    half = np.array([0.5])
    centre, scale = _trajectories(np.array([MOTIONS.index(motion)]), np.array([speed]), half, half,
                                  np.full((1, 2), 0.5), cfg)
    return _render(image.reshape(1, DIGIT, DIGIT).float().clamp(0, 1), centre, scale, cfg.canvas)[0]


_MADE: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # clips made, while a split still holds them


def clip_loader(name: str, cfg: MovingMnistConfig, train_classes: Sequence[int] | None = None) -> Loader:
    """The loader of clips made with ``cfg`` from MNIST, registered as ``name``; ``train_classes`` limits train and
    val (the test split always holds every class; None: every class). A split's clips are made when it is first
    asked for (LazySplits)."""
    if train_classes is not None:
        _allowed_motions(train_classes)  # checked now, not at the first load

    def make(i: int, split: str, root: Path) -> Split:
        classes = None if split == "test" else train_classes
        n = getattr(cfg, f"{split}_clips")
        # the same clips under two names (moving_mnist's test split is moving_mnist_50k's) are made, and held, once
        key = (dataclasses.replace(cfg, train_clips=n, val_clips=n, test_clips=n), i, classes and tuple(classes),
               str(root))
        frames, labels = _MADE.get((key, "frames")), _MADE.get((key, "labels"))
        if frames is None or labels is None:
            mnist = load_split("mnist", split, root)
            made = generate_clips(mnist.inputs, mnist.labels, n, cfg, [cfg.seed, i], classes)
            frames, labels = _MADE[(key, "frames")], _MADE[(key, "labels")] = made.frames, made.labels
        return Split(frames, labels, name, split)

    def load(root: Path) -> LazySplits:
        return LazySplits({split: functools.partial(make, i, split, root) for i, split in enumerate(SPLITS)})

    return load


def register_moving_mnist(
    name: str,
    cfg: MovingMnistConfig = MovingMnistConfig(),
    train_classes: Sequence[int] | None = None,
) -> DatasetSpec:
    """Register clips made with ``cfg`` from MNIST under ``name``; ``train_classes`` limits train and val (the test
    split always holds every class). Returns the registered spec."""
    loader = clip_loader(name, cfg, train_classes)
    spec = moving_mnist_spec(name, cfg, novel_of(train_classes))
    register_dataset(spec)(loader)
    return spec


# The loaders of the built-in clip datasets, which pkd.data.catalog registers (CLIP_SETS: their sizes and classes)
load_moving_mnist = clip_loader("moving_mnist", *CLIP_SETS["moving_mnist"])
load_moving_mnist_b2n = clip_loader("moving_mnist_b2n", *CLIP_SETS["moving_mnist_b2n"])
load_moving_mnist_50k = clip_loader("moving_mnist_50k", *CLIP_SETS["moving_mnist_50k"])
load_moving_mnist_small = clip_loader("moving_mnist_small", *CLIP_SETS["moving_mnist_small"])
load_moving_mnist_small_b2n = clip_loader("moving_mnist_small_b2n", *CLIP_SETS["moving_mnist_small_b2n"])
