"""Tests for pkd.data.batches: order, determinism, augmentation, sharding across ranks, clips end to end."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from pkd import data


def _tiny_split(n: int = 37, dataset: str = "mnist") -> data.Split:
    g = torch.Generator().manual_seed(123)
    shape = data.get_dataset_spec(dataset).sample_shape
    return data.Split(torch.rand(n, *shape, generator=g), torch.arange(n) % 10, dataset, "train")


def _cat(batches: list[data.Batch]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (torch.cat([b.x for b in batches]), torch.cat([b.y for b in batches]),
            torch.cat([b.idx for b in batches]))


def test_iterate_batches_is_deterministic_and_complete() -> None:
    split = _tiny_split()

    def run(seed: int, **kwargs: object) -> list[data.Batch]:
        return list(data.iterate_batches(split, 16, shuffle=True, generator=torch.Generator().manual_seed(seed),
                                         **kwargs))

    a, b, c = run(0), run(0), run(1)
    assert [len(batch.y) for batch in a] == [16, 16, 5]
    assert all(torch.equal(ba.x, bb.x) and torch.equal(ba.y, bb.y) and torch.equal(ba.idx, bb.idx)
               for ba, bb in zip(a, b))
    assert not torch.equal(_cat(a)[1], _cat(c)[1])
    aug_a, aug_b = run(0, augment=True), run(0, augment=True)
    assert all(torch.equal(xa.x, xb.x) for xa, xb in zip(aug_a, aug_b))
    assert torch.equal(_cat(aug_a)[2], _cat(a)[2]) and not torch.equal(_cat(aug_a)[0], _cat(a)[0])
    # every example exactly once, normalised with the split's spec, idx pointing at it
    x_all, order, idx = _cat(a)
    first = x_all[0] * data.MNIST.std[0] + data.MNIST.mean[0]
    assert sorted(order.tolist()) == sorted(split.labels.tolist())
    assert sorted(idx.tolist()) == list(range(len(split))) and torch.equal(split.labels[idx], order)
    matches = [i for i in range(len(split)) if torch.allclose(split.inputs[i], first, atol=1e-6)]
    assert len(matches) == 1 and split.labels[matches[0]] == order[0] and matches[0] == idx[0]
    assert [len(batch.y) for batch in run(0, drop_last=True)] == [16, 16]


def test_ad_hoc_split_needs_a_spec() -> None:
    images = torch.rand(3, 3, 32, 32)
    split = data.Split(inputs=images, labels=torch.arange(3))
    with pytest.raises(ValueError, match="has no dataset name"):
        next(data.iterate_batches(split, 2))
    batch = next(data.iterate_batches(split, 3, spec=data.CIFAR10))
    assert torch.allclose(batch.x, data.CIFAR10.normalize(images)) and batch.y.tolist() == [0, 1, 2]


def test_iterate_batches_in_order_and_errors() -> None:
    split = _tiny_split(5)
    batches = list(data.iterate_batches(split, 2))
    assert [b.y.tolist() for b in batches] == [[0, 1], [2, 3], [4]]
    assert [b.idx.tolist() for b in batches] == [[0, 1], [2, 3], [4]]
    assert torch.allclose(batches[0].x, (split.inputs[:2] - 0.1307) / 0.3081)
    with pytest.raises(ValueError, match="needs a torch.Generator"):
        data.iterate_batches(split, 2, shuffle=True)
    with pytest.raises(ValueError, match="needs a torch.Generator"):
        data.iterate_batches(split, 2, augment=True)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        data.iterate_batches(split, 0)
    for rank, world_size in ((2, 2), (-1, 2), (0, 0)):
        with pytest.raises(ValueError, match=rf"0 <= rank < world_size, got rank={rank}, world_size={world_size}"):
            data.iterate_batches(split, 2, rank=rank, world_size=world_size)
    with pytest.raises(ValueError, match=r"expects float images of shape \(\.\.\., 3, 32, 32\)"):
        next(data.iterate_batches(split, 2, data.CIFAR10, generator=torch.Generator(), augment=True))


def test_world_size_one_is_the_old_shuffled_batches() -> None:
    """The sequence distill's training loop has always used, written out: the order first, then augment per batch."""
    split, spec = _tiny_split(), data.MNIST
    g_old, g_new = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    order = torch.randperm(len(split.labels), generator=g_old)
    old = []
    for i in range(0, len(order), 16):
        idx = order[i:i + 16]
        x = spec.augment(split.inputs[idx], g_old)
        old.append((spec.normalize(x), split.labels[idx], idx))
    new = list(data.iterate_batches(split, 16, spec, shuffle=True, generator=g_new, augment=True))
    assert len(new) == len(old) == 3
    for (x, y, idx), batch in zip(old, new):
        assert torch.equal(batch.x, x) and torch.equal(batch.y, y) and torch.equal(batch.idx, idx)
    assert torch.equal(g_old.get_state(), g_new.get_state())


