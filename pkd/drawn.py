"""The drawn-digit robustness set: digits drawn the way people draw on the app's canvas, seeded, never trained on.

Each digit is a few pen strokes (a template per way of writing it: a 7 with or without a bar, an open or closed 4,
...), jittered, slanted, rotated, sized and placed at random on a 280x280 canvas, stroked with a round pen of the
canvas's width and anti-aliased by 4x supersampling; then it goes through the app's own preprocessing
(`pkd.preprocess.prepare_drawing`). A small digit drawn with the fixed pen gives thick strokes after scaling to
MNIST's 20 px box, a large one thin strokes: the variation the canvas really produces.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import Image, ImageDraw

from pkd.preprocess import images as preprocess  # prepare_drawing's module: its source is in the digest
from pkd.preprocess.images import prepare_drawing

log = logging.getLogger(__name__)

CANVAS = 280  # the Playground's canvas side, px
PEN = 20  # the Playground's stroke width, px
SUPERSAMPLE = 4

# Strokes in a unit box (x right, y down). "L" strokes are straight segments through the points, "C" strokes a
# smooth curve through them (Catmull-Rom). One entry per way of writing the digit.
TEMPLATES: dict[int, list[list[tuple[str, list[tuple[float, float]]]]]] = {
    0: [[("C", [(0.5, 0.0), (0.12, 0.2), (0.08, 0.6), (0.35, 1.0), (0.75, 0.9), (0.92, 0.45), (0.75, 0.08),
                (0.5, 0.0)])]],
    1: [[("L", [(0.5, 0.0), (0.5, 1.0)])],
        [("L", [(0.2, 0.25), (0.55, 0.0), (0.55, 1.0)])]],
    2: [[("C", [(0.1, 0.25), (0.45, 0.0), (0.85, 0.2), (0.7, 0.55), (0.1, 1.0)]), ("L", [(0.1, 1.0), (0.95, 1.0)])]],
    3: [[("C", [(0.1, 0.12), (0.55, 0.0), (0.85, 0.22), (0.45, 0.48)]),
         ("C", [(0.45, 0.48), (0.9, 0.72), (0.6, 1.0), (0.08, 0.88)])]],
    4: [[("L", [(0.62, 0.0), (0.05, 0.68), (0.95, 0.68)]), ("L", [(0.66, 0.3), (0.66, 1.0)])],
        [("L", [(0.15, 0.0), (0.1, 0.6), (0.9, 0.6)]), ("L", [(0.72, 0.1), (0.72, 1.0)])]],
    5: [[("L", [(0.85, 0.0), (0.2, 0.0), (0.15, 0.45)]),
         ("C", [(0.15, 0.45), (0.6, 0.38), (0.9, 0.68), (0.55, 1.0), (0.08, 0.88)])]],
    6: [[("C", [(0.75, 0.0), (0.3, 0.3), (0.12, 0.72), (0.45, 1.0), (0.85, 0.8), (0.65, 0.5), (0.3, 0.55),
                (0.14, 0.72)])]],
    7: [[("L", [(0.05, 0.0), (0.95, 0.0), (0.4, 1.0)])],
        [("L", [(0.05, 0.0), (0.95, 0.0), (0.4, 1.0)]), ("L", [(0.3, 0.52), (0.85, 0.5)])]],
    8: [[("C", [(0.5, 0.48), (0.15, 0.25), (0.5, 0.0), (0.85, 0.25), (0.5, 0.48), (0.12, 0.75), (0.5, 1.0),
                (0.88, 0.75), (0.5, 0.48)])]],
    9: [[("C", [(0.85, 0.15), (0.5, 0.0), (0.15, 0.22), (0.4, 0.5), (0.82, 0.35), (0.85, 0.15)]),
         ("L", [(0.85, 0.15), (0.8, 1.0)])],
        [("C", [(0.85, 0.15), (0.5, 0.0), (0.15, 0.22), (0.4, 0.5), (0.82, 0.35), (0.85, 0.15)]),
         ("C", [(0.85, 0.15), (0.8, 0.6), (0.55, 1.0)])]],
}


def _catmull_rom(points: np.ndarray, per_segment: int = 12) -> np.ndarray:
    """(P, 2) control points -> (M, 2) points of the Catmull-Rom curve through them (ends repeated)."""
    p = np.concatenate([points[:1], points, points[-1:]])  # (P+2, 2)
    t = np.linspace(0.0, 1.0, per_segment, endpoint=False)[:, None]  # (S, 1)
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                          + (3 * p1 - p0 - 3 * p2 + p3) * t**3))
    out.append(p[-2:-1])
    return np.concatenate(out)


def _densify(points: np.ndarray, per_segment: int = 12) -> np.ndarray:
    """(P, 2) corners of a polyline -> (M, 2) points along its straight segments (corners kept)."""
    t = np.linspace(0.0, 1.0, per_segment, endpoint=False)[:, None]  # (S, 1)
    parts = [a + (b - a) * t for a, b in zip(points[:-1], points[1:])]
    return np.concatenate(parts + [points[-1:]])


def _wobble(m: int, rng: np.random.Generator, amplitude: float = 0.025) -> np.ndarray:
    """(M, 2) smooth random offsets along a stroke of M points (a random walk, low-pass filtered)."""
    walk = np.cumsum(rng.normal(0.0, 1.0, size=(m, 2)), axis=0)
    kernel = np.ones(7) / 7
    smooth = np.stack([np.convolve(walk[:, i], kernel, mode="same") for i in range(2)], 1)
    smooth -= smooth.mean(0)
    return amplitude * smooth / max(float(np.abs(smooth).max()), 1e-9)


def _pose(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """A random writing pose: (2, 2) linear map of the unit box (aspect, slant, rotation), canvas offset, height."""
    height = rng.uniform(45, 260)  # px on the 280 px canvas: small digits end up thick-stroked, large ones thin
    width = height * rng.uniform(0.55, 0.95)
    slant, angle = rng.uniform(-0.2, 0.35), math.radians(rng.uniform(-12, 12))
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    linear = rot @ np.array([[width, -slant * height], [0.0, height]])  # x' = w x - slant h y (top leans right)
    margin = PEN + 0.5 * max(width, height) * 1.2
    centre = rng.uniform(margin, CANVAS - margin, size=2) if margin < CANVAS / 2 else np.full(2, CANVAS / 2)
    return linear, centre, height


def draw_digit(digit: int, rng: np.random.Generator) -> np.ndarray:
    """One drawn digit as the canvas sends it: (280, 280, 4) uint8 RGBA, white ink, alpha = coverage."""
    strokes = TEMPLATES[digit][rng.integers(len(TEMPLATES[digit]))]
    linear, centre, _ = _pose(rng)
    pen = rng.uniform(0.8, 1.2) * PEN * SUPERSAMPLE
    big = Image.new("L", (CANVAS * SUPERSAMPLE, CANVAS * SUPERSAMPLE), 0)
    ink = ImageDraw.Draw(big)
    for kind, pts in strokes:
        p = np.asarray(pts) + rng.normal(0.0, 0.035, size=(len(pts), 2))  # (P, 2) a hand is never exact
        path = _catmull_rom(p) if kind == "C" else _densify(p)
        path = path + _wobble(len(path), rng)  # (M, 2) the slow shake of a hand on a mouse
        xy = ((path - 0.5) @ linear.T + centre) * SUPERSAMPLE  # (M, 2) canvas px, supersampled
        flat = [tuple(q) for q in xy]
        ink.line(flat, fill=255, width=round(pen), joint="curve")
        for x, y in (flat[0], flat[-1]):  # round caps, as the canvas's pen
            ink.ellipse([x - pen / 2, y - pen / 2, x + pen / 2, y + pen / 2], fill=255)
    alpha = np.asarray(big.resize((CANVAS, CANVAS), Image.Resampling.BOX))  # (280, 280) anti-aliased
    rgba = np.zeros((CANVAS, CANVAS, 4), dtype=np.uint8)
    rgba[..., :3], rgba[..., 3] = 255, alpha
    return rgba


def drawn_digits(n_per_digit: int = 100, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The robustness set: ``n_per_digit`` drawings of each digit through the app's preprocessing.

    Returns:
        images (10 * n_per_digit, 1, 28, 28) float32 in [0, 1] (not normalised) and labels (10 * n_per_digit,)
        int64, in digit-major order. Same arguments, same tensors.
    """
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for digit in range(10):
        for _ in range(n_per_digit):
            images.append(prepare_drawing(draw_digit(digit, rng)))
            labels.append(digit)
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64)


