"""Tests for pkd.data.moving_mnist: determinism, split hygiene, labels that name the motion, time reversal, the
symmetry of the generator under reversal, no wall contact, the registered specs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from pkd import data
from pkd.data import moving_mnist as mm

CFG = mm.MovingMnistConfig()
SMALL = dataclasses.replace(CFG, train_clips=240, val_clips=120, test_clips=120, seed=3)


def fake_digits(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n random 'digits' (n, 1, 28, 28) in [0, 1] with a 4 px empty border like MNIST's, and labels 0..9."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, 4:24, 4:24] = torch.rand(n, 1, 20, 20, generator=g)
    return x, torch.arange(n) % 10


def ink_moments(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre of mass (N, T, 2) as (y, x) and mean squared distance from it (N, T) of frames (N, T, 1, S, S)."""
    w = frames[:, :, 0].double()  # (N, T, S, S)
    s = w.shape[-1]
    grid = torch.arange(s, dtype=torch.float64) + 0.5
    mass = w.sum((-1, -2))  # (N, T)
    cy = (w.sum(-1) * grid).sum(-1) / mass
    cx = (w.sum(-2) * grid).sum(-1) / mass
    spread = (w * ((grid[:, None] - cy[..., None, None]) ** 2 + (grid - cx[..., None, None]) ** 2)).sum((-1, -2))
    return torch.stack([cy, cx], -1), spread / mass


