"""Tests for pkd.models.mamba: the Mamba block's mamba-ssm layout and initialisation, causality, agreement with
mamba.py (weights, outputs, gradients) and the residual block's keys."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pkd.models.mamba import InferenceParams, Mamba, ResidualBlock
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


# ------------------------------------------------------------------------------------------ recurrent inference
# mamba_simple's inference API: forward(x, inference_params) prefills and keeps each layer's states under its
# layer_idx; with seqlen_offset > 0 forward is one step. Every position must equal the full forward.

STEP_SIZES = [  # d_state, d_conv, expand
    (16, 4, 2), (4, 2, 1), (8, 3, 3), (1, 1, 2),
]


def _stepped(m: Mamba | ResidualBlock, x: torch.Tensor, prefill: int) -> tuple[torch.Tensor, InferenceParams]:
    """Run x (B, L, D) as mamba-ssm's generation loop does: prefill `prefill` tokens, then one token per call."""
    params = InferenceParams(max_seqlen=x.shape[1], max_batch_size=x.shape[0])
    outs = [m(x[:, :prefill], inference_params=params)] if prefill else []
    params.seqlen_offset = prefill
    for t in range(prefill, x.shape[1]):  # without a prefill the first token is a parallel pass of length 1
        outs.append(m(x[:, t:t + 1], inference_params=params))
        params.seqlen_offset += 1
    return torch.cat(outs, dim=1), params


@pytest.mark.parametrize("d_state, d_conv, expand", STEP_SIZES)
@pytest.mark.parametrize("prefill", [0, 1, 3, 7])
def test_step_equals_full_forward_at_every_position(d_state, d_conv, expand, prefill):
    m = seeded(0, Mamba, 12, d_state=d_state, d_conv=d_conv, expand=expand, layer_idx=0)
    x = randn(3, 11, 12)
    with torch.no_grad():
        full = m(x)  # (B, L, D)
        stepped, params = _stepped(m, x, prefill)
    diff = (stepped - full).abs().max().item()
    print(f"max |step - forward| = {diff:.2e}")
    assert stepped.shape == full.shape and diff < 1e-5
    conv_state, ssm_state = params.key_value_memory_dict[0]
    assert conv_state.shape == (3, 12 * expand, d_conv) and ssm_state.shape == (3, 12 * expand, d_state)


@pytest.mark.parametrize("d_state, d_conv, expand", STEP_SIZES)
@pytest.mark.parametrize("length", [1, 2, 6])
def test_prefill_states_equal_stepped_states(d_state, d_conv, expand, length):
    """The states a parallel pass over a prefix leaves equal those of stepping through it from zeros, and the
    conv state holds the prefix's last d_conv conv inputs (zeros before the start)."""
    m = seeded(1, Mamba, 8, d_state=d_state, d_conv=d_conv, expand=expand, layer_idx=3)
    x = randn(2, length, 8, seed=1)
    params = InferenceParams(max_seqlen=length, max_batch_size=2)
    conv, ssm = m.allocate_inference_cache(2, length)
    with torch.no_grad():
        m(x, inference_params=params)
        for t in range(length):
            m.step(x[:, t:t + 1], conv, ssm)
        u = (x @ m.in_proj.weight.T)[..., : m.d_inner].transpose(1, 2)  # (B, ED, L) conv inputs
    conv_p, ssm_p = params.key_value_memory_dict[3]
    assert torch.allclose(conv_p, conv, atol=1e-6) and torch.allclose(ssm_p, ssm, atol=1e-5)
    assert torch.allclose(conv_p, F.pad(u, (d_conv - length, 0))[..., -d_conv:], atol=1e-6)


def test_layer_idx_keeps_each_layers_states_apart():
    blocks = [seeded(i, ResidualBlock, 8, d_state=4, layer_idx=i) for i in range(3)]
    x = randn(2, 9, 8)

    def run(h: torch.Tensor, params: InferenceParams | None = None) -> torch.Tensor:
        for block in blocks:
            h = block(h, inference_params=params)
        return h

    with torch.no_grad():
        full = run(x)
        params = InferenceParams(max_seqlen=9, max_batch_size=2)
        outs = [run(x[:, :4], params)]
        params.seqlen_offset = 4
        for t in range(4, 9):
            outs.append(run(x[:, t:t + 1], params))
            params.seqlen_offset += 1
    assert sorted(params.key_value_memory_dict) == [0, 1, 2]
    assert torch.allclose(torch.cat(outs, 1), full, atol=1e-5)
    # ResidualBlock.step on its own states gives the same last output
    states = [b.allocate_inference_cache(2, 9) for b in blocks]
    with torch.no_grad():
        for t in range(9):
            h = x[:, t:t + 1]
            for block, (conv, ssm) in zip(blocks, states):
                h, _, _ = block.step(h, conv, ssm)
    assert torch.allclose(h, full[:, -1:], atol=1e-5)


@needs_mambapy
def test_step_states_match_mambapy_step():
    """mamba.py's MambaBlock.step keeps (h, last d_conv - 1 conv inputs): the same recurrence, other layout."""
    ref = seeded(2, mambapy_mamba.MambaBlock, mambapy_mamba.MambaConfig(d_model=16, n_layers=1, d_state=8))
    ours = Mamba(16, d_state=8)
    ours.load_state_dict(ref.state_dict())
    x = randn(2, 7, 16)
    conv, ssm = ours.allocate_inference_cache(2, 7)
    cache = (None, torch.zeros(2, 32, 3))
    with torch.no_grad():
        for t in range(7):
            y, _, _ = ours.step(x[:, t:t + 1], conv, ssm)
            y_ref, cache = ref.step(x[:, t], cache)
            assert torch.allclose(y[:, 0], y_ref, atol=1e-5)
    assert torch.allclose(ssm, cache[0], atol=1e-5) and torch.allclose(conv[..., 1:], cache[1], atol=1e-6)


def test_inference_api_arguments_and_errors():
    m = Mamba(8, d_state=4, use_fast_path=False, layer_idx=2)
    assert m.layer_idx == 2 and m.use_fast_path is False
    assert list(m.state_dict()) == list(Mamba(8, d_state=4).state_dict())  # nothing new is saved
    x = randn(2, 5, 8)
    with torch.no_grad():
        assert torch.equal(seeded(0, Mamba, 8, use_fast_path=False)(x), seeded(0, Mamba, 8)(x))  # one path
    conv, ssm = m.allocate_inference_cache(3, 10)
    assert conv.shape == (3, 16, 4) and ssm.shape == (3, 16, 4) and conv.dtype == ssm.dtype == torch.float32
    assert m.allocate_inference_cache(1, 1, dtype=torch.float64)[1].dtype == torch.float64
    with pytest.raises(ValueError, match=r"Mamba.step takes one token \(B, 1, D\), got \(2, 5, 8\)"):
        m.step(x, conv, ssm)
    with pytest.raises(ValueError, match=r"no layer_idx.*Mamba\(\.\.\., layer_idx=i\)"):
        Mamba(8)(x, inference_params=InferenceParams(5, 2))
    with pytest.raises(ValueError, match="layer_idx must be None or an integer >= 0"):
        Mamba(8, layer_idx=-1)
    params = InferenceParams(5, 2)
    m(x, inference_params=params)
    with pytest.raises(ValueError, match="holds states for batch 2 at layer 2, got a batch of 3"):
        m(randn(3, 5, 8), inference_params=params)
    params.seqlen_offset = 5
    params.reset(max_seqlen=7, max_batch_size=2)
    assert params.seqlen_offset == 0 and params.max_seqlen == 7
