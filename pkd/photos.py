"""The re-photographed Fashion-MNIST set: test images turned back into photos of a garment on a table, then read
the way the app reads an uploaded photo. No camera reaches these machines, so this stands in for one (as pkd.drawn
stands in for people drawing digits); it is seeded and never trained on.

Each photo is made from one test image (28x28, the object bright on black, as Zalando negated their product
photos) by a chain of what a phone camera does to a garment laid on a table:
1. un-negated and enlarged: the garment dark on a light ground, its longer side 45-80% of a 192 px photo, placed
   off centre;
2. perspective: the photo's corners moved by up to 10% of its side (a camera not square to the table);
3. a textured background: a light tone with low-frequency blotches, fine grain and, half the time, wood-like
   stripes; the garment darkens it multiplicatively (a tint per photo makes it colour);
4. lighting: brightness 0.7-1.1 and a linear fall-off of up to 40% across the photo in a random direction;
5. blur: Gaussian, radius 0.3-1.8 px (focus and shake);
6. JPEG at quality 25-75.
The photo then goes through `pkd.preprocess.prepare_photo` (the app's and `pkd predict`'s picture path).

Shape letters: N photos, S the photo side (PHOTO_SIDE).
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, ImageFilter

from pkd.data.spec import Split
from pkd.preprocess.photos import prepare_photo

PHOTO_SIDE = 192
PER_CLASS, SEED = 50, 0  # the set `pkd eval` measures Fashion-MNIST runs on: 500 photos


def _perspective_coeffs(src: list[tuple[float, float]], dst: list[tuple[float, float]]) -> list[float]:
    """PIL's 8 PERSPECTIVE coefficients mapping output corners ``dst`` back to input corners ``src``."""
    rows = []
    for (x, y), (u, v) in zip(dst, src):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    return np.linalg.solve(np.array(rows, dtype=np.float64), np.array(src, dtype=np.float64).ravel()).tolist()


def _background(rng: np.random.Generator, side: int) -> np.ndarray:
    """A light textured table: tone + blotches (8x8 noise enlarged) + grain (+ stripes half the time), (S, S)."""
    blotches = np.asarray(Image.fromarray(rng.uniform(-1, 1, (8, 8)).astype(np.float32)).resize(
        (side, side), Image.BICUBIC))  # (S, S)
    ground = rng.uniform(0.72, 0.95) + 0.05 * blotches + rng.normal(0, 0.025, (side, side))
    if rng.random() < 0.5:
        angle, period = rng.uniform(0, np.pi), rng.uniform(6, 18)
        yy, xx = np.mgrid[0:side, 0:side]
        ground += 0.04 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    return ground


def rephotograph(image: np.ndarray, rng: np.random.Generator, side: int = PHOTO_SIDE) -> np.ndarray:
    """One test image (28, 28) in [0, 1] -> a photo (S, S, 3) uint8 of it on a table (the chain in the module doc)."""
    size = int(side * rng.uniform(0.45, 0.80))
    layer = Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
    canvas = Image.new("L", (side, side))
    room = side - size
    canvas.paste(layer, (int(rng.uniform(0.2, 0.8) * room), int(rng.uniform(0.2, 0.8) * room)))
    corners = [(0.0, 0.0), (side, 0.0), (side, side), (0.0, side)]
    moved = [(x + rng.uniform(-0.1, 0.1) * side, y + rng.uniform(-0.1, 0.1) * side) for x, y in corners]
    warped = canvas.transform((side, side), Image.PERSPECTIVE, _perspective_coeffs(corners, moved),
                              Image.BILINEAR)
    garment = np.asarray(warped, dtype=np.float64) / 255.0  # (S, S): 1 = darkest part of the garment
    tint = rng.uniform(0.8, 1.0, 3)  # (3,) the garment's colour
    ground = _background(rng, side)[..., None]  # (S, S, 1)
    photo = ground * (1.0 - garment[..., None] * (1.0 - 0.15 * tint))  # (S, S, 3) garment darkens the table
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:side, 0:side] / side - 0.5
    falloff = 1.0 - rng.uniform(0, 0.4) * (0.5 + xx * np.cos(angle) + yy * np.sin(angle)).clip(0, 1)
    photo = photo * rng.uniform(0.7, 1.1) * falloff[..., None]
    picture = Image.fromarray((np.clip(photo, 0, 1) * 255).astype(np.uint8), "RGB")
    picture = picture.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.8)))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=int(rng.integers(25, 76)))
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")).copy()


def photo_indices(labels: torch.Tensor, per_class: int) -> np.ndarray:
    """The test images the set is made from: the first ``per_class`` of every class, in test-set order, (N,)."""
    y = labels.numpy()
    return np.sort(np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(int(y.max()) + 1)]))


def photo_set(test: Split, per_class: int = PER_CLASS, seed: int = SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """The re-photographed set, read through the app's picture path.

    Args:
        test: the dataset's test split (images (N, 1, 28, 28)).
        per_class: photos per class.
        seed: seeds every random draw of the chain.

    Returns:
        images (N, 1, 28, 28) float32 as prepare_photo made them (a photo in which it finds no object gives an
        all-black image, which counts as it is) and their labels (N,) int64.
    """
    rng = np.random.default_rng(seed)
    index = photo_indices(test.labels, per_class)
    images = []
    for i in index:
        read = prepare_photo(rephotograph(test.inputs[i, 0].numpy(), rng))
        images.append(read if read is not None else torch.zeros(1, 28, 28))
    return torch.stack(images), test.labels[torch.from_numpy(index)]