def _generator_digest() -> str:
    """What the drawings depend on: this file, the app's preprocessing and the numpy / Pillow versions."""
    h = hashlib.sha256()
    for source in (__file__, preprocess.__file__):
        h.update(Path(source).read_bytes())
    h.update(f"numpy {np.__version__} pillow {PIL.__version__}".encode())
    return h.hexdigest()[:16]


def cached_drawn_digits(n_per_digit: int, seed: int, cache_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """`drawn_digits`, kept in ``cache_dir`` (pkd's data directory) after the first call: drawing 1,000 digits
    takes seconds and every `pkd eval` of an MNIST run needs them. The file name holds the seed, the size and a
    digest of the generator; a damaged or foreign file is ignored (weights_only load, shapes checked) and redrawn."""
    path = Path(cache_dir) / f"drawn-{seed}-{n_per_digit}-{_generator_digest()}.pt"
    n = 10 * n_per_digit
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        images, labels = saved["images"], saved["labels"]
        if images.shape == (n, 1, 28, 28) and images.dtype == torch.float32 and labels.shape == (n,) and \
                labels.dtype == torch.int64:
            return images, labels
        log.warning("ignoring %s: not a drawn-digit set of %d images", path, n)
    except FileNotFoundError:
        pass
    except Exception as exc:  # a damaged cache is redrawn, never trusted
        log.warning("ignoring the drawn-digit cache %s: %s", path, str(exc).splitlines()[0] if str(exc) else exc)
    images, labels = drawn_digits(n_per_digit, seed)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".drawn-", suffix=".tmp", delete=False) as tmp:
            torch.save({"images": images, "labels": labels}, tmp)
        os.replace(tmp.name, path)  # atomic: a concurrent reader sees the old file or the whole new one
    except OSError as exc:  # a read-only data directory: draw again next time
        log.info("drawn-digit set not cached in %s: %s", path.parent, exc)
        if tmp is not None:
            Path(tmp.name).unlink(missing_ok=True)
    return images, labels
