"""Choosing the backend (pkd.ssm.dispatch): $PKD_SCAN_BACKEND and its errors, auto once the kernel is built, a forced
backend that cannot run, and which calls the fused kernel and mamba_ssm take (the others go to the torch backend)."""

from __future__ import annotations

import pytest
import torch

from pkd import ssm
from pkd.ssm import dispatch
from pkd.ssm.cuda import cuda_takes
from pkd.ssm.layout import check_shapes
from tests.ssm.scan_inputs import NAMES, make_inputs


def test_env_override_and_scan_backend(monkeypatch):
    for name in ("ref", "torch", "cpp"):
        monkeypatch.setenv(ssm.BACKEND_ENV, name)
        assert ssm.scan_backend() == name
    monkeypatch.setenv(ssm.BACKEND_ENV, "ref")
    called = []
    monkeypatch.setattr(dispatch, "selective_scan_ref", lambda *a, **k: called.append(1) or "ref-result")
    inputs = make_inputs(1, 2, 3, 2, D=False, z=False, bias=False, softplus=False)
    assert ssm.selective_scan(*[inputs[k] for k in NAMES]) == "ref-result" and called


def test_bad_backend_value_lists_choices(monkeypatch):
    monkeypatch.setenv(ssm.BACKEND_ENV, "fast")
    with pytest.raises(ValueError, match="auto, cpp, torch, ref, cuda"):
        ssm.scan_backend()
    inputs = make_inputs(1, 2, 3, 2, D=False, z=False, bias=False, softplus=False)
    with pytest.raises(ValueError, match="PKD_SCAN_BACKEND='fast'"):
        ssm.selective_scan(*[inputs[k] for k in NAMES])


def test_auto_uses_cpp_once_built(cpp_kernel, monkeypatch):
    monkeypatch.delenv(ssm.BACKEND_ENV, raising=False)
    assert ssm.scan_backend("cpu") == "cpp"
    assert ssm.available_backends()["cpp"] is True


def test_forced_cuda_without_cuda_is_actionable(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    monkeypatch.setenv(ssm.BACKEND_ENV, "cuda")
    inputs = make_inputs(1, 2, 3, 2, D=False, z=False, bias=False, softplus=False)
    with pytest.raises(RuntimeError, match="PKD_SCAN_BACKEND=torch"):
        ssm.selective_scan(*[inputs[k] for k in NAMES])
    assert isinstance(ssm.available_backends()["cuda"], str)


def _layout_args(b_shape, c_shape, *, dim=48, complex_a=False, dtype=torch.float32, return_last_state=False):
    """(u, ..., return_last_state) for route / cuda_takes: zeros of the given B/C shapes, batch 2, L 5, N 4."""
    A = torch.zeros(dim, 4, dtype=torch.complex64 if complex_a else torch.float32)
    x = torch.zeros(2, dim, 5, dtype=dtype)
    B, C = (torch.zeros(s, dtype=torch.complex64 if complex_a and len(s) == 2 else dtype) for s in (b_shape, c_shape))
    return (x, x, A, B, C, None, None, None, True, return_last_state)


@pytest.mark.parametrize("b_shape, c_shape, complex_a, expected", [
    ((2, 4, 5), (2, 4, 5), False, "cpp"),
    ((48, 4), (2, 3, 4, 5), False, "cpp"),      # fixed B, 16 channels per group of C
    ((2, 6, 4, 5), (2, 4, 5), False, "cpp"),    # 8 channels per group
    ((2, 12, 4, 5), (2, 4, 5), False, "cpp"),   # 4 channels per group: 4-lane blocks
    ((2, 24, 4, 5), (2, 4, 5), False, "torch"),  # 2 channels per group: not whole 4-lane blocks
    ((2, 4, 10), (48, 4), True, "torch"),       # complex A
])
def test_cpp_routes_what_it_cannot_run_to_torch(cpp_kernel, b_shape, c_shape, complex_a, expected):
    args = _layout_args(b_shape, c_shape, complex_a=complex_a)
    assert dispatch.route("cpp", check_shapes(*args[:8]), args) == expected


@pytest.mark.parametrize("b_shape, c_shape, dtype, last, takes", [
    ((2, 4, 5), (2, 4, 5), torch.float32, False, True),
    ((2, 3, 4, 5), (2, 3, 4, 5), torch.bfloat16, False, True),
    ((2, 3, 4, 5), (48, 4), torch.float16, False, True),
    ((48, 4), (2, 3, 4, 5), torch.float32, False, False),     # upstream's kernel takes the group count from B
    ((2, 2, 4, 5), (2, 3, 4, 5), torch.float32, False, False),  # different group counts
    ((2, 4, 5), (2, 4, 5), torch.float64, False, False),      # not a kernel input dtype
    ((2, 4, 5), (2, 4, 5), torch.float32, True, False),       # selective_scan_fn drops the last state's gradient
])
def test_cuda_takes_only_what_mamba_ssm_computes_exactly(b_shape, c_shape, dtype, last, takes):
    args = _layout_args(b_shape, c_shape, dtype=dtype, return_last_state=last)
    if last:
        args = (args[0].clone().requires_grad_(), *args[1:])
    assert cuda_takes(check_shapes(*args[:8]), args) is takes
