"""Seeded helpers for the model tests: modules built under a fixed global seed, inputs from a private generator."""

from __future__ import annotations

import torch


def seeded(seed: int, fn, *args, **kwargs):
    """Build a module under a fixed global seed (nn.Module init draws from the global generator)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return fn(*args, **kwargs)


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    """Standard-normal tensor of shape from its own generator (global RNG untouched)."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
