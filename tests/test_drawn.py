"""The drawn-digit robustness set: seeded, made through the app's preprocessing, and measured by `pkd eval`."""

from __future__ import annotations

import numpy as np
import torch

from pkd.drawn import CANVAS, TEMPLATES, draw_digit, drawn_digits
from pkd.preprocess import prepare_drawing


def test_same_seed_same_set_other_seed_other_set() -> None:
    a, la = drawn_digits(3, seed=5)
    b, lb = drawn_digits(3, seed=5)
    c, _ = drawn_digits(3, seed=6)
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(a, c)
    assert a.shape == (30, 1, 28, 28) and a.dtype == torch.float32
    assert la.tolist() == [d for d in range(10) for _ in range(3)]


def test_each_drawing_is_a_canvas_picture_through_the_apps_preprocessing() -> None:
    rng = np.random.default_rng(0)
    canvas = draw_digit(7, rng)
    assert canvas.shape == (CANVAS, CANVAS, 4) and canvas.dtype == np.uint8
    assert 0.01 < (canvas[..., 3] > 25).mean() < 0.5  # some ink, mostly background
    assert len(np.unique(canvas[..., 3])) > 10  # anti-aliased edges, not a hard mask
    x = prepare_drawing(canvas)
    assert x is not None and x.shape == (1, 28, 28)
    ys, xs = np.nonzero(x[0].numpy() > 0.1)
    assert max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 in (20, 21)  # MNIST's 20 px box


def test_the_set_varies_stroke_thickness_like_the_fixed_pen_does() -> None:
    images, _ = drawn_digits(20, seed=0)
    ink = (images > 0.5).flatten(1).float().mean(1)  # (N,) share of strong ink per image
    assert ink.max() > 2.5 * ink.min()  # small drawings end thick, large ones thin
    assert set(TEMPLATES) == set(range(10))


def test_the_shipped_teacher_reads_the_drawn_digits() -> None:
    from pkd.artifacts import load_teacher
    from pkd.data import get_dataset_spec
    from pkd.evaluate import predict_logits
    from pkd.runs import resolve_run
    from tests.pkd_process import ROOT

    images, labels = drawn_digits(10, seed=0)
    teacher = load_teacher(resolve_run(str(ROOT / "pretrained" / "mnist")))
    logits = predict_logits(teacher, get_dataset_spec("mnist"), images, torch.device("cpu"))
    assert (logits.argmax(1) == labels).float().mean() >= 0.9  # recognisable digits, not noise


def test_the_cache_gives_the_same_set_and_a_damaged_or_foreign_file_is_redrawn(tmp_path) -> None:
    """cached_drawn_digits: the first call draws and saves, the next reads the same tensors; a damaged file, a
    pickle that would run code, or tensors of another shape are ignored and redrawn; a read-only folder still
    answers."""
    import os
    import pickle

    from pkd.drawn import cached_drawn_digits

    fresh = drawn_digits(2, seed=3)
    first = cached_drawn_digits(2, 3, tmp_path)
    (saved,) = tmp_path.glob("drawn-3-2-*.pt")
    assert [p.name for p in tmp_path.iterdir()] == [saved.name]  # no temporary file left
    again = cached_drawn_digits(2, 3, tmp_path)
    for a, b, c in zip(fresh, first, again):
        assert torch.equal(a, b) and torch.equal(a, c)

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    for damage in (b"junk", pickle.dumps(Boom()), None):
        if damage is None:
            torch.save({"images": torch.zeros(3, 1, 28, 28), "labels": torch.zeros(3, dtype=torch.int64)}, saved)
        else:
            saved.write_bytes(damage)
        images, labels = cached_drawn_digits(2, 3, tmp_path)
        assert torch.equal(images, fresh[0]) and torch.equal(labels, fresh[1])
        assert not (tmp_path / "pwned").exists()
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    images, _ = cached_drawn_digits(2, 3, blocked)  # cannot cache there: drawn anyway
    assert torch.equal(images, fresh[0])
