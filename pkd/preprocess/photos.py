"""A photo of one object (a garment or a shoe) -> a Fashion-MNIST-style image, made the way Zalando made theirs:
grey, the object bright on black (a light background is inverted), trimmed to the object, its longer side scaled
to 28 px and centred. The app's upload and `pkd predict` share this path (``pkd.preprocess.prepare_image`` sends
pictures for a spec with ``photos`` here); `pkd.photos` feeds its re-photographed test images through it too.

Shape letters: H/W of the picture (any size up to pkd.preprocess.MAX_IMAGE_SIDE). Output in [0, 1], not
normalised (``DatasetSpec.normalize`` does that).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pkd.preprocess.images import _to_gray

SIDE = 28  # Fashion-MNIST's image side; the object's longer side fills it
BORDER = 0.04  # share of each side read as background (the picture's frame)
OBJECT_THRESHOLD = 0.12  # brightness above the background's (after inversion) that counts as object
MIN_OBJECT_SHARE = 0.02  # of the picture's rows/columns: an object narrower than this is a speck
SPECK_SHARE = 0.05  # a row or column whose object pixels are fewer than this share of it is background noise


def _frame(shape: tuple[int, int]) -> np.ndarray:
    """A mask (H, W) of the picture's frame: the outer BORDER share of each side, read as background."""
    h, w = shape
    bh, bw = max(1, round(h * BORDER)), max(1, round(w * BORDER))
    frame = np.zeros(shape, dtype=bool)
    frame[:bh], frame[-bh:], frame[:, :bw], frame[:, -bw:] = True, True, True, True
    return frame


def _background(gray: np.ndarray) -> np.ndarray:
    """The background's brightness at every pixel (H, W): a plane a + b*x + c*y fitted to the frame by least
    squares, refitted once without the frame pixels it fits worst (an object touching the edge), so that light
    falling off across the table is not taken for the object."""
    h, w = gray.shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)  # (H, W) each
    keep = _frame(gray.shape)
    for _ in range(2):
        design = np.stack([np.ones(keep.sum()), xx[keep], yy[keep]], 1)  # (F, 3)
        coef = np.linalg.lstsq(design, gray[keep], rcond=None)[0]  # (3,)
        plane = coef[0] + coef[1] * xx + coef[2] * yy  # (H, W)
        residual = np.abs(gray - plane)
        keep = keep & (residual <= np.percentile(residual[keep], 80))
    return plane


def _object_box(mask: np.ndarray) -> tuple[slice, slice] | None:
    """The rows and columns holding the object: those with more object pixels than SPECK_SHARE of their length
    (so specks of texture and JPEG noise do not stretch the box); None when the object is missing or a speck."""
    h, w = mask.shape
    rows = np.flatnonzero(mask.sum(1) > SPECK_SHARE * w)
    cols = np.flatnonzero(mask.sum(0) > SPECK_SHARE * h)
    if len(rows) == 0 or len(cols) == 0:
        return None
    if rows[-1] - rows[0] + 1 < MIN_OBJECT_SHARE * h or cols[-1] - cols[0] + 1 < MIN_OBJECT_SHARE * w:
        return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _lift(gray: np.ndarray) -> tuple[np.ndarray, bool]:
    """The object's brightness above the background, (H, W) >= 0, and whether the picture was inverted for it:
    the background plane subtracted, then negated when the strongest departures from it are dark (an object
    darker than its ground, as a garment on paper)."""
    lifted = gray - _background(gray)  # (H, W): background at 0, the object above it or below it
    inverted = bool(-np.percentile(lifted, 1) > np.percentile(lifted, 99))
    return np.clip(-lifted if inverted else lifted, 0.0, None), inverted


def photo_is_light(image: np.ndarray) -> bool:
    """True when the object is darker than its background (a garment on a light table): prepare_photo inverts it."""
    return _lift(_to_gray(image))[1]


def prepare_photo(image: np.ndarray) -> torch.Tensor | None:
    """Turn a photo of one object into the (1, 28, 28) image a Fashion-MNIST model reads.

    Steps: grey (ITU-R 601 luma; RGBA over black); the background (a plane fitted to the picture's frame: light
    falling off across the table) subtracted; inverted when the object is darker than its background (a garment
    on paper or a table), so the object is bright on black as in the dataset; the
    object's brightest 1% stretched to 1; trimmed to the object's bounding box (pixels at least OBJECT_THRESHOLD
    above the background, ignoring rows and columns with only specks); its longer side scaled (antialiased) to
    28 px and the box centred in a black 28x28 field.

    Args:
        image: (H, W), (H, W, 3) or (H, W, 4) uint8 (0..255) or float ([0, 1]) array, e.g. from
            ``pkd.preprocess.load_image_file``.

    Returns:
        (1, 28, 28) float32 in [0, 1], or None when no object stands out from the background (a blank picture).
    """
    lifted, _ = _lift(_to_gray(image))  # (H, W) >= 0: the object bright, the background at 0
    box = _object_box(lifted > OBJECT_THRESHOLD)
    if box is None:
        return None
    crop = lifted[box]  # (h, w)
    top = float(np.percentile(crop, 99))
    crop = np.clip(crop / max(top, 1e-6), 0.0, 1.0)
    h, w = crop.shape
    scale = SIDE / max(h, w)
    size = (max(1, min(SIDE, round(h * scale))), max(1, min(SIDE, round(w * scale))))
    obj = F.interpolate(torch.from_numpy(crop)[None, None], size=size, mode="bilinear", antialias=True,
                        align_corners=False)[0, 0].clamp_(0.0, 1.0)  # (h', w')
    out = torch.zeros(1, SIDE, SIDE, dtype=torch.float32)  # (1, 28, 28)
    y0, x0 = (SIDE - size[0]) // 2, (SIDE - size[1]) // 2
    out[0, y0 : y0 + size[0], x0 : x0 + size[1]] = obj.to(torch.float32)
    return out
