"""Tests for pkd.models: registries, the Mamba block's mamba-ssm layout/init, the classifier and the teachers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pkd.models import STUDENTS, TEACHERS, build_student, build_teacher, register_student
from pkd.models.student import Mamba, MambaClassifier, ResidualBlock, Tokenizer


def _seeded(seed: int, fn, *args, **kwargs):
    """Build a module under a fixed global seed (nn.Module init draws from the global generator)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return fn(*args, **kwargs)


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------------ registries


def test_registries_hold_the_models():
    assert STUDENTS == {"mamba": MambaClassifier}
    assert set(TEACHERS) == {"mnist_cnn", "resnet_cifar"}


def test_unknown_names_list_the_choices():
    with pytest.raises(ValueError, match=r"^unknown student 'x'; choose one of: mamba$"):
        build_student("x")
    with pytest.raises(ValueError, match=r"^unknown teacher 'cnn'; choose one of: mnist_cnn, resnet_cifar$"):
        build_teacher("cnn")


def test_unknown_field_is_named_with_the_allowed_ones():
    with pytest.raises(ValueError, match=r"unknown field 'd_modle' for student 'mamba'; allowed: image_shape, "):
        build_student("mamba", d_modle=16)
    with pytest.raises(ValueError, match=r"unknown field 'depht' for teacher 'resnet_cifar'; allowed: .*depth"):
        build_teacher("resnet_cifar", depht=20)


def test_duplicate_registration_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_student("mamba")(Mamba)


@pytest.mark.parametrize("kwargs, field", [
    ({"d_model": 0}, "d_model"),
    ({"d_model": "32"}, "d_model"),
    ({"d_model": 8.0}, "d_model"),
    ({"n_layers": -1}, "n_layers"),
    ({"d_state": 0}, "d_state"),
    ({"expand": 0}, "expand"),
    ({"d_conv": 0}, "d_conv"),
    ({"num_classes": 1}, "num_classes"),
    ({"tokens": "pixels"}, "tokens"),
    ({"pool": "max"}, "pool"),
    ({"tokens": "patch", "patch": 5}, "patch"),
    ({"tokens": "patch", "patch": 0}, "patch"),
    ({"image_shape": [1, 28]}, "image_shape"),
    ({"image_shape": [1, 0, 28]}, r"image_shape\[1\]"),
])
def test_impossible_student_sizes_raise_one_line(kwargs, field):
    with pytest.raises(ValueError, match=field) as info:
        build_student("mamba", **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name, kwargs, field", [
    ("resnet_cifar", {"depth": 21}, "depth"),
    ("resnet_cifar", {"width": 0}, "width"),
    ("mnist_cnn", {"image_size": 5}, "image_size"),
    ("mnist_cnn", {"dropout1": 1.0}, "dropout1"),
    ("mnist_cnn", {"hidden": 0}, "hidden"),
])
def test_impossible_teacher_sizes_raise_one_line(name, kwargs, field):
    with pytest.raises(ValueError, match=field) as info:
        build_teacher(name, **kwargs)
    assert "\n" not in str(info.value)


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
    m = _seeded(0, Mamba, 64, d_state=16, expand=4)  # ED = 256, R = 4
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
    m = _seeded(0, Mamba, 16, d_state=4)
    x = _randn(3, 7, 16).requires_grad_()
    y = m(x)
    assert y.shape == (3, 7, 16)
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_mamba_is_causal():
    m = _seeded(0, Mamba, 8, d_state=4).eval()
    x = _randn(2, 10, 8)
    x2 = x.clone()
    x2[:, 6:] = _randn(2, 4, 8, seed=1)
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
    ours = _seeded(1, Mamba, 32, **kwargs)
    ref = _seeded(1, mambapy_mamba.MambaBlock, mambapy_mamba.MambaConfig(d_model=32, n_layers=1, **cfg))
    ours_sd, ref_sd = ours.state_dict(), ref.state_dict()
    assert list(ours_sd) == list(ref_sd)  # mamba.py uses exactly mamba_simple's key names
    for key in ours_sd:
        assert torch.equal(ours_sd[key], ref_sd[key]), key
    x = _randn(4, 28, 32)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = ours(xa), ref(xb)
    print("max |pkd - mambapy| =", (ya - yb).abs().max().item())
    assert torch.allclose(ya, yb, atol=1e-5, rtol=1e-5)
    g = _randn(4, 28, 32, seed=3)
    (ya * g).sum().backward()
    (yb * g).sum().backward()
    assert torch.allclose(xa.grad, xb.grad, atol=1e-5, rtol=1e-4)
    for (name, pa), pb in zip(ours.named_parameters(), ref.parameters()):
        assert torch.allclose(pa.grad, pb.grad, atol=1e-4, rtol=1e-4), name


@needs_mambapy
def test_mambapy_state_dict_loads_into_pkd():
    ref = _seeded(2, mambapy_mamba.MambaBlock, mambapy_mamba.MambaConfig(d_model=16, n_layers=1, d_state=8))
    ours = _seeded(3, Mamba, 16, d_state=8)
    assert not torch.equal(ours.in_proj.weight, ref.in_proj.weight)
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = _randn(2, 49, 16)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5, rtol=1e-5)


