"""Tests for pkd.preprocess.images: canvas drawings and picture files become model inputs the way MNIST was
made."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pkd import data
from pkd.preprocess import images as preprocess


def test_prepare_drawing_recovers_real_digits(mnist: dict[str, data.Split]) -> None:
    """An MNIST digit upscaled to a 280x280 canvas comes back close to itself (up to a 1 px shift)."""
    best = []
    for x in mnist["test"].inputs[:50]:  # (1, 28, 28)
        canvas = F.interpolate(x[None], size=(280, 280), mode="bilinear", align_corners=False)[0, 0]
        rgba = np.zeros((280, 280, 4), np.uint8)
        rgba[..., :3] = (canvas.clamp(0, 1).numpy() * 255).round().astype(np.uint8)[..., None]
        rgba[..., 3] = 255
        y = preprocess.prepare_drawing(rgba)
        assert y is not None and y.shape == (1, 28, 28)
        best.append(max(F.cosine_similarity(torch.roll(y, (dy, dx), (1, 2)).flatten(), x.flatten(), 0).item()
                        for dy in (-1, 0, 1) for dx in (-1, 0, 1)))
    print(f"cosine to the original: mean {np.mean(best):.4f}, min {np.min(best):.4f}")
    assert np.mean(best) > 0.95 and np.min(best) > 0.85


def _canvas_stroke() -> np.ndarray:
    """A 280x280 RGBA canvas (transparent background) with a slanted thick stroke in the upper left."""
    rgba = np.zeros((280, 280, 4), np.uint8)
    for t in np.linspace(0, 1, 200):
        r, c = int(30 + 120 * t), int(60 + 30 * t)
        rgba[r - 8 : r + 8, c - 8 : c + 8] = 255
    return rgba


def _center_of_mass(img: torch.Tensor) -> tuple[float, float]:
    w = img[0]
    idx = torch.arange(28, dtype=w.dtype)
    return float((w.sum(1) * idx).sum() / w.sum()), float((w.sum(0) * idx).sum() / w.sum())


def test_prepare_drawing_stroke_is_mnist_like() -> None:
    out = preprocess.prepare_drawing(_canvas_stroke())
    assert out is not None and out.shape == (1, 28, 28) and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1 and out.max() > 0.9
    rows = torch.nonzero(out[0].sum(1)).flatten()
    cols = torch.nonzero(out[0].sum(0)).flatten()
    assert rows[-1] - rows[0] + 1 == 20 and cols[-1] - cols[0] + 1 < 20  # longer side scaled to 20 px
    cy, cx = _center_of_mass(out)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    # the same drawing as RGB, as gray uint8, as float, and inverted on white give the same digit
    gray = _canvas_stroke()[..., 0]
    for variant in (np.repeat(gray[..., None], 3, 2), gray, gray / 255.0):
        assert torch.allclose(preprocess.prepare_drawing(variant), out, atol=1e-6)
    assert torch.allclose(preprocess.prepare_drawing(255 - gray, invert=True), out, atol=1e-6)


def test_prepare_drawing_blank_full_white_and_dot() -> None:
    assert preprocess.prepare_drawing(np.zeros((280, 280, 4), np.uint8)) is None
    transparent_white = np.zeros((280, 280, 4), np.uint8)
    transparent_white[..., :3] = 255  # white paint with alpha 0 is background
    assert preprocess.prepare_drawing(transparent_white) is None
    assert preprocess.prepare_drawing(np.full((50, 50), 0.05)) is None  # below the ink threshold
    with pytest.raises(ValueError, match=r"100% of the image is ink, so it is not a digit"):
        preprocess.prepare_drawing(np.full((280, 280, 4), 255, np.uint8))
    with pytest.raises(ValueError, match="invert=True"):
        preprocess.prepare_drawing(np.full((280, 280), 255, np.uint8))
    dot = np.zeros((280, 280), np.uint8)
    dot[200:212, 30:42] = 255  # a click with a round-ish brush in a corner
    out = preprocess.prepare_drawing(dot)
    assert out is not None and torch.count_nonzero(out[0].sum(1)) == 20  # a 20 px blob...
    cy, cx = _center_of_mass(out)
    assert abs(cy - 14) <= 0.5 + 1e-6 and abs(cx - 14) <= 0.5 + 1e-6  # ...in the centre
    pixel = np.zeros((28, 28), np.uint8)
    pixel[3, 3] = 255  # a single pixel becomes a uniform 20x20 square
    out = preprocess.prepare_drawing(pixel)[0]
    rows, cols = torch.nonzero(out, as_tuple=True)
    assert len(rows) == 400 and torch.all(out[rows, cols] == 1.0)
    assert rows.max() - rows.min() == 19 and cols.max() - cols.min() == 19 and abs(rows.float().mean() - 14) <= 0.5


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((28, 28, 2), np.uint8), r"expected an image of shape"),
        (np.zeros((0, 28), np.uint8), r"expected an image of shape"),
        (np.full((28, 28), 1.5), r"float images must hold values in \[0, 1\]"),
        (np.full((28, 28), np.nan), r"float images must hold values in \[0, 1\]"),
        (np.full((28, 28), 300, np.int64), r"integer images must hold 0..255"),
        (np.zeros((28, 28), np.complex64), r"expected a uint8, float or bool image"),
    ],
)
def test_prepare_drawing_rejects_bad_input(image: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        preprocess.prepare_drawing(image)


def test_load_image_file(tmp_path: Path) -> None:
    stroke = _canvas_stroke()
    Image.fromarray(stroke).save(tmp_path / "rgba.png")
    Image.fromarray(stroke[..., 0]).save(tmp_path / "gray.png")
    Image.fromarray(stroke[..., :3]).save(tmp_path / "rgb.bmp")
    rgba, gray, rgb = (preprocess.load_image_file(tmp_path / n) for n in ("rgba.png", "gray.png", "rgb.bmp"))
    assert rgba.shape == (280, 280, 4) and gray.shape == (280, 280) and rgb.shape == (280, 280, 3)
    assert gray.dtype == np.uint8 and np.array_equal(gray, stroke[..., 0]) and np.array_equal(rgba, stroke)
    assert torch.allclose(preprocess.prepare_drawing(rgb), preprocess.prepare_drawing(stroke), atol=1e-6)

    with pytest.raises(FileNotFoundError, match="image file not found"):
        preprocess.load_image_file(tmp_path / "missing.png")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=r"notes.txt: not an image Pillow can read"):
        preprocess.load_image_file(tmp_path / "notes.txt")
    buffer = io.BytesIO()
    Image.fromarray(stroke).save(buffer, format="PNG")
    (tmp_path / "cut.png").write_bytes(buffer.getvalue()[:400])
    with pytest.raises(ValueError, match=r"cut.png: cannot decode the image"):
        preprocess.load_image_file(tmp_path / "cut.png")
    Image.new("L", (4097, 2)).save(tmp_path / "wide.png")
    with pytest.raises(ValueError, match=r"image is 4097x2 px; sides over 4096 px are refused"):
        preprocess.load_image_file(tmp_path / "wide.png")
    Image.new("L", (4096, 2)).save(tmp_path / "ok.png")
    assert preprocess.load_image_file(tmp_path / "ok.png").shape == (2, 4096)


def test_prepare_image(tmp_path: Path) -> None:
    stroke = _canvas_stroke()[..., 0]  # white on black
    expected = preprocess.prepare_drawing(stroke)
    Image.fromarray(255 - stroke).save(tmp_path / "paper.png")  # dark ink on white paper
    on_paper = preprocess.prepare_image(data.MNIST, preprocess.load_image_file(tmp_path / "paper.png"))
    assert torch.allclose(on_paper, expected, atol=1e-6)
    assert torch.allclose(preprocess.prepare_image(data.MNIST, stroke), expected, atol=1e-6)
    assert preprocess.prepare_image(data.MNIST, np.zeros((40, 40), np.uint8)) is None

    photo = np.zeros((64, 96, 3), np.uint8)
    photo[:, :48, 0] = 255  # left half red
    x = preprocess.prepare_image(data.CIFAR10, photo)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert torch.allclose(x[0, :, :15], torch.ones(32, 15)) and x[1:].abs().max() < 1e-6 and x[0, :, 17:].max() < 1e-6
    rgba = np.concatenate([photo, np.full((64, 96, 1), 255, np.uint8)], axis=2)
    assert torch.allclose(preprocess.prepare_image(data.CIFAR10, rgba), x, atol=1e-6)
    gray = preprocess.prepare_image(data.CIFAR10, np.full((10, 10), 0.5))
    assert gray.shape == (3, 32, 32) and torch.allclose(gray, torch.full((3, 32, 32), 0.5))
    small = dataclasses.replace(data.MNIST, name="small", sample_shape=(1, 8, 8))
    assert torch.allclose(preprocess.prepare_image(small, np.full((16, 16, 3), 255, np.uint8)), torch.ones(1, 8, 8))
    with pytest.raises(ValueError, match="has 2 channels"):
        preprocess.prepare_image(dataclasses.replace(small, sample_shape=(2, 8, 8), mean=(0, 0), std=(1, 1)), photo)
    with pytest.raises(ValueError, match=r"dataset 'small' takes clips \(4, 1, 8, 8\); a picture makes one image"):
        preprocess.prepare_image(dataclasses.replace(small, sample_shape=(4, 1, 8, 8)), photo)


def test_ink_extent_reads_ink_as_prepare_image_does():
    from pkd.preprocess.images import ink_extent

    dark = np.zeros((100, 200), np.uint8)
    assert ink_extent(dark) == 0.0
    dark[10:60, 20:30] = 255  # a 50 px stroke on black
    assert ink_extent(dark) == pytest.approx(0.5)
    paper = 255 - dark  # the same stroke, dark on white paper
    assert ink_extent(paper) == pytest.approx(0.5)
    dot = np.zeros((100, 100), np.uint8)
    dot[50, 50] = 255
    assert ink_extent(dot) == pytest.approx(0.01)


def test_prepare_canvas_blank_and_drawn():
    assert preprocess.prepare_canvas(None) is None
    blank = np.zeros((280, 280, 4), dtype=np.uint8)
    blank[..., 3] = 255
    assert preprocess.prepare_canvas(blank) is None
    blank[40:240, 130:150, :3] = 255
    image = preprocess.prepare_canvas(blank)
    assert image.shape == (1, 28, 28) and float(image.max()) > 0.5
    dot = np.zeros((280, 280, 4), dtype=np.uint8)
    dot[..., 3] = 255
    dot[138:144, 138:144, :3] = 255  # one brush dab: 6 px of 280
    with pytest.raises(ValueError, match="Too little ink"):
        preprocess.prepare_canvas(dot)
