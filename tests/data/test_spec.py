"""Tests for pkd.data.spec: DatasetSpec validation, normalisation and augmentation (images and clips), Split."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pkd import data

CLIP = data.DatasetSpec("clip", (4, 3, 8, 8), 2, ("a", "b"), mean=(0.2, 0.4, 0.6), std=(0.1, 0.2, 0.3),
                        max_shift=2, hflip=True, max_rotate_deg=15.0)


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="class_names"):
        dataclasses.replace(data.MNIST, num_classes=9)
    with pytest.raises(ValueError, match=r"sample_shape must be \(C, H, W\) or \(T, C, H, W\), got \(28, 28\)"):
        dataclasses.replace(data.MNIST, sample_shape=(28, 28))
    with pytest.raises(ValueError, match="max_shift and max_rotate_deg must be >= 0"):
        dataclasses.replace(data.MNIST, max_shift=-1)
    with pytest.raises(ValueError, match="mean and std need 1 values"):
        dataclasses.replace(data.MNIST, mean=(0.1, 0.2))
    with pytest.raises(ValueError, match="Split inputs must be float32"):
        data.Split(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64), "mnist", "val")
    with pytest.raises(ValueError, match="Split labels must be int64"):
        data.Split(torch.zeros(2, 1, 28, 28), torch.zeros(3, dtype=torch.int64), "mnist", "val")


def test_normalize() -> None:
    x = torch.rand(2, 3, 32, 32)
    y = data.CIFAR10.normalize(x)
    assert torch.allclose(y[:, 2], (x[:, 2] - 0.4465) / 0.2616) and y.shape == x.shape
    assert data.CIFAR10.normalize(x[0]).shape == (3, 32, 32)
    with pytest.raises(ValueError, match=r"expects float images of shape \(\.\.\., 1, 28, 28\)"):
        data.MNIST.normalize(x)
    with pytest.raises(ValueError, match="expects float images"):
        data.MNIST.normalize(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))


def _shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Reference: x moved down by dy and right by dx, zero fill."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = \
        x[..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
    return out


@pytest.mark.parametrize("spec", [data.MNIST, data.CIFAR10], ids=lambda s: s.name)
def test_augment_is_a_seeded_shift_and_flip(spec: data.DatasetSpec) -> None:
    x = torch.rand(64, *spec.sample_shape, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.05  # no zeros
    out = spec.augment(x, torch.Generator().manual_seed(7))
    assert out.shape == x.shape and out.dtype == x.dtype and 0 <= out.min() and out.max() <= 1
    assert torch.equal(out, spec.augment(x, torch.Generator().manual_seed(7)))
    assert not torch.equal(out, spec.augment(x, torch.Generator().manual_seed(8)))
    s = spec.max_shift
    seen_shifts, seen_flips = set(), set()
    for xi, oi in zip(x, out):
        found = [(dy, dx, flip) for flip in ((False, True) if spec.hflip else (False,))
                 for dy in range(-s, s + 1) for dx in range(-s, s + 1)
                 if torch.equal(oi, _shifted(xi.flip(-1) if flip else xi, dy, dx))]
        assert len(found) == 1, "each output is exactly one shift (and flip) of its input"
        seen_shifts.add(found[0][:2])
        seen_flips.add(found[0][2])
    assert {dy for dy, _ in seen_shifts} == set(range(-s, s + 1))
    assert seen_flips == ({False, True} if spec.hflip else {False})


def test_augment_with_rotation() -> None:
    spec = dataclasses.replace(data.MNIST, max_shift=0, max_rotate_deg=10.0)
    x = torch.zeros(8, 1, 28, 28)
    x[:, :, 6:22, 12:16] = 1.0  # a vertical bar
    out = spec.augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    assert torch.equal(out, spec.augment(x, torch.Generator().manual_seed(0)))
    assert not torch.allclose(out, x, atol=0.1)
    assert torch.allclose(out.sum((1, 2, 3)), x.sum((1, 2, 3)), rtol=0.05)  # mass kept: nothing leaves the frame
    with pytest.raises(ValueError, match=r"augment expects a batch \(B, C, H, W\)"):
        spec.augment(x[0], torch.Generator())



def test_clip_spec_kind_and_validation() -> None:
    assert CLIP.kind == "clip" and data.MNIST.kind == "image" and data.CIFAR10.kind == "image"
    with pytest.raises(ValueError, match=r"sample_shape must be \(C, H, W\) or \(T, C, H, W\), got \(2, 4, 3, 8, 8\)"):
        dataclasses.replace(CLIP, sample_shape=(2, 4, 3, 8, 8))
    with pytest.raises(ValueError, match=r"sample_shape must be .*, got \(4, 0, 8, 8\)"):
        dataclasses.replace(CLIP, sample_shape=(4, 0, 8, 8))
    with pytest.raises(ValueError, match="mean and std need 3 values"):  # channels are at -3, not the frames
        dataclasses.replace(CLIP, mean=(0.5,) * 4, std=(0.5,) * 4)
    with pytest.raises(ValueError, match=r"class_groups needs one group index >= 0 per class \(\d+\), got 1"):
        dataclasses.replace(CLIP, class_groups=(0,))
    with pytest.raises(ValueError, match=r"class_groups needs .*, got \d+ with smallest -1"):
        dataclasses.replace(CLIP, class_groups=(-1,) * CLIP.num_classes)
    split = data.Split(torch.zeros(2, 4, 3, 8, 8), torch.zeros(2, dtype=torch.int64))
    assert len(split) == 2 and split.inputs.shape == (2, 4, 3, 8, 8)
    for shape in ((2, 8, 8), (2, 1, 4, 3, 8, 8)):
        with pytest.raises(ValueError, match=r"Split inputs must be float32 \(N, C, H, W\) or \(N, T, C, H, W\)"):
            data.Split(torch.zeros(shape), torch.zeros(2, dtype=torch.int64))


def test_clip_normalize_is_per_channel() -> None:
    x = torch.rand(2, 4, 3, 8, 8)
    y = CLIP.normalize(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    for c, (mean, std) in enumerate(zip(CLIP.mean, CLIP.std)):
        assert torch.allclose(y[:, :, c], (x[:, :, c] - mean) / std)
    assert torch.equal(CLIP.normalize(x[0]), y[0])  # one clip (T, C, H, W)
    with pytest.raises(ValueError, match=r"expects float clips of shape \(\.\.\., 4, 3, 8, 8\), got \(2, 3, 8, 8\)"):
        CLIP.normalize(x[:, 0])


def test_clip_augment_moves_every_frame_of_a_clip_alike() -> None:
    """Frame t of the augmented clips is the image augmentation of frame t with the same draws: one per clip."""
    x = torch.rand(16, 4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    g_clip, g_image = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    out = CLIP.augment(x, g_clip)
    assert out.shape == x.shape and out.dtype == x.dtype and 0 <= out.min() and out.max() <= 1
    assert torch.equal(out, CLIP.augment(x, torch.Generator().manual_seed(7)))
    assert not torch.equal(out, CLIP.augment(x, torch.Generator().manual_seed(8)))
    image = dataclasses.replace(CLIP, name="frames", sample_shape=(3, 8, 8))
    for t in range(4):
        state = g_image.get_state()
        expected = image.augment(x[:, t].contiguous(), g_image)  # (16, 3, 8, 8)
        max_diff = (out[:, t] - expected).abs().max().item()
        print(f"frame {t}: max |clip - image| = {max_diff:.3g}")
        assert torch.equal(out[:, t], expected)
        if t < 3:
            g_image.set_state(state)  # every frame replays the same draws
    assert torch.equal(g_clip.get_state(), g_image.get_state())  # a clip costs the draws of one image
    same = CLIP.augment(x[:, :1].expand(-1, 4, -1, -1, -1).contiguous(), torch.Generator().manual_seed(3))
    assert all(torch.equal(same[:, t], same[:, 0]) for t in range(4))  # identical frames stay identical
    with pytest.raises(ValueError, match=r"augment expects a batch \(B, T, C, H, W\), got shape \(4, 3, 8, 8\)"):
        CLIP.augment(x[0], torch.Generator())
