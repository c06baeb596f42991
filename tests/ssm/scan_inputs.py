"""Scan inputs and checks shared by the tests of pkd.ssm: well-scaled random inputs, a run that back-propagates
through y and the last state, and a float32 comparison that prints its max abs difference."""

from __future__ import annotations

import torch

ATOL = RTOL = 1e-5
NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make_inputs(batch, dim, length, nst, *, D, z, bias, softplus, seed=0, dtype=torch.float32):
    """Well-scaled random scan inputs; delta stays positive when no softplus so states do not blow up."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    def rand(*shape):
        return torch.rand(*shape, generator=g, dtype=dtype)

    delta = randn(batch, dim, length) - 1.0 if softplus else rand(batch, dim, length) * 0.5 + 0.01
    return {
        "u": randn(batch, dim, length),
        "delta": delta,
        "A": -(rand(dim, nst) * 2.0 + 0.1),
        "B": randn(batch, nst, length),
        "C": randn(batch, nst, length),
        "D": randn(dim) if D else None,
        "z": randn(batch, dim, length) if z else None,
        "delta_bias": rand(dim) * 0.2 if bias else None,
    }


def run_with_grads(fn, inputs, softplus, seed=1):
    """Runs fn with return_last_state and back-propagates random weights through y and the last state."""
    leaves = {k: (v.clone().requires_grad_() if v is not None else None) for k, v in inputs.items()}
    y, last = fn(*[leaves[k] for k in NAMES], delta_softplus=softplus, return_last_state=True)
    g = torch.Generator().manual_seed(seed)
    wy = torch.randn(y.shape, generator=g, dtype=y.dtype)
    wl = torch.randn(last.shape, generator=g, dtype=last.dtype)
    ((y * wy).sum() + (last * wl).sum()).backward()
    return y.detach(), last.detach(), {k: v.grad for k, v in leaves.items() if v is not None}


def assert_close(name, got, want):
    diff = (got.float() - want.float()).abs().max().item()
    print(f"{name}: max abs diff {diff:.2e}")
    assert got.shape == want.shape, name
    assert torch.allclose(got.float(), want.float(), atol=ATOL, rtol=RTOL), f"{name}: max abs diff {diff:.2e}"


SHAPES = [(1, 4, 1, 3), (2, 5, 7, 3), (3, 24, 33, 16), (2, 32, 20, 8), (1, 16, 100, 4)]
OPTIONS = [
    dict(D=True, z=True, bias=True, softplus=True),
    dict(D=False, z=False, bias=False, softplus=False),
    dict(D=True, z=False, bias=True, softplus=False),
    dict(D=False, z=True, bias=False, softplus=True),
]
