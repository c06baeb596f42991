"""One clip through a run's models frame by frame: what the app's Clips page and `pkd predict` on a clip show.

The students read a clip in time order, so their answer exists after every frame: `stream_prefix_probs` feeds the
frames one at a time through each student's streaming API (`MambaClassifier.start_stream` / `stream`), so the
answer after frame t is computed from frames 1..t only, and equals the full forward pass of those t frames. The
ViFi-CLIP teacher averages its frame embeddings, so it answers only for the whole clip, the same both ways round.

Clip files (`read_clip`): an animated GIF or a .npy array, checked against the run's dataset; never unpickled.

Letters: T frames, K students, C classes, Ch image channels, S frame side (H = W = S), n tokens per frame,
F token features.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from pkd.data.moving_mnist import DIGIT, MOTIONS, MovingMnistConfig, make_clip, reverse_clips
from pkd.data.spec import DatasetSpec
from pkd.flops import count_flops
from pkd.models.ensemble import Ensemble, PrefixSums

__all__ = ["ClipReport", "clip_config", "clip_from_drawing", "clip_gif", "clip_report", "frame_flops", "read_clip",
           "stream_logits", "stream_prefix_probs", "teacher_probs"]

MAX_CLIP_BYTES = 64 * 2**20  # a clip file larger than this is not one clip of a Moving MNIST run
MAX_GIF_SIDE = 4096
GIF_MAGIC = (b"GIF87a", b"GIF89a")
NPY_MAGIC = b"\x93NUMPY"


@dataclasses.dataclass
class ClipReport:
    """Everything the Clips page shows for one clip (as given: reverse it first to ask about it backwards).

    Attributes:
        prefix_probs: (T, K, C) probabilities of students 1..k together after frames 1..t.
        cumulative_flops: T lists of K ints: FLOPs of students 1..k for the first t frames (see ``frame_flops``).
        teacher_probs: (C,) the teacher's probabilities on the whole clip, or None without a teacher.
        teacher_probs_reversed: (C,) the same on the clip played backwards, or None.
    """

    prefix_probs: torch.Tensor
    cumulative_flops: list[list[int]]
    teacher_probs: torch.Tensor | None = None
    teacher_probs_reversed: torch.Tensor | None = None

    @property
    def frames(self) -> int:
        return int(self.prefix_probs.shape[0])

    def teacher_order_blind(self) -> bool | None:
        """True when the teacher's answer on the reversed clip is its answer on the clip, to 1e-6 (None: no
        teacher): what ViFi-CLIP's temporal mean guarantees."""
        if self.teacher_probs is None or self.teacher_probs_reversed is None:
            return None
        return bool(torch.allclose(self.teacher_probs, self.teacher_probs_reversed, rtol=0.0, atol=1e-6))


def _check_clip(clip: torch.Tensor, spec: DatasetSpec) -> None:
    if spec.kind != "clip":
        raise ValueError(f"dataset '{spec.name}' takes images {spec.sample_shape}, not clips")
    if not torch.is_floating_point(clip) or tuple(clip.shape) != tuple(spec.sample_shape):
        raise ValueError(f"dataset '{spec.name}' takes one clip of shape {tuple(spec.sample_shape)}, got "
                         f"{tuple(clip.shape)} {clip.dtype}")


@torch.no_grad()
def stream_logits(student: nn.Module, clip: torch.Tensor) -> torch.Tensor:
    """A student's logits after each frame, fed one frame at a time through its streaming API.

    Args:
        student: a MambaClassifier of clips (T, Ch, S, S), eval mode.
        clip: (T, Ch, S, S) normalised frames.

    Returns:
        (T, C) logits; row t uses frames 1..t+1 only.
    """
    if not hasattr(student, "start_stream") or len(getattr(student, "image_shape", ())) != 4:
        raise ValueError(f"{type(student).__name__} does not read clips frame by frame (no streaming API)")
    state = student.start_stream(1)
    out = []
    for t in range(clip.shape[0]):
        tokens = student.frame_tokens(clip[t][None], clip[t - 1][None] if t else None)  # (1, n, F)
        out.append(student.stream(tokens, state)[:, -1])  # (1, n, C) -> (1, C) after the frame's last token
    return torch.cat(out)  # (T, C)


