"""Drawings and pictures -> one input image: the app's canvas (`prepare_canvas`) and `pkd predict`'s image files
(`load_image_file`, `prepare_image`) share these steps, so both refuse and accept the same pictures. Clips: the
sibling `pkd.preprocess.clips`.

Shape letters: C channels, H/W height/width of the model input; pictures are numpy arrays (H, W), (H, W, 3) or
(H, W, 4) of any size. Outputs are in [0, 1], not normalised (``DatasetSpec.normalize`` does that).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pkd.data.spec import DatasetSpec

MAX_IMAGE_SIDE = 4096
MAX_INK_FRACTION = 0.5  # prepare_drawing: more ink than this is not a digit on a black background


def _to_gray(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8/float/bool -> (H, W) float64 in [0, 1]."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))) or a.size == 0:
        raise ValueError(f"expected an image of shape (H, W), (H, W, 3) or (H, W, 4), got {a.shape}")
    if a.dtype == np.bool_:
        a = a.astype(np.float64)
    elif a.dtype.kind in "iu":
        if a.min() < 0 or a.max() > 255:
            raise ValueError(f"integer images must hold 0..255, got {a.min()}..{a.max()}")
        a = a.astype(np.float64) / 255.0
    elif a.dtype.kind == "f":
        a = a.astype(np.float64)
        if not np.isfinite(a).all():
            raise ValueError("float images must hold values in [0, 1], got NaN or infinity")
        if a.min() < 0.0 or a.max() > 1.0:
            raise ValueError(f"float images must hold values in [0, 1], got {a.min()}..{a.max()}")
    else:
        raise ValueError(f"expected a uint8, float or bool image, got dtype {a.dtype}")
    if a.ndim == 2:
        return a
    gray = a[:, :, 0] * 0.299 + a[:, :, 1] * 0.587 + a[:, :, 2] * 0.114  # ITU-R 601 luma, as PIL "L"
    if a.shape[2] == 4:
        gray = gray * a[:, :, 3]  # composite over black: transparent canvas pixels are background
    return gray


def prepare_drawing(
    image: np.ndarray,
    *,
    invert: bool = False,
    ink_threshold: float = 0.1,
) -> torch.Tensor | None:
    """Turn a drawing of white ink on black into an MNIST-style digit, as MNIST itself was made.

    Pixels brighter than ``ink_threshold`` are ink (fainter ones are cleared). The ink's bounding box is
    cropped, scaled (antialiased) so its longer side is 20 px, and pasted into a 28x28 field so that the centre
    of mass lands on pixel (14, 14) (kept inside the field). A single dot is treated like any drawing: it becomes
    a filled blob 20 px across in the centre.

    Args:
        image: (H, W), (H, W, 3) or (H, W, 4) uint8 (0..255) or float ([0, 1]) array, e.g. a 280x280 RGBA
            canvas; RGBA is composited over black.
        invert: set for dark ink on a light background (paper, most image files).
        ink_threshold: brightness in [0, 1) above which a pixel counts as ink.

    Returns:
        (1, 28, 28) float32 in [0, 1] (not normalised), or None when there is no ink.

    Raises:
        ValueError: bad shape or values, or more than half the image is ink (e.g. a full-white canvas, which is
            not a digit on a black background).
    """
    gray = _to_gray(image)  # (H, W)
    if invert:
        gray = 1.0 - gray
    ink = gray > ink_threshold  # (H, W)
    if not ink.any():
        return None
    fraction = float(ink.mean())
    if fraction > MAX_INK_FRACTION:
        raise ValueError(f"{fraction:.0%} of the image is ink, so it is not a digit: draw white strokes on a black "
                         "background (or pass invert=True for dark ink on a light background)")
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    crop = np.where(ink, gray, 0.0)[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # (h, w)
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    digit = F.interpolate(torch.from_numpy(crop)[None, None], size=size, mode="bilinear", antialias=True,
                          align_corners=False)[0, 0].clamp_(0.0, 1.0)  # (h', w')
    total = digit.sum()
    if total <= 0:  # cannot happen for ink > 0, but keep the centring defined
        return None
    cy = float((digit.sum(1) * torch.arange(size[0], dtype=digit.dtype)).sum() / total)
    cx = float((digit.sum(0) * torch.arange(size[1], dtype=digit.dtype)).sum() / total)
    top = min(max(math.floor(14.0 - cy + 0.5), 0), 28 - size[0])
    left = min(max(math.floor(14.0 - cx + 0.5), 0), 28 - size[1])
    out = torch.zeros(1, 28, 28, dtype=torch.float32)  # (1, 28, 28)
    out[0, top : top + size[0], left : left + size[1]] = digit.to(torch.float32)
    return out


def load_image_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file for ``prepare_drawing``.

    Args:
        path: any format Pillow reads; sides up to 4096 px.

    Returns:
        uint8 array: (H, W) for grayscale, (H, W, 4) for images with transparency, else (H, W, 3).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            if max(im.size) > MAX_IMAGE_SIDE:
                raise ValueError(f"{path}: image is {im.size[0]}x{im.size[1]} px; sides over {MAX_IMAGE_SIDE} px "
                                 "are refused, scale it down first")
            if im.mode in ("1", "L", "I", "I;16", "F"):
                mode = "L"
            elif im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info:
                mode = "RGBA"
            else:
                mode = "RGB"
            return np.asarray(im.convert(mode), dtype=np.uint8).copy()
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{path}: not an image Pillow can read ({exc})") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot decode the image ({exc})") from None


def _is_light(image: np.ndarray) -> bool:
    """True for a mostly light picture (median brightness above 1/2): dark ink on paper."""
    return bool(np.median(_to_gray(image)) > 0.5)


MIN_INK_EXTENT = 0.1  # ink spanning less than this share of the picture's shorter side is a dot, not a digit


def ink_extent(image: np.ndarray, ink_threshold: float = 0.1) -> float:
    """Longest side of the ink's bounding box as a share of the picture's shorter side (0.0 for no ink).

    Ink is read as ``prepare_image`` reads it: a mostly light picture is dark ink on paper. A small value means a
    dot or a speck rather than a digit.
    """
    gray = _to_gray(image)  # (H, W) in [0, 1]
    if _is_light(image):
        gray = 1.0 - gray
    ink = gray > ink_threshold
    if not ink.any():
        return 0.0
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    return max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) / min(gray.shape)


def prepare_canvas(image_data: np.ndarray | None) -> torch.Tensor | None:
    """A canvas's RGBA pixels -> the (1, 28, 28) image in [0, 1] the models see, or None for a blank canvas.

    Raises:
        ValueError: the image is not a light drawing on a dark background, or its ink is only a dot (the
            message says what to do; `pkd predict` refuses the same pictures).
    """
    if image_data is None:
        return None
    image = prepare_drawing(image_data)
    if image is not None and ink_extent(image_data) < MIN_INK_EXTENT:
        raise ValueError("Too little ink: a dot or a speck is not a digit. Draw the whole digit, larger.")
    return image


def prepare_image(spec: DatasetSpec, image: np.ndarray) -> torch.Tensor | None:
    """Turn any picture (e.g. from ``load_image_file``) into one input image for ``spec``'s models.

    For a spec with ``photos`` (Fashion-MNIST) the picture goes through ``pkd.preprocess.photos.prepare_photo``.
    For other 28x28 grayscale datasets (MNIST) it goes through ``prepare_drawing``; a mostly light picture
    (median brightness above 1/2: dark ink on paper) is inverted first. Other datasets get the picture resized
    (antialiased) to their (H, W), RGBA composited over black, gray repeated to 3 channels where needed.

    Args:
        spec: the dataset the model was trained on.
        image: (H, W), (H, W, 3) or (H, W, 4) uint8 (0..255) or float ([0, 1]) array.

    Returns:
        (C, H, W) float32 in [0, 1] (not normalised), or None for a blank MNIST-style drawing or a photo in
        which no object stands out.
    """
    if spec.kind != "image":
        raise ValueError(f"dataset '{spec.name}' takes clips {spec.sample_shape}; a picture makes one image")
    channels, height, width = spec.sample_shape
    if spec.photos and spec.sample_shape == (1, 28, 28):
        from pkd.preprocess.photos import prepare_photo  # its module imports this one

        return prepare_photo(image)
    if spec.sample_shape == (1, 28, 28):
        return prepare_drawing(image, invert=_is_light(image))
    if channels not in (1, 3):
        raise ValueError(f"dataset '{spec.name}' has {channels} channels; only 1 or 3 can come from a picture")
    if channels == 1:
        pixels = _to_gray(image)[None]  # (1, h, w)
    else:
        a = np.asarray(image)
        if a.ndim == 3 and a.shape[2] in (3, 4):
            _to_gray(a)  # validates shape, dtype and range
            rgb = a.astype(np.float64) / (255.0 if a.dtype.kind in "iu" else 1.0)
            pixels = (rgb[:, :, :3] * rgb[:, :, 3:] if a.shape[2] == 4 else rgb).transpose(2, 0, 1)  # (3, h, w)
        else:
            pixels = np.repeat(_to_gray(a)[None], 3, axis=0)  # (3, h, w)
    x = torch.from_numpy(np.ascontiguousarray(pixels)).to(torch.float32)[None]  # (1, C, h, w)
    x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return x[0].clamp_(0.0, 1.0)  # (C, H, W)
