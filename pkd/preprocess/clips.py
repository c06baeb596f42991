"""Clips in and out for a clip run: a drawn digit made into a moving clip, clip files read (and written as GIFs).

The clip twin of `pkd.preprocess.images`: the app's Clips page and `pkd predict RUN clip.gif|clip.npy` turn what
they are given into the (T, Ch, S, S) frames in [0, 1] a run's models read (`pkd.inference` then runs them).

Clip files (`read_clip`): an animated GIF or a .npy array, checked against the run's dataset; never unpickled.

Letters: T frames, Ch image channels, S frame side (H = W = S).
"""

from __future__ import annotations

import io
import math
import os
import stat
from pathlib import Path

import numpy as np
import torch

from pkd.data.moving_mnist import DIGIT, MOTIONS, MovingMnistConfig, make_clip
from pkd.data.spec import DatasetSpec

__all__ = ["clip_config", "clip_from_drawing", "clip_gif", "read_clip"]

MAX_CLIP_BYTES = 64 * 2**20  # a clip file larger than this is not one clip of a Moving MNIST run
MAX_GIF_SIDE = 4096
GIF_MAGIC = (b"GIF87a", b"GIF89a")
NPY_MAGIC = b"\x93NUMPY"


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
    with _open_file(path) as fh:  # the one descriptor everything is read from: no file swapped in meanwhile
        size = os.fstat(fh.fileno()).st_size
        if size > MAX_CLIP_BYTES:
            raise ValueError(f"{path}: {size:,} bytes is too large for a clip (at most {MAX_CLIP_BYTES:,})")
        head = fh.read(8)
        fh.seek(0)
        if head[:6] in GIF_MAGIC:
            pixels = _gif_frames(fh, path, side, frames)  # (T', S, S) float
        elif head[:6] == NPY_MAGIC:
            _check_npy_header(fh, path, size, frames, side)  # before numpy allocates anything
            fh.seek(0)
            pixels = _npy_frames(fh, path, side)
        else:
            raise ValueError(f"{path}: not an animated GIF or a .npy file (its first bytes are {head[:6]!r})")
    if pixels.shape[0] != frames:
        raise ValueError(f"{path}: has {pixels.shape[0]} frames but this run's clips have {frames}; give a clip of "
                         f"{frames} frames")
    clip = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))[:, None]  # (T, 1, S, S)
    return clip.expand(frames, channels, side, side).contiguous() if channels != 1 else clip


def _open_file(path: Path) -> io.BufferedReader:
    """`path` opened for reading; ValueError unless it is a regular file (opened non-blocking and checked on the
    descriptor, so a FIFO or a device swapped in cannot block the reader)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ValueError(f"{path}: is not a file; give an animated GIF or a .npy clip")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _check_npy_header(fh: io.BufferedReader, path: Path, size: int, frames: int, side: int) -> None:
    """The .npy header (shape, dtype, data size) checked against the run's clips before anything is allocated:
    (T, S, S) or (T, 1, S, S) of a number type, T = `frames`, and exactly the bytes that shape needs."""
    try:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(fh)
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise ValueError(f"{path}: not a readable .npy file ({(str(exc).splitlines() or ['?'])[0][:200]})") from None
    if dtype.hasobject:
        raise ValueError(f"{path}: refused, a .npy clip must be a plain numeric array without pickled objects")
    if dtype.kind not in "iufb":
        raise ValueError(f"{path}: dtype {dtype} is not a number type; use float32 in [0, 1] or uint8")
    frame = tuple(shape[1:]) in ((side, side), (1, side, side))
    if not frame:
        raise ValueError(f"{path}: array of shape {shape}; this run takes (T, {side}, {side}) or "
                         f"(T, 1, {side}, {side})")
    if shape[0] != frames:
        raise ValueError(f"{path}: has {shape[0]} frames but this run's clips have {frames}; give a clip of "
                         f"{frames} frames")
    need = math.prod(shape) * dtype.itemsize
    if size - fh.tell() != need:
        raise ValueError(f"{path}: not a readable .npy file (its header promises {need:,} bytes of data, the file "
                         f"holds {size - fh.tell():,})")


def _gif_frames(fh: io.BufferedReader, path: Path, side: int, frames: int) -> np.ndarray:
    """(T', S, S) float64 in [0, 1] from every frame of the GIF open as `fh` (its size and frame count checked
    first)."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        with Image.open(fh) as im:
            if max(im.size) > MAX_GIF_SIDE or getattr(im, "n_frames", 1) > 1024:
                raise ValueError(f"{path}: {im.size[0]}x{im.size[1]} px, {getattr(im, 'n_frames', 1)} frames is "
                                 f"not a clip (sides up to {MAX_GIF_SIDE} px, up to 1024 frames)")
            if getattr(im, "n_frames", 1) != frames:
                raise ValueError(f"{path}: has {getattr(im, 'n_frames', 1)} frames but this run's clips have "
                                 f"{frames}; give a clip of {frames} frames")
            out = [np.asarray(frame.convert("L").resize((side, side), Image.Resampling.BILINEAR, reducing_gap=None),
                              dtype=np.float64) / 255.0
                   if frame.size != (side, side) else np.asarray(frame.convert("L"), dtype=np.float64) / 255.0
                   for frame in ImageSequence.Iterator(im)]
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{path}: not a GIF Pillow can read ({exc})") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot decode the GIF ({exc})") from None
    return np.stack(out)


def _npy_frames(fh: io.BufferedReader, path: Path, side: int) -> np.ndarray:
    """(T', S, S) float64 in [0, 1] from the .npy array (T, S, S) or (T, 1, S, S) open as `fh`."""
    try:
        a = np.load(fh, allow_pickle=False)
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