@torch.no_grad()
def stream_prefix_probs(ensemble: Ensemble, clip: torch.Tensor) -> torch.Tensor:
    """Every prefix's probabilities after every frame, computed frame by frame (no frame after t is read).

    Args:
        ensemble: a clip run's students.
        clip: (T, Ch, S, S) normalised frames.

    Returns:
        (T, K, C) probabilities: [t, k-1] is students 1..k together after frames 1..t+1; equal (to rounding) to
        the ensemble's full forward pass of the clip cut after frame t+1.
    """
    sums, out = PrefixSums(ensemble.mode), []
    for student, scale in zip(ensemble.students, ensemble.prev_scales):
        sums.add(stream_logits(student, clip), scale)  # the T frames as a batch of T answers (T, C)
        out.append(sums.log_probs().exp())  # (T, C)
    return torch.stack(out, dim=1)  # (T, K, C)


class _FirstFrames(nn.Module):
    """A student fed a clip's first t frames, for counting what they cost (frame differences included)."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.student.forward_tokens(self.student.tokenize_frames(frames))  # (1, t, Ch, S, S) -> (1, C)


def frame_flops(ensemble: Ensemble) -> list[list[int]]:
    """FLOPs of students 1..k for the first t frames of a clip, counted by pkd.flops on the forward pass of
    those t frames (after all T frames: the ensemble's cumulative FLOPs).

    Returns:
        T lists of K ints, [t-1][k-1] = FLOPs of students 1..k on frames 1..t.
    """
    per_student = []  # K lists of T
    for student in ensemble.students:
        frames, frame_shape = student.image_shape[0], student.image_shape[1:]  # T, (Ch, S, S)
        counted = _FirstFrames(student)
        per_student.append([int(count_flops(counted, (t, *frame_shape)).flops) for t in range(1, frames + 1)])
    frames = len(per_student[0])
    return [np.cumsum([per_student[j][t] for j in range(ensemble.k)]).astype(int).tolist() for t in range(frames)]


@torch.no_grad()
def teacher_probs(teacher: nn.Module, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's probabilities on the whole clip and on the clip played backwards.

    Args:
        teacher: a clip run's teacher, eval mode.
        clip: (T, Ch, S, S) normalised frames.

    Returns:
        (C,) forwards, (C,) backwards.
    """
    both = torch.stack([clip, reverse_clips(clip)])  # (2, T, Ch, S, S)
    probs = torch.softmax(teacher(both).float(), dim=-1)  # (2, C)
    return probs[0], probs[1]


def clip_report(
    ensemble: Ensemble,
    spec: DatasetSpec,
    clip: torch.Tensor,
    teacher: nn.Module | None = None,
    flops: list[list[int]] | None = None,
) -> ClipReport:
    """Every prefix's answer after every frame, their FLOPs, and the teacher's answer both ways round.

    Args:
        ensemble: the run's students.
        spec: the run's clip dataset (normalisation).
        clip: (T, Ch, S, S) raw frames in [0, 1] (reverse_clips first to ask about the clip backwards).
        teacher: the run's teacher, optional.
        flops: ``frame_flops(ensemble)`` if the caller keeps it; computed when None.
    """
    _check_clip(clip, spec)
    x = spec.normalize(clip.float())  # (T, Ch, S, S)
    probs = stream_prefix_probs(ensemble, x)  # (T, K, C)
    forwards, backwards = teacher_probs(teacher, x) if teacher is not None else (None, None)
    return ClipReport(probs, flops if flops is not None else frame_flops(ensemble), forwards, backwards)


# --------------------------------------------------------------------------------------------- making clips

def clip_config(spec: DatasetSpec) -> MovingMnistConfig:
    """The Moving MNIST generator sizes of a clip dataset, from its sample shape (T, 1, S, S): T frames of S px,
    speeds 1-2 px/frame, and zoom 0.6x up to 1.5x or the largest size (in 0.01 steps) that fits the canvas, as the
    registered datasets use (moving_mnist 1.5x on 48 px, moving_mnist_small 1.35x on 40 px)."""
    if spec.kind != "clip" or spec.sample_shape[1] != 1 or spec.sample_shape[2] != spec.sample_shape[3]:
        raise ValueError(f"dataset '{spec.name}' is not a Moving MNIST clip dataset (T, 1, S, S): "
                         f"{spec.sample_shape}")
    frames, _, side, _ = spec.sample_shape
    large = min(1.5, math.floor((side - 2) / DIGIT * 100) / 100)
    speed_max = max(1, min(2, (side - DIGIT) // max(frames - 1, 1)))
    return MovingMnistConfig(frames=frames, canvas=side, speed_min=1, speed_max=speed_max, zoom=(0.6, large))


def clip_from_drawing(image: torch.Tensor, motion: str, spec: DatasetSpec) -> torch.Tensor:
    """A clip of the run's size from one MNIST-style digit (e.g. ``preprocess.prepare_drawing``'s output).

    Args:
        image: (1, 28, 28) or (28, 28) in [0, 1].
        motion: one of MOTIONS ("moving left", ...).
        spec: the run's clip dataset.

    Returns:
        (T, 1, S, S) float32 in [0, 1], the digit centred, moving as asked.
    """
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; choose one of: {', '.join(MOTIONS)}")
    return make_clip(image, motion, clip_config(spec))


def clip_gif(clip: torch.Tensor, scale: int = 1, frame_ms: int = 400) -> bytes:
    """An animated greyscale GIF of a clip (looping), each pixel a scale x scale block.

    Args:
        clip: (T, 1, S, S) or (T, S, S) in [0, 1].
        scale: enlargement (nearest neighbour), 1..16.
        frame_ms: how long each frame shows.

    Returns:
        The GIF file's bytes; ``read_clip`` of them at scale 1 gives the clip back to 1/255 (Pillow merges
        identical consecutive frames into one longer frame, so only a clip whose frames all differ keeps T).
    """
    from PIL import Image

    frames = clip.reshape(clip.shape[0], clip.shape[-2], clip.shape[-1]) if clip.dim() == 4 else clip  # (T, S, S)
    if frames.dim() != 3 or (clip.dim() == 4 and clip.shape[1] != 1) or not 1 <= scale <= 16:
        raise ValueError(f"clip_gif takes a grey clip (T, 1, S, S) or (T, S, S) and a scale 1..16, got "
                         f"{tuple(clip.shape)}, scale {scale}")
    pixels = (frames.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).numpy()  # (T, S, S)
    pixels = np.kron(pixels, np.ones((1, scale, scale), dtype=np.uint8)) if scale > 1 else pixels
    images = [Image.fromarray(frame, mode="L") for frame in pixels]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=frame_ms, loop=0,
                   optimize=False, disposal=1)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------- reading clips

def read_clip(path: str | os.PathLike[str], spec: DatasetSpec) -> torch.Tensor:
    """Read a clip file for a run of ``spec``: an animated GIF or a .npy array (recognised by their contents).

    GIF: every frame converted to grey and resized (antialiased) to S x S. .npy: (T, S, S) or (T, 1, S, S), uint8
    (0..255) or float ([0, 1]); loaded with allow_pickle=False, so a pickle is refused, never run.

    Args:
        path: the file.
        spec: the run's clip dataset (T, 1, S, S).

    Returns:
        (T, 1, S, S) float32 in [0, 1], not normalised.

    Raises:
        FileNotFoundError: no such file.
        ValueError: anything else wrong with it, in one line (not a file, not a GIF or .npy, too large, wrong
            number of frames or shape, values out of range or not finite).
    """
    if spec.kind != "clip":
        raise ValueError(f"dataset '{spec.name}' takes images, not clips; give a PNG or JPEG picture")
    frames, channels, side, _ = spec.sample_shape
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise FileNotFoundError(f"clip file not found: {path}")
    if not path.is_file():
        raise ValueError(f"{path}: is not a file; give an animated GIF or a .npy clip")
    if path.stat().st_size > MAX_CLIP_BYTES:
        raise ValueError(f"{path}: {path.stat().st_size:,} bytes is too large for a clip (at most "
                         f"{MAX_CLIP_BYTES:,})")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[:6] in GIF_MAGIC:
        pixels = _gif_frames(path, side)  # (T', S, S) float
    elif head[:6] == NPY_MAGIC:
        pixels = _npy_frames(path, side)
    else:
        raise ValueError(f"{path}: not an animated GIF or a .npy file (its first bytes are {head[:6]!r})")
    if pixels.shape[0] != frames:
        raise ValueError(f"{path}: has {pixels.shape[0]} frames but this run's clips have {frames}; give a clip of "
                         f"{frames} frames")
    clip = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))[:, None]  # (T, 1, S, S)
    return clip.expand(frames, channels, side, side).contiguous() if channels != 1 else clip