def named_motion(frames: torch.Tensor) -> torch.Tensor:
    """The motion index (into MOTIONS) that the ink of each clip (N, T, 1, S, S) shows, -1 for none: a zoom changes
    the ink's spread by over 5% a frame, a translation keeps it and moves the centre of mass along one axis."""
    com, spread = ink_moments(frames)
    step = com[:, 1:] - com[:, :-1]  # (N, T-1, 2)
    ratio = spread[:, 1:] / spread[:, :-1]  # (N, T-1)
    out = torch.full((len(frames),), -1)
    out[(ratio > 1.05).all(1)] = 4
    out[(ratio < 1 / 1.05).all(1)] = 5
    kept = (ratio - 1).abs().amax(1) < 1e-6
    dy, dx = step[..., 0], step[..., 1]
    flat_y, flat_x = kept & (dy.abs().amax(1) < 1e-6), kept & (dx.abs().amax(1) < 1e-6)
    out[flat_y & (dx < -0.5).all(1)] = 0
    out[flat_y & (dx > 0.5).all(1)] = 1
    out[flat_x & (dy < -0.5).all(1)] = 2
    out[flat_x & (dy > 0.5).all(1)] = 3
    return out


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs of a and b."""
    values = np.union1d(a, b)
    cdf_a = np.searchsorted(np.sort(a), values, side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), values, side="right") / len(b)
    return float(np.abs(cdf_a - cdf_b).max())


def ks_limit(n: int, m: int) -> float:
    """KS critical value at alpha = 0.001: c(alpha) * sqrt((n + m) / (n m)), c = 1.95."""
    return 1.95 * np.sqrt((n + m) / (n * m))


@pytest.fixture(scope="module")
def many() -> mm.Clips:
    """6,000 clips of random digits: enough for the distribution tests."""
    x, y = fake_digits(6000)
    return mm.generate_clips(x, y, 6000, CFG, seed=11)


def test_class_names_and_labels() -> None:
    names = mm.class_names()
    assert len(names) == 60 == mm.MOVING_MNIST.num_classes and names == mm.MOVING_MNIST.class_names
    assert names[mm.class_index(3, "moving left")] == "3 moving left" and names[59] == "9 shrinking"
    assert mm.digit_of(mm.class_index(7, "growing")) == 7 and mm.MOTIONS[mm.motion_of(44)] == "moving up"
    assert mm.MOVING_MNIST.class_groups == tuple(int(name[0]) for name in names)  # grouped by digit
    with pytest.raises(ValueError, match="unknown motion 'sideways'; choose one of: moving left"):
        mm.class_index(1, "sideways")


def test_reverse_label_is_an_involution_to_the_reverse_motion() -> None:
    every = torch.arange(60)
    rev = mm.reverse_label(every)
    assert torch.equal(mm.reverse_label(rev), every) and (rev != every).all()
    assert torch.equal(mm.digit_of(rev), mm.digit_of(every))
    assert [mm.reverse_label(int(c)) for c in every] == rev.tolist()  # ints and tensors agree
    pairs = {(mm.MOTIONS[m], mm.MOTIONS[mm.motion_of(mm.reverse_label(m))]) for m in range(6)}
    assert pairs == {("moving left", "moving right"), ("moving right", "moving left"), ("moving up", "moving down"),
                     ("moving down", "moving up"), ("growing", "shrinking"), ("shrinking", "growing")}


def test_same_seed_same_bytes_other_seed_other_clips() -> None:
    x, y = fake_digits(300)
    a, b = (mm.generate_clips(x, y, 200, CFG, seed=[5, 1]) for _ in range(2))
    assert a.frames.numpy().tobytes() == b.frames.numpy().tobytes()
    assert torch.equal(a.labels, b.labels) and torch.equal(a.source, b.source)
    c = mm.generate_clips(x, y, 200, CFG, seed=[5, 2])
    assert not torch.equal(a.labels, c.labels) and not torch.equal(a.frames, c.frames)


def test_shapes_values_and_unique_sources(many: mm.Clips) -> None:
    assert many.frames.shape == (6000, 8, 1, 48, 48) and many.frames.dtype == torch.float32
    assert many.frames.min() >= 0 and many.frames.max() <= 1
    assert many.labels.dtype == torch.int64 and len(set(many.source.tolist())) == 6000  # each digit once
    counts = many.labels.bincount(minlength=60)
    assert counts.min() >= 60  # 100 expected per class


def test_labels_name_the_motion_the_ink_shows(many: mm.Clips) -> None:
    shown = named_motion(many.frames)
    assert torch.equal(shown, mm.motion_of(many.labels)), (shown != mm.motion_of(many.labels)).sum()
    assert torch.equal(mm.digit_of(many.labels), many.source % 10)  # fake digit i has label i % 10


def test_reversed_clip_is_a_clip_of_the_reversed_class(many: mm.Clips) -> None:
    reversed_ = mm.reverse_clips(many.frames[:600])
    assert torch.equal(named_motion(reversed_), mm.motion_of(mm.reverse_label(many.labels[:600])))
    assert torch.equal(mm.reverse_clips(reversed_), many.frames[:600])
    assert torch.equal(reversed_[:, 0], many.frames[:600, -1])
    with pytest.raises(ValueError, match=r"reverse_clips expects \(\.\.\., T, C, H, W\)"):
        mm.reverse_clips(torch.zeros(2, 3, 4))


def test_reverse_is_exactly_as_likely(many: mm.Clips) -> None:
    """Each motion and its reverse are drawn equally often, and the trajectories of the reversed clips of a motion
    are distributed like the clips of the reverse motion (start, end, speed, scale): KS tests that can fail."""
    motion = mm.motion_of(many.labels).numpy()
    for m, r in ((0, 1), (2, 3), (4, 5)):
        a, b = (motion == m).sum(), (motion == r).sum()
        assert abs(a - b) < 4 * np.sqrt(a + b), (m, a, b)  # binomial(a + b, 1/2) within 4 sigma
    for m in range(6):
        mine = many.centre[motion == m][:, ::-1]  # the reversed clips' trajectories (n, T, 2)
        theirs = many.centre[motion == mm.REVERSE_MOTION[m]]
        limit = ks_limit(len(mine), len(theirs))
        for frame in (0, -1):
            for axis in (0, 1):
                assert ks_statistic(mine[:, frame, axis], theirs[:, frame, axis]) < limit, (m, frame, axis)
        speed = lambda c: np.abs(c[:, 1] - c[:, 0]).sum(-1)  # noqa: E731 - px per frame
        assert ks_statistic(speed(mine), speed(theirs)) < limit
        assert ks_statistic(many.scale[motion == m][:, ::-1][:, 0], many.scale[motion == mm.REVERSE_MOTION[m]][:, 0]) \
            < limit
    # the same statistic does see an asymmetry: where right-moving and left-moving clips start differs
    start_x = many.centre[:, 0, 1]
    assert ks_statistic(start_x[motion == 0], start_x[motion == 1]) > 3 * ks_limit(1000, 1000)


def test_no_wall_contact_and_no_bounce(many: mm.Clips) -> None:
    half = 14 * many.scale[..., None]  # (N, T, 1)
    assert (many.centre - half >= 0).all() and (many.centre + half <= 48).all()  # the box stays on the canvas
    velocity = np.diff(many.centre, axis=1)  # (N, T-1, 2)
    assert (velocity == velocity[:, :1]).all()  # constant: nothing ever bounces
    speed = np.abs(velocity[:, 0]).sum(-1)
    moving = mm.motion_of(many.labels).numpy() < 4
    assert set(speed[moving].tolist()) == {1.0, 2.0} and (speed[~moving] == 0).all()
    full = mm.generate_clips(torch.ones(300, 1, 28, 28), torch.arange(300) % 10, 300, CFG, seed=2)
    mass = full.frames.sum((-1, -2, -3))  # (N, T): an all-ink box is never cut by a wall
    translated = mm.motion_of(full.labels) < 4
    assert (mass[translated] == 784).all()
    zoom = (~translated).numpy()  # drawn on a canvas 10 px wider on every side, all their ink is inside ours
    wide = mm._render(torch.ones(zoom.sum(), 28, 28), full.centre[zoom] + 10, full.scale[zoom], 68)
    assert torch.allclose(wide[..., 10:58, 10:58].sum((-1, -2, -3)), wide.sum((-1, -2, -3)), rtol=1e-6)
    assert torch.allclose(wide[..., 10:58, 10:58], full.frames[zoom], atol=1e-5)


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="moving_mnist speed_max: 3 px/frame over 8 frames moves 21 px but the "
                                         "canvas leaves 20 px"):
        mm.MovingMnistConfig(speed_max=3)
    for kwargs, field in (({"frames": 1}, "frames"), ({"canvas": 28}, "canvas"), ({"speed_min": 0}, "speed_min"),
                          ({"zoom": (0.6, 1.8)}, "zoom"), ({"test_clips": 0}, "test_clips")):
        with pytest.raises(ValueError, match=f"^moving_mnist {field}"):
            mm.MovingMnistConfig(**kwargs)
    x, y = fake_digits(10)
    with pytest.raises(ValueError, match="cannot make 11 clips from 10 usable digits"):
        mm.generate_clips(x, y, 11, CFG)


def test_make_clip_and_its_reverse() -> None:
    image = fake_digits(1)[0][0]
    for motion, rev in (("moving left", "moving right"), ("moving up", "moving down"), ("growing", "shrinking")):
        clip = mm.make_clip(image, motion)
        assert clip.shape == (8, 1, 48, 48)
        assert torch.equal(mm.reverse_clips(clip), mm.make_clip(image, rev))
        assert named_motion(clip[None]).item() == mm.MOTIONS.index(motion)
    assert named_motion(mm.make_clip(image[0], "moving right", speed=1)[None]).item() == 1
    with pytest.raises(ValueError, match="speed: 3 must lie in 1..2"):
        mm.make_clip(image, "moving left", speed=3)
    with pytest.raises(ValueError, match="unknown motion"):
        mm.make_clip(image, "spinning")


def test_base_to_novel_classes() -> None:
    novel, base = mm.novel_classes(), mm.base_classes()
    assert len(novel) == len(base) == 30 and sorted(novel + base) == list(range(60))
    assert {mm.reverse_label(c) for c in novel} == set(novel)  # a clip and its reverse on the same side
    for d in range(10):
        assert 0 < sum(mm.digit_of(c) == d for c in novel) < 6
    for m in range(6):
        assert 0 < sum(mm.motion_of(c) == m for c in novel) < 10
    x, y = fake_digits(600)
    clips = mm.generate_clips(x, y, 600, CFG, seed=1, classes=base)
    assert set(clips.labels.tolist()) == set(base)
    with pytest.raises(ValueError, match="classes must hold each class with its time-reverse"):
        mm.generate_clips(x, y, 10, CFG, classes=[0, 2, 3])


def test_spec_refuses_label_changing_augmentation() -> None:
    spec = data.get_dataset_spec("moving_mnist")
    assert spec is data.MOVING_MNIST and spec.kind == "clip" and spec.sample_shape == (8, 1, 48, 48)
    assert spec.motion_labels and not spec.hflip and spec.max_rotate_deg == 0
    with pytest.raises(ValueError, match="dataset 'moving_mnist': its labels name motions, which hflip"):
        dataclasses.replace(spec, hflip=True)
    with pytest.raises(ValueError, match="rotation"):
        dataclasses.replace(spec, max_rotate_deg=10.0)
    clips = mm.generate_clips(*fake_digits(16), 16, CFG, seed=0).frames
    shifted = spec.augment(clips, torch.Generator().manual_seed(0))
    assert shifted.shape == clips.shape
    assert torch.equal(named_motion(shifted), named_motion(clips))  # shifts keep the motion


def test_spec_normalisation_matches_the_clips(mnist: dict[str, data.Split]) -> None:
    clips = mm.generate_clips(mnist["test"].inputs, mnist["test"].labels, 1200, CFG, seed=0).frames
    mean, std = data.MOVING_MNIST.mean[0], data.MOVING_MNIST.std[0]
    assert mean == pytest.approx(clips.mean().item(), rel=0.03) and std == pytest.approx(clips.std().item(), rel=0.03)


def test_registered_splits_come_from_their_own_digits(
    scratch_registry: None, mnist_root: Path, mnist: dict[str, data.Split]
) -> None:
    """Split hygiene on real MNIST: every clip's digit is the digit of its own split that the generator names."""
    mm.register_moving_mnist("mm_small", SMALL)
    for i, split in enumerate(data.SPLITS):
        loaded = data.load_split("mm_small", split, mnist_root)
        assert loaded.spec.sample_shape == (8, 1, 48, 48) and len(loaded) == getattr(SMALL, f"{split}_clips")
        made = mm.generate_clips(mnist[split].inputs, mnist[split].labels, len(loaded), SMALL, [SMALL.seed, i])
        assert torch.equal(made.frames, loaded.inputs) and torch.equal(made.labels, loaded.labels)
        assert torch.equal(mm.digit_of(made.labels), mnist[split].labels[made.source])
        moves = torch.nonzero(mm.motion_of(made.labels) < 4).flatten()
        for n in moves.tolist():
            y, x = (made.centre[n, 0] - 14).astype(int)
            assert torch.equal(made.frames[n, 0, 0, y:y + 28, x:x + 28], mnist[split].inputs[made.source[n], 0])
        assert torch.equal(named_motion(made.frames[moves]), mm.motion_of(made.labels[moves]))
    b2n = mm.register_moving_mnist("mm_small_b2n", SMALL, train_classes=mm.base_classes())
    assert b2n.class_names == mm.class_names()
    for split in ("train", "val"):
        assert set(data.load_split("mm_small_b2n", split, mnist_root).labels.tolist()) <= set(mm.base_classes())
    assert set(data.load_split("mm_small_b2n", "test", mnist_root).labels.tolist()) & set(mm.novel_classes())


