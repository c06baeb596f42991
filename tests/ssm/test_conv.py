"""Mamba's causal depthwise conv1d + SiLU on the fused kernel (pkd.ssm.conv) against torch's F.conv1d + F.silu:
outputs and every gradient, on Mamba's strided x and on a contiguous one, with and without bias, kernel sizes
longer than the sequence; torch runs it wherever the scan does not run on the kernel; the custom op's fakes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pkd import ssm
from pkd.ssm.conv import causal_conv1d_silu, conv_silu_fwd_op


def torch_conv_silu(x, weight, bias):
    return F.silu(F.conv1d(x, weight, bias, padding=weight.shape[-1] - 1, groups=x.shape[1])[..., :x.shape[2]])


def inputs(batch, dim, length, k, bias, strided, seed=0):
    g = torch.Generator().manual_seed(seed)
    if strided:  # as Mamba's: the first half of the channels of a (B, L, 2ED) result, seen as (B, ED, L)
        x = torch.randn(batch, length, 2 * dim, generator=g).transpose(1, 2)[:, :dim]
    else:
        x = torch.randn(batch, dim, length, generator=g)
    weight = torch.randn(dim, 1, k, generator=g) * 0.5
    return x, weight, (torch.randn(dim, generator=g) if bias else None)


@pytest.mark.parametrize("batch, dim, length, k", [(2, 8, 14, 4), (3, 5, 1, 4), (1, 6, 33, 2), (2, 4, 3, 4)],
                         ids=lambda v: str(v))
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("strided", [True, False], ids=["strided", "contiguous"])
def test_kernel_conv_matches_torch(cpp_kernel, batch, dim, length, k, bias, strided, monkeypatch):
    monkeypatch.setenv(ssm.BACKEND_ENV, "cpp")
    x, weight, b = inputs(batch, dim, length, k, bias, strided)
    gout = torch.randn(batch, dim, length, generator=torch.Generator().manual_seed(5))
    results = []
    for fn in (torch_conv_silu, causal_conv1d_silu):
        leaves = [t.detach().clone().requires_grad_() if t is not None else None for t in (x, weight, b)]
        y = fn(*leaves)
        (y * gout).sum().backward()
        results.append([y.detach()] + [t.grad for t in leaves if t is not None])
    for want, got in zip(*results):
        assert got.shape == want.shape
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-5), (got - want).abs().max().item()


def test_torch_runs_the_conv_off_the_kernel(cpp_kernel):
    """The torch and export backends, and non-float32 inputs, get torch's own conv (exactly)."""
    x, weight, b = inputs(2, 8, 14, 4, True, True)
    want = torch_conv_silu(x, weight, b)
    for backend in ("torch", "export"):
        with ssm.use_backend(backend):
            assert torch.equal(causal_conv1d_silu(x, weight, b), want)
    with ssm.use_backend("cpp"):
        half = causal_conv1d_silu(x.bfloat16(), weight.bfloat16(), b.bfloat16())
    assert half.dtype == torch.bfloat16 and torch.equal(half, torch_conv_silu(x.bfloat16(), weight.bfloat16(),
                                                                              b.bfloat16()))


def test_conv_custom_op_fakes_and_autograd(cpp_kernel):
    x, weight, b = inputs(2, 8, 6, 4, True, True)
    args = [x.detach().clone().requires_grad_(), weight.reshape(8, 4).detach().clone().requires_grad_(),
            b.detach().clone().requires_grad_()]
    torch.library.opcheck(conv_silu_fwd_op, args, test_utils=["test_faketensor", "test_autograd_registration"])


def test_inference_keeps_torchs_arithmetic(cpp_kernel, monkeypatch):
    """Without a gradient (evaluation, the app) the conv and the dt activation run in torch, bit for bit as before
    the kernel fused them, so re-evaluating a saved run reproduces its figures exactly."""
    monkeypatch.setenv(ssm.BACKEND_ENV, "cpp")
    x, weight, b = inputs(2, 8, 14, 4, True, True)
    with torch.no_grad():
        assert torch.equal(causal_conv1d_silu(x, weight, b), torch_conv_silu(x, weight, b))
    g = torch.Generator().manual_seed(1)
    u, delta, z = (torch.randn(2, 16, 9, generator=g) for _ in range(3))
    A, B, C = -torch.rand(16, 4, generator=g), torch.randn(2, 4, 9, generator=g), torch.randn(2, 4, 9, generator=g)
    D, bias = torch.randn(16, generator=g), torch.rand(16, generator=g)
    with torch.no_grad():
        fused_call = ssm.selective_scan(u, delta, A, B, C, D, z=z, delta_bias=bias, delta_softplus=True)
        torch_dt = ssm.selective_scan(u, F.softplus(delta + bias[None, :, None]), A, B, C, D, z=z)
    assert torch.equal(fused_call, torch_dt)