def _gif_frames(path: Path, side: int) -> np.ndarray:
    """(T', S, S) float64 in [0, 1] from every frame of a GIF."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if max(im.size) > MAX_GIF_SIDE or getattr(im, "n_frames", 1) > 1024:
                raise ValueError(f"{path}: {im.size[0]}x{im.size[1]} px, {getattr(im, 'n_frames', 1)} frames is "
                                 f"not a clip (sides up to {MAX_GIF_SIDE} px, up to 1024 frames)")
            out = [np.asarray(frame.convert("L").resize((side, side), Image.Resampling.BILINEAR, reducing_gap=None),
                              dtype=np.float64) / 255.0
                   if frame.size != (side, side) else np.asarray(frame.convert("L"), dtype=np.float64) / 255.0
                   for frame in ImageSequence.Iterator(im)]
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{path}: not a GIF Pillow can read ({exc})") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot decode the GIF ({exc})") from None
    return np.stack(out)


def _npy_frames(path: Path, side: int) -> np.ndarray:
    """(T', S, S) float64 in [0, 1] from a .npy array (T, S, S) or (T, 1, S, S)."""
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # allow_pickle=False refuses object arrays and pickled data
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        if isinstance(exc, ValueError) and "pickle" in reason:
            raise ValueError(f"{path}: refused, a .npy clip must be a plain numeric array without pickled objects "
                             f"({reason})") from None
        raise ValueError(f"{path}: not a readable .npy file ({reason})") from None
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{path}: holds several arrays (.npz); give one (T, {side}, {side}) array")
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 3 or a.shape[1:] != (side, side):
        raise ValueError(f"{path}: array of shape {a.shape}; this run takes (T, {side}, {side}) or "
                         f"(T, 1, {side}, {side})")
    if a.dtype.kind in "iu":
        if a.size and (a.min() < 0 or a.max() > 255):
            raise ValueError(f"{path}: integer frames must hold 0..255, got {a.min()}..{a.max()}")
        return a.astype(np.float64) / 255.0
    if a.dtype.kind == "b":
        return a.astype(np.float64)
    if a.dtype.kind != "f":
        raise ValueError(f"{path}: dtype {a.dtype} is not a number type; use float32 in [0, 1] or uint8")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{path}: frames hold NaN or infinity; values must be finite, in [0, 1]")
    if a.size and (a.min() < 0.0 or a.max() > 1.0):
        raise ValueError(f"{path}: float frames must hold values in [0, 1], got {a.min():.3g}..{a.max():.3g}")
    return a
