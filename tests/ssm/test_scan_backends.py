"""Every selective-scan backend against the reference loop: outputs, last state and all gradients; pkd's reference and
every backend against mamba_ssm's own reference (transcribed in tests/ssm/upstream.py) over upstream's grid of layouts
and switches."""

from __future__ import annotations

import pytest
import torch

from pkd import ssm
from pkd.ssm.cpu_kernel import LANES_ENV
from tests.ssm.scan_inputs import NAMES, OPTIONS, SHAPES, assert_close, make_inputs, run_with_grads
from tests.ssm.upstream import (GRID, Case, assert_upstream_close, run_case, upstream_inputs, upstream_kernel_precision,
                                upstream_ref, upstream_result, upstream_tolerances)


@pytest.mark.parametrize("backend", ["torch", "cpp4", "cpp8", "cpp16"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(k for k, v in o.items() if v) or "plain")
def test_backend_matches_reference(backend, shape, options, monkeypatch, request):
    """Every backend, and the fused kernel at each lane width (forced with $PKD_SCAN_LANES, whatever this CPU
    prefers), against the reference loop."""
    if backend.startswith("cpp"):
        request.getfixturevalue("cpp_kernel")
        monkeypatch.setenv(LANES_ENV, backend[3:])
        backend = "cpp"
    monkeypatch.setenv(ssm.BACKEND_ENV, backend)
    inputs = make_inputs(*shape, **options)
    y0, last0, g0 = run_with_grads(ssm.selective_scan_ref, inputs, options["softplus"])
    y1, last1, g1 = run_with_grads(ssm.selective_scan, inputs, options["softplus"])
    assert_close("y", y1, y0)
    assert_close("last_state", last1, last0)
    assert g1.keys() == g0.keys()
    for name in g0:
        assert g1[name] is not None, f"no gradient for {name}"
        assert_close(f"grad {name}", g1[name], g0[name])


@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_no_grad_forward_and_dtypes(backend, monkeypatch, request):
    if backend == "cpp":
        request.getfixturevalue("cpp_kernel")
    monkeypatch.setenv(ssm.BACKEND_ENV, backend)
    inputs = make_inputs(2, 8, 9, 4, D=True, z=True, bias=True, softplus=True, dtype=torch.float64)
    args = [inputs[k] for k in NAMES]
    want, want_last = ssm.selective_scan_ref(*args, delta_softplus=True, return_last_state=True)
    with torch.no_grad():
        got, got_last = ssm.selective_scan(*args, delta_softplus=True, return_last_state=True)
        only_y = ssm.selective_scan(*args, delta_softplus=True)
    assert got.dtype == torch.float64 and not got.requires_grad
    assert_close("y", got, want)
    assert_close("last_state", got_last, want_last)
    assert_close("y without state", only_y, want)
    _, _, grads = run_with_grads(ssm.selective_scan, inputs, True)
    assert all(g.dtype == torch.float64 for g in grads.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("options", OPTIONS[:2], ids=["all", "plain"])
def test_cuda_matches_reference(options, monkeypatch):
    """On CUDA, auto uses mamba_ssm's selective_scan_fn when it works (else the torch backend): same results."""
    monkeypatch.delenv(ssm.BACKEND_ENV, raising=False)
    inputs = make_inputs(2, 16, 37, 8, **options)
    y0, last0, g0 = run_with_grads(ssm.selective_scan_ref, inputs, options["softplus"])
    cuda_inputs = {k: (v.cuda() if v is not None else None) for k, v in inputs.items()}
    y1, last1, g1 = run_with_grads(ssm.selective_scan, cuda_inputs, options["softplus"])
    print("cuda backend:", ssm.scan_backend("cuda"))
    assert_close("y", y1.cpu(), y0)
    assert_close("last_state", last1.cpu(), last0)
    for name in g0:
        assert_close(f"grad {name}", g1[name].cpu(), g0[name])


@pytest.mark.parametrize("backend", ["ref", "torch", "cpp", "cuda"])
@pytest.mark.parametrize("case", GRID, ids=lambda c: c.id)
def test_matches_upstream_reference(case, backend, monkeypatch, request):
    """pkd's reference (the spec) and each backend against mamba_ssm's selective_scan_ref, upstream's tolerances."""
    device = "cpu"
    if backend == "cpp":
        request.getfixturevalue("cpp_kernel")
    if backend == "cuda":
        if ssm.available_backends()["cuda"] is not True:
            pytest.skip("needs CUDA and a working mamba_ssm")
        device = "cuda"
    fn = ssm.selective_scan_ref if backend == "ref" else ssm.selective_scan
    if backend != "ref":
        monkeypatch.setenv(ssm.BACKEND_ENV, backend)
    got = run_case(fn, case, upstream_inputs(case, GRID.index(case)), device)
    assert_upstream_close(case, got, upstream_result(case))


def test_upstream_ref_gate_precision():
    """The one difference between upstream_ref and upstream_kernel_precision is the dtype of silu(z): none in fp32,
    within upstream's tolerance on the output in bf16."""
    for itype in (torch.float32, torch.bfloat16):
        case = Case(1, 1, torch.float32, itype, True, True, True, True, True, seqlen=17)
        inputs = upstream_inputs(case, 0)
        literal, fp32_gate = (run_case(fn, case, inputs) for fn in (upstream_ref, upstream_kernel_precision))
        if itype == torch.float32:
            assert all(torch.equal(literal[k], fp32_gate[k]) for k in literal)
        rtol, atol = upstream_tolerances(case)["out"]
        assert torch.allclose(literal["out"].float(), fp32_gate["out"].float(), rtol=rtol, atol=atol)


def test_fixed_real_B_with_complex_A_is_complex_with_zero_imaginary_part(monkeypatch):
    case = Case(0, 1, torch.complex64, torch.float32, True, True, True, True, True, seqlen=9)
    inputs = upstream_inputs(case, 0)
    inputs["B"] = inputs["B"].real.contiguous()
    want = run_case(ssm.selective_scan_ref, case, {**inputs, "B": inputs["B"].to(torch.complex64)})
    monkeypatch.setenv(ssm.BACKEND_ENV, "torch")
    got = run_case(ssm.selective_scan, case, inputs)
    assert got["B"].dtype == torch.float32  # a real input gets the real part of the gradient
    want["B"] = want["B"].real
    for name in want:
        as_real = [torch.view_as_real(t) if t.is_complex() else t for t in (got[name], want[name])]
        assert_close(name, *as_real)


def test_one_group_of_four_dims_is_the_three_dim_layout(monkeypatch, request):
    """(batch, 1, N, L) is (batch, N, L): same outputs on every CPU backend, gradients in the 4-dim shape."""
    case = Case(1, 1, torch.float32, torch.float32, True, True, True, True, True, seqlen=13, dim=16, dstate=4)
    inputs = upstream_inputs(case, 3)
    grouped = {**inputs, "B": inputs["B"][:, None], "C": inputs["C"][:, None]}
    for backend in ("ref", "torch", "cpp"):
        if backend == "cpp":
            request.getfixturevalue("cpp_kernel")
        monkeypatch.setenv(ssm.BACKEND_ENV, backend)
        want, got = (run_case(ssm.selective_scan, case, x) for x in (inputs, grouped))
        assert got["B"].shape == (2, 1, 4, 13) and got["C"].shape == (2, 1, 4, 13)
        for name in want:
            assert_close(name, got[name].reshape(want[name].shape), want[name])
