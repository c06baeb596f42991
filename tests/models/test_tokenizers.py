"""Tests for pkd.models.tokenizers: token order of rows and patches, and sequence pooling."""

from __future__ import annotations

import torch

from pkd.models.tokenizers import Pool, Tokenizer
from tests.models.seeding import randn


def test_tokenizer_rows_and_patches():
    x = randn(2, 3, 8, 12)
    rows = Tokenizer("rows", 4)(x)  # token h = row h, features ordered (w, c)
    assert rows.shape == (2, 8, 36)
    assert torch.equal(rows[1, 5], x[1, :, 5, :].t().reshape(-1))
    patches = Tokenizer("patch", 4)(x)  # token index = i * (W/P) + j, features ordered (p_h, p_w, c)
    assert patches.shape == (2, 6, 48)
    i, j = 1, 2
    assert torch.equal(patches[0, i * 3 + j], x[0, :, 4 * i:4 * i + 4, 4 * j:4 * j + 4].permute(1, 2, 0).reshape(-1))
    gray = randn(2, 1, 8, 12)
    assert torch.equal(Tokenizer("rows", 4)(gray), gray[:, 0])


def test_pool_mean_and_last_token():
    x = randn(2, 5, 3)
    assert torch.equal(Pool("mean")(x), x.mean(dim=1))
    assert torch.equal(Pool("last")(x), x[:, -1])