@pytest.mark.parametrize("world_size", [2, 3, 8])
@pytest.mark.parametrize("drop_last", [False, True])
def test_rank_shards_make_up_the_single_process_epoch(world_size: int, drop_last: bool) -> None:
    split = _tiny_split(37)  # batches of 8: the last global one holds 5, fewer than 8 ranks
    kwargs = {"shuffle": True, "augment": True, "drop_last": drop_last}
    g_single = torch.Generator().manual_seed(9)
    single = list(data.iterate_batches(split, 8, generator=g_single, **kwargs))
    ranks, gens = [], [torch.Generator().manual_seed(9) for _ in range(world_size)]
    for rank, g in enumerate(gens):
        ranks.append(list(data.iterate_batches(split, 8, generator=g, rank=rank, world_size=world_size, **kwargs)))
    assert all(len(r) == len(single) for r in ranks)  # every rank takes the same number of steps
    for step, whole in enumerate(single):
        parts = [r[step] for r in ranks]
        assert sum(len(p.y) for p in parts) == len(whole.y)
        for rank, part in enumerate(parts):  # rank r holds members r, r + W, ... of the global batch
            assert torch.equal(part.x, whole.x[rank::world_size]) and torch.equal(part.y, whole.y[rank::world_size])
            assert torch.equal(part.idx, whole.idx[rank::world_size])
    assert all(torch.equal(g.get_state(), g_single.get_state()) for g in gens)


CLIP = data.DatasetSpec("clip4", (4, 3, 8, 8), 3, ("a", "b", "c"), mean=(0.2, 0.5, 0.8), std=(0.1, 0.2, 0.4),
                        max_shift=2, hflip=True, max_rotate_deg=10.0)


def test_clip_dataset_registered_loaded_and_batched(scratch_registry: None, tmp_path: Path) -> None:
    @data.register_dataset(CLIP)
    def load(root: Path) -> dict[str, data.Split]:
        g = torch.Generator().manual_seed(0)
        clips = torch.rand(10, 4, 3, 8, 8, generator=g)  # (N, T, C, H, W)
        still = clips[:, :1].expand(-1, 4, -1, -1, -1).contiguous()  # every frame the same
        labels = torch.arange(10) % 3
        return {"train": data.Split(clips, labels, "clip4", "train"), "val": data.Split(still, labels, "clip4", "val"),
                "test": data.Split(clips, labels, "clip4", "test")}

    split = data.load_split("clip4", "train", tmp_path)
    assert split.spec is CLIP and split.inputs.shape == (10, 4, 3, 8, 8)

    def run(part: data.Split, seed: int, augment: bool) -> list[data.Batch]:
        g = torch.Generator().manual_seed(seed)
        return list(data.iterate_batches(part, 4, shuffle=True, generator=g, augment=augment))

    plain = run(split, 1, augment=False)
    assert [tuple(b.x.shape) for b in plain] == [(4, 4, 3, 8, 8), (4, 4, 3, 8, 8), (2, 4, 3, 8, 8)]
    x, y, idx = _cat(plain)
    raw = split.inputs[idx]  # (N, T, C, H, W)
    for c in range(3):  # normalised per channel, every frame alike
        assert torch.allclose(x[:, :, c], (raw[:, :, c] - CLIP.mean[c]) / CLIP.std[c])
    assert torch.equal(y, split.labels[idx])
    aug = run(split, 1, augment=True)
    assert all(torch.equal(a.x, b.x) and torch.equal(a.idx, b.idx) for a, b in zip(aug, run(split, 1, True)))
    assert not torch.equal(_cat(aug)[0], _cat(run(split, 2, augment=True))[0])
    # one draw per clip: replaying the generator, frame t is the image augmentation of frame t
    image = dataclasses.replace(CLIP, name="frames", sample_shape=(3, 8, 8))
    g = torch.Generator().manual_seed(1)
    torch.randperm(len(split), generator=g)
    for batch in aug:
        state = g.get_state()
        for t in range(4):
            g.set_state(state)
            expected = image.normalize(image.augment(split.inputs[batch.idx, t], g))
            assert torch.equal(batch.x[:, t], expected)
    still = data.load_split("clip4", "val", tmp_path)
    for batch in run(still, 3, augment=True):  # identical frames stay identical
        assert all(torch.equal(batch.x[:, t], batch.x[:, 0]) for t in range(1, 4))