def test_more_train_clips_leave_val_and_test_as_they_are(scratch_registry: None, mnist_root: Path) -> None:
    """moving_mnist_50k is moving_mnist with 5x the train clips: each split has its own seed, so a larger train
    split changes neither val nor test (the shipped figures stay comparable)."""
    assert mm.ALL_TRAIN_DIGITS == dataclasses.replace(CFG, train_clips=50_000)
    assert data.get_dataset_spec("moving_mnist_50k") == dataclasses.replace(data.MOVING_MNIST, name="moving_mnist_50k")
    mm.register_moving_mnist("mm_small", SMALL)
    mm.register_moving_mnist("mm_small_more", dataclasses.replace(SMALL, train_clips=2 * SMALL.train_clips))
    for split in data.SPLITS:
        few, more = (data.load_split(name, split, mnist_root) for name in ("mm_small", "mm_small_more"))
        if split == "train":
            assert len(more) == 2 * len(few) and not torch.equal(more.inputs[:len(few)], few.inputs)
        else:
            assert torch.equal(few.inputs, more.inputs) and torch.equal(few.labels, more.labels)


def test_a_split_is_made_only_when_asked_for(scratch_registry: None, mnist_root: Path) -> None:
    """Showing test clips must not make the train clips (50,000 of them = 3.7 GB for moving_mnist_50k): the loader
    makes a split on first access, once."""
    mm.register_moving_mnist("mm_small", SMALL)
    assert data.built_splits("mm_small", mnist_root) == ()
    test = data.load_split("mm_small", "test", mnist_root)
    assert data.built_splits("mm_small", mnist_root) == ("test",)
    assert data.load_split("mm_small", "test", mnist_root) is test
    data.load_split("mm_small", "val", mnist_root)
    assert sorted(data.built_splits("mm_small", mnist_root)) == ["test", "val"]


def test_the_same_clips_under_two_names_are_held_once(scratch_registry: None, mnist_root: Path) -> None:
    """moving_mnist_50k's test clips are moving_mnist's: the two splits share one tensor (the app shows both)."""
    mm.register_moving_mnist("mm_small", SMALL)
    mm.register_moving_mnist("mm_small_more", dataclasses.replace(SMALL, train_clips=2 * SMALL.train_clips))
    few, more = (data.load_split(name, "test", mnist_root) for name in ("mm_small", "mm_small_more"))
    assert more.inputs is few.inputs and more.dataset == "mm_small_more" and few.dataset == "mm_small"
    assert data.built_splits("mnist", mnist_root) == ("test",)  # the clips' digits: MNIST's test split alone
