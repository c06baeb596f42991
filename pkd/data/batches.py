"""The one batch iterator: seeded order, optional augmentation, normalisation, and sharding across ranks.

Shape letters: B batch (per rank), N examples in the split; a sample is (C, H, W) or (T, C, H, W). The sequence
of batches is a pure function of the generator's state, the same on every rank.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pkd.data.spec import DatasetSpec, Split

if TYPE_CHECKING:  # torch is imported when batches are made: `import pkd.data` reads specs without it
    import torch


@dataclass(frozen=True)
class Batch:
    """One mini-batch, ready for a model.

    Attributes:
        x: normalised samples, (B, *sample_shape).
        y: int64 labels, (B,).
        idx: int64 positions of the samples in the split, (B,) (to look up cached targets).
    """

    x: torch.Tensor
    y: torch.Tensor
    idx: torch.Tensor


def iterate_batches(
    split: Split,
    batch_size: int,
    spec: DatasetSpec | None = None,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    augment: bool = False,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[Batch]:
    """Yield normalised mini-batches of ``split``; arguments are checked at the call, before the first batch.

    The order is ``torch.randperm(N, generator=generator)`` (drawn first) with ``shuffle``, else 0..N-1. Each
    global batch of ``batch_size`` positions is augmented as a whole (so every rank draws the same randomness
    and the generators stay in step), then rank r keeps its members r, r + world_size, ... Every rank gets the
    same number of batches; with world_size > 1 their sizes may differ by one (an empty one if a final batch has
    fewer than world_size samples), so use ``drop_last`` and a batch_size divisible by world_size for equal ones.

    Args:
        split: the examples to batch.
        batch_size: global examples per batch (the last one may be smaller unless ``drop_last``).
        spec: the spec to augment and normalise with; default the split's dataset spec.
        shuffle: visit examples in a random order drawn from ``generator``.
        generator: CPU generator for the order and the augmentation; required if either is used.
        augment: apply ``spec.augment`` to each batch before normalisation (training only).
        drop_last: skip a final incomplete global batch.
        rank: this process's index, 0 <= rank < world_size.
        world_size: number of processes sharing each global batch.

    Returns:
        Iterator of Batch(x (B, *sample_shape), y (B,), idx (B,)).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need world_size >= 1 and 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    if (shuffle or augment) and generator is None:
        raise ValueError("iterate_batches needs a torch.Generator when shuffle=True or augment=True")
    spec = spec if spec is not None else split.spec
    return _batches(split, batch_size, spec, shuffle, generator, augment, drop_last, rank, world_size)


def _batches(
    split: Split,
    batch_size: int,
    spec: DatasetSpec,
    shuffle: bool,
    generator: torch.Generator | None,
    augment: bool,
    drop_last: bool,
    rank: int,
    world_size: int,
) -> Iterator[Batch]:
    import torch

    n = len(split)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)  # (N,)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]  # (B_global,)
        x = split.inputs[idx]  # (B_global, *sample_shape)
        if augment:
            assert generator is not None
            x = spec.augment(x, generator)  # (B_global, *sample_shape)
        y = split.labels[idx]  # (B_global,)
        if world_size > 1:
            x, y, idx = x[rank::world_size], y[rank::world_size], idx[rank::world_size]  # (B, ...)
        yield Batch(spec.normalize(x), y, idx)
