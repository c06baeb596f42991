"""Tests for pkd.models.mamba: the Mamba block's mamba-ssm layout and initialisation, causality, agreement with
mamba.py (weights, outputs, gradients) and the residual block's keys."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pkd.models.mamba import Mamba, ResidualBlock
from tests.models.seeding import randn, seeded


@pytest.mark.parametrize("kwargs, field", [
    ({"dt_rank": 0}, "dt_rank"), ({"dt_init": "normal"}, "dt_init"), ({"dt_min": 0.2}, "dt_min"),
])
def test_mamba_argument_checks(kwargs, field):
    with pytest.raises(ValueError, match=field):
        Mamba(16, **kwargs)


# ------------------------------------------------------------------------------------------------ Mamba block

# Layout of mamba_ssm.modules.mamba_simple.Mamba(d_model=32) written from that file: d_inner = expand*d_model = 64,
# dt_rank = ceil(32/16) = 2, d_state = 16, d_conv = 4; in_proj Linear(32, 2*64, bias=False), conv1d depthwise
# Conv1d(64, 64, 4, groups=64) with bias, x_proj Linear(64, 2+2*16, bias=False), dt_proj Linear(2, 64) with bias,
# A_log (64, 16), D (64,), out_proj Linear(64, 32, bias=False). Order = registration order in mamba_simple.
MAMBA_SIMPLE_LAYOUT_D32 = {
    "A_log": (64, 16),
    "D": (64,),
    "in_proj.weight": (128, 32),
    "conv1d.weight": (64, 1, 4),
    "conv1d.bias": (64,),
    "x_proj.weight": (34, 64),
    "dt_proj.weight": (64, 2),
    "dt_proj.bias": (64,),
    "out_proj.weight": (32, 64),
}


def test_mamba_state_dict_matches_mamba_simple_layout():
    sd = Mamba(32).state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == MAMBA_SIMPLE_LAYOUT_D32
    assert list(sd) == list(MAMBA_SIMPLE_LAYOUT_D32)


def test_mamba_layout_options():
    m = Mamba(40, d_state=8, d_conv=3, expand=3, dt_rank=4, bias=True, conv_bias=False)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == {"A_log": (120, 8), "D": (120,), "in_proj.weight": (240, 40), "in_proj.bias": (240,),
                      "conv1d.weight": (120, 1, 3), "x_proj.weight": (20, 120), "dt_proj.weight": (120, 4),
                      "dt_proj.bias": (120,), "out_proj.weight": (40, 120), "out_proj.bias": (40,)}
    assert Mamba(17).dt_rank == 2 and Mamba(16).dt_rank == 1  # ceil(d_model / 16)


def test_mamba_initialisation_statistics():
    m = seeded(0, Mamba, 64, d_state=16, expand=4)  # ED = 256, R = 4
    ed, n, r = 256, 16, 4
    assert torch.equal(m.A_log, torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(ed, 1))
    assert m.A_log.dtype == torch.float32 and m.D.dtype == torch.float32
    assert torch.equal(m.D, torch.ones(ed))
    dt = F.softplus(m.dt_proj.bias.detach())  # log-uniform in [1e-3, 1e-1]
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 1e-1 * (1 + 1e-5)
    log_dt = dt.log()
    mid = (math.log(1e-3) + math.log(1e-1)) / 2  # log-uniform: mean at the log midpoint, std = range / sqrt(12)
    assert abs(log_dt.mean().item() - mid) < 0.3
    assert abs(log_dt.std().item() - (math.log(1e-1) - math.log(1e-3)) / math.sqrt(12)) < 0.2
    w = m.dt_proj.weight.detach()  # uniform(-R^-0.5, R^-0.5)
    assert w.abs().max() <= r**-0.5 and abs(w.std().item() - r**-0.5 / math.sqrt(3)) < 0.03
    assert m.in_proj.weight.abs().max() <= 64**-0.5  # PyTorch default Linear init, bound 1/sqrt(fan_in)
    assert m.conv1d.weight.abs().max() <= 4**-0.5  # depthwise fan_in = d_conv
    assert getattr(m.dt_proj.bias, "_no_reinit", False)
    assert getattr(m.A_log, "_no_weight_decay", False) and getattr(m.D, "_no_weight_decay", False)
    c = Mamba(32, dt_init="constant", dt_scale=2.0)
    assert torch.allclose(c.dt_proj.weight, torch.full((64, 2), 2.0 * 2**-0.5))


def test_mamba_forward_shape_and_gradients():
    m = seeded(0, Mamba, 16, d_state=4)
    x = randn(3, 7, 16).requires_grad_()
    y = m(x)
    assert y.shape == (3, 7, 16)
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_mamba_is_causal():
    m = seeded(0, Mamba, 8, d_state=4).eval()
    x = randn(2, 10, 8)
    x2 = x.clone()
    x2[:, 6:] = randn(2, 4, 8, seed=1)
    with torch.no_grad():
        assert torch.allclose(m(x)[:, :6], m(x2)[:, :6], atol=1e-6)
        assert not torch.allclose(m(x)[:, 6:], m(x2)[:, 6:], atol=1e-3)


try:  # alxndrTL/mamba.py, `pip install mambapy` (a test dependency)
    from mambapy import mamba as mambapy_mamba
except ImportError:  # pragma: no cover
    mambapy_mamba = None
needs_mambapy = pytest.mark.skipif(mambapy_mamba is None, reason="needs mambapy (pip install mambapy)")


@pytest.mark.parametrize("kwargs", [{}, {"bias": True, "conv_bias": False, "d_conv": 3, "d_state": 8}])
@needs_mambapy
def test_same_seed_gives_mambapy_weights_and_outputs(kwargs):
    cfg = {("expand_factor" if k == "expand" else k): v for k, v in kwargs.items()}
    ours = seeded(1, Mamba, 32, **kwargs)
    ref = seeded(1, mambapy_mamba.MambaBlock, mambapy_mamba.MambaConfig(d_model=32, n_layers=1, **cfg))
    ours_sd, ref_sd = ours.state_dict(), ref.state_dict()
    assert list(ours_sd) == list(ref_sd)  # mamba.py uses exactly mamba_simple's key names
    for key in ours_sd:
        assert torch.equal(ours_sd[key], ref_sd[key]), key
    x = randn(4, 28, 32)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = ours(xa), ref(xb)
    print("max |pkd - mambapy| =", (ya - yb).abs().max().item())
    assert torch.allclose(ya, yb, atol=1e-5, rtol=1e-5)
    g = randn(4, 28, 32, seed=3)
    (ya * g).sum().backward()
    (yb * g).sum().backward()
    assert torch.allclose(xa.grad, xb.grad, atol=1e-5, rtol=1e-4)
    for (name, pa), pb in zip(ours.named_parameters(), ref.parameters()):
        assert torch.allclose(pa.grad, pb.grad, atol=1e-4, rtol=1e-4), name


@needs_mambapy
def test_mambapy_state_dict_loads_into_pkd():
    ref = seeded(2, mambapy_mamba.MambaBlock, mambapy_mamba.MambaConfig(d_model=16, n_layers=1, d_state=8))
    ours = seeded(3, Mamba, 16, d_state=8)
    assert not torch.equal(ours.in_proj.weight, ref.in_proj.weight)
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = randn(2, 49, 16)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5, rtol=1e-5)


@needs_mambapy
def test_residual_block_keys_match_mambapy():
    ours = ResidualBlock(16, d_state=8)
    ref = mambapy_mamba.ResidualBlock(mambapy_mamba.MambaConfig(d_model=16, n_layers=1, d_state=8))
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    x = randn(2, 5, 16)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5)