@needs_mambapy
def test_residual_block_keys_match_mambapy():
    ours = ResidualBlock(16, d_state=8)
    ref = mambapy_mamba.ResidualBlock(mambapy_mamba.MambaConfig(d_model=16, n_layers=1, d_state=8))
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    x = _randn(2, 5, 16)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5)


# ------------------------------------------------------------------------------------------------ classifier


@pytest.mark.parametrize("kwargs, seq_len", [
    ({}, 28),
    ({"tokens": "patch", "patch": 4}, 49),
    ({"tokens": "patch", "patch": 7, "pool": "last", "n_layers": 2}, 16),
    ({"image_shape": [3, 32, 32], "tokens": "patch", "patch": 4, "d_model": 8}, 64),
    ({"image_shape": (3, 8, 6), "tokens": "rows", "d_model": 8, "num_classes": 3}, 8),
])
def test_classifier_shapes(kwargs, seq_len):
    m = _seeded(0, build_student, "mamba", d_state=4, **{"d_model": 8, **kwargs})
    c, h, w = m.image_shape
    assert m.seq_len == seq_len
    logits = m(_randn(2, c, h, w))
    assert logits.shape == (2, kwargs.get("num_classes", 10))


def test_classifier_rejects_wrong_input_shape():
    with pytest.raises(ValueError, match=r"expected input \(B, 1, 28, 28\), got \(2, 1, 32, 32\)"):
        build_student("mamba", d_model=8)(torch.zeros(2, 1, 32, 32))


def test_tokenizer_rows_and_patches():
    x = _randn(2, 3, 8, 12)
    rows = Tokenizer("rows", 4)(x)  # token h = row h, features ordered (w, c)
    assert rows.shape == (2, 8, 36)
    assert torch.equal(rows[1, 5], x[1, :, 5, :].t().reshape(-1))
    patches = Tokenizer("patch", 4)(x)  # token index = i * (W/P) + j, features ordered (p_h, p_w, c)
    assert patches.shape == (2, 6, 48)
    i, j = 1, 2
    assert torch.equal(patches[0, i * 3 + j], x[0, :, 4 * i:4 * i + 4, 4 * j:4 * j + 4].permute(1, 2, 0).reshape(-1))
    gray = _randn(2, 1, 8, 12)
    assert torch.equal(Tokenizer("rows", 4)(gray), gray[:, 0])


def test_classifier_trains_every_parameter():
    m = _seeded(0, build_student, "mamba", d_model=8, d_state=4, n_layers=2, tokens="patch", patch=7)
    loss = F.cross_entropy(m(_randn(4, 1, 28, 28)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert any(k.startswith("layers.1.mixer.A_log") for k in m.state_dict())
    assert "norm_f.weight" in m.state_dict()


def test_last_pool_depends_only_on_last_token_causally():
    m = _seeded(0, build_student, "mamba", d_model=8, d_state=4, pool="last").eval()
    x = _randn(1, 1, 28, 28)
    x2 = x.clone()
    x2[..., 0, :] += 1.0  # change the first row: the last token still sees it through the scan
    with torch.no_grad():
        assert not torch.allclose(m(x), m(x2))


# ------------------------------------------------------------------------------------------------ teachers


def test_mnist_cnn_is_the_pytorch_example_net():
    m = build_teacher("mnist_cnn")
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == {"conv1.weight": (32, 1, 3, 3), "conv1.bias": (32,), "conv2.weight": (64, 32, 3, 3),
                      "conv2.bias": (64,), "fc1.weight": (128, 9216), "fc1.bias": (128,),
                      "fc2.weight": (10, 128), "fc2.bias": (10,)}
    # 320 + 18,496 + 1,179,776 + 1,290 parameters, the well-known 1,199,882 of pytorch/examples mnist.
    assert sum(p.numel() for p in m.parameters()) == 1_199_882
    assert m(_randn(3, 1, 28, 28)).shape == (3, 10)


def test_mnist_cnn_dropout_only_in_training():
    m = _seeded(0, build_teacher, "mnist_cnn")
    x = _randn(2, 1, 28, 28)
    m.eval()
    with torch.no_grad():
        assert torch.equal(m(x), m(x))
        m.train()
        assert not torch.equal(m(x), m(x))


def test_resnet_cifar_depth_and_params():
    m = build_teacher("resnet_cifar")  # ResNet-20, widths 16/32/64
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d) and mod.kernel_size == (3, 3)]
    assert len(convs) + 1 == 20  # 19 3x3 convs + the fc layer
    # ResNet-20 with option-A shortcuts has 269,722 parameters; our option-B projections add
    # conv 16*32 + 32*64 = 2,560 and BN 2*(32 + 64) = 192.
    assert sum(p.numel() for p in m.parameters()) == 269_722 + 2_560 + 192
    assert m(_randn(2, 3, 32, 32)).shape == (2, 10)
    small = build_teacher("resnet_cifar", depth=8, width=4, in_channels=1, image_size=28, num_classes=3)
    assert small(_randn(2, 1, 28, 28)).shape == (2, 3)
