"""Tests for pkd.models.student: the registered Mamba classifier's argument checks, shapes and training signal."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pkd.models import build_student
from tests.models.seeding import randn, seeded


@pytest.mark.parametrize("kwargs, field", [
    ({"d_model": 0}, "d_model"),
    ({"d_model": "32"}, "d_model"),
    ({"d_model": 8.0}, "d_model"),
    ({"n_layers": -1}, "n_layers"),
    ({"d_state": 0}, "d_state"),
    ({"expand": 0}, "expand"),
    ({"d_conv": 0}, "d_conv"),
    ({"num_classes": 1}, "num_classes"),
    ({"tokens": "pixels"}, "tokens"),
    ({"pool": "max"}, "pool"),
    ({"tokens": "patch", "patch": 5}, "patch"),
    ({"tokens": "patch", "patch": 0}, "patch"),
    ({"image_shape": [1, 28]}, "image_shape"),
    ({"image_shape": [1, 0, 28]}, r"image_shape\[1\]"),
])
def test_impossible_student_sizes_raise_one_line(kwargs, field):
    with pytest.raises(ValueError, match=field) as info:
        build_student("mamba", **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs, seq_len", [
    ({}, 28),
    ({"tokens": "patch", "patch": 4}, 49),
    ({"tokens": "patch", "patch": 7, "pool": "last", "n_layers": 2}, 16),
    ({"image_shape": [3, 32, 32], "tokens": "patch", "patch": 4, "d_model": 8}, 64),
    ({"image_shape": (3, 8, 6), "tokens": "rows", "d_model": 8, "num_classes": 3}, 8),
])
def test_classifier_shapes(kwargs, seq_len):
    m = seeded(0, build_student, "mamba", d_state=4, **{"d_model": 8, **kwargs})
    c, h, w = m.image_shape
    assert m.seq_len == seq_len
    logits = m(randn(2, c, h, w))
    assert logits.shape == (2, kwargs.get("num_classes", 10))


def test_classifier_rejects_wrong_input_shape():
    with pytest.raises(ValueError, match=r"expected input \(B, 1, 28, 28\), got \(2, 1, 32, 32\)"):
        build_student("mamba", d_model=8)(torch.zeros(2, 1, 32, 32))


def test_classifier_trains_every_parameter():
    m = seeded(0, build_student, "mamba", d_model=8, d_state=4, n_layers=2, tokens="patch", patch=7)
    loss = F.cross_entropy(m(randn(4, 1, 28, 28)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert any(k.startswith("layers.1.mixer.A_log") for k in m.state_dict())
    assert "norm_f.weight" in m.state_dict()


def test_last_pool_depends_only_on_last_token_causally():
    m = seeded(0, build_student, "mamba", d_model=8, d_state=4, pool="last").eval()
    x = randn(1, 1, 28, 28)
    x2 = x.clone()
    x2[..., 0, :] += 1.0  # change the first row: the last token still sees it through the scan
    with torch.no_grad():
        assert not torch.allclose(m(x), m(x2))
