"""Every selective-scan backend against the reference loop: outputs, last state and all gradients."""

from __future__ import annotations

import logging
import os

import pytest
import torch
import torch.utils.cpp_extension

from pkd import ssm

ATOL = RTOL = 1e-5
NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


@pytest.fixture(scope="session")
def cpp_kernel():
    """Builds (once, cached under $PKD_CACHE_DIR) or loads the fused kernel; skips only without a compiler."""
    if not ssm.build_cpu_kernel(verbose=True):
        if os.environ.get("PKD_REQUIRE_KERNEL") == "1":
            pytest.fail(f"PKD_REQUIRE_KERNEL=1 but the fused kernel is unavailable: {ssm._kernel_error}")
        pytest.skip(f"fused kernel unavailable: {ssm._kernel_error}")
    return ssm._load_cached_kernel()


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


@pytest.mark.parametrize("backend", ["torch", "cpp"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(k for k, v in o.items() if v) or "plain")
def test_backend_matches_reference(backend, shape, options, monkeypatch, request):
    if backend == "cpp":
        request.getfixturevalue("cpp_kernel")
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


def test_cpp_kernel_splits_a_row_across_threads(cpp_kernel, monkeypatch):
    """9 (row, block) tasks of 38k lane-steps on 2 threads: row 1's blocks land on both threads and are summed."""
    monkeypatch.setenv(ssm.BACKEND_ENV, "cpp")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        options = dict(D=True, z=True, bias=True, softplus=True)
        inputs = make_inputs(3, 24, 300, 16, **options)
        y0, last0, g0 = run_with_grads(ssm.selective_scan_ref, inputs, True)
        y1, last1, g1 = run_with_grads(ssm.selective_scan, inputs, True)
    finally:
        torch.set_num_threads(threads)
    assert_close("y", y1, y0)
    assert_close("last_state", last1, last0)
    for name in g0:
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


def test_env_override_and_scan_backend(monkeypatch):
    for name in ("ref", "torch", "cpp"):
        monkeypatch.setenv(ssm.BACKEND_ENV, name)
        assert ssm.scan_backend() == name
    monkeypatch.setenv(ssm.BACKEND_ENV, "ref")
    called = []
    monkeypatch.setattr(ssm, "selective_scan_ref", lambda *a, **k: called.append(1) or "ref-result")
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


def test_cpu_never_builds(tmp_path, monkeypatch):
    """Without a cached build, selective_scan falls back to torch and never compiles or writes anything."""
    monkeypatch.delenv(ssm.BACKEND_ENV, raising=False)
    monkeypatch.setenv(ssm.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(ssm, "_kernel", None)

    def no_build(*args, **kwargs):
        raise AssertionError("selective_scan must not build the kernel")

    monkeypatch.setattr(torch.utils.cpp_extension, "load", no_build)
    assert ssm.scan_backend("cpu") == "torch"
    inputs = make_inputs(2, 3, 5, 2, D=True, z=False, bias=False, softplus=True)
    y = ssm.selective_scan(*[inputs[k] for k in NAMES], delta_softplus=True)
    assert_close("y", y, ssm.selective_scan_ref(*[inputs[k] for k in NAMES], delta_softplus=True))
    available = ssm.available_backends()
    assert available["torch"] is True and available["ref"] is True
    assert isinstance(available["cpp"], str) and "build_cpu_kernel" in available["cpp"]
    assert not (tmp_path / "cache").exists()
    monkeypatch.setenv(ssm.BACKEND_ENV, "cpp")
    with pytest.raises(RuntimeError, match="build_cpu_kernel"):
        ssm.selective_scan(*[inputs[k] for k in NAMES])


def test_cached_build_loads_without_compiling(cpp_kernel, monkeypatch):
    monkeypatch.setattr(ssm, "_kernel", None)
    monkeypatch.setattr(torch.utils.cpp_extension, "load", lambda *a, **k: pytest.fail("recompiled"))
    assert ssm._load_cached_kernel() is not None
    name, build_dir = ssm.kernel_build_dir()
    assert (build_dir / f"{name}.so").is_file() and torch.__version__ and name.startswith("pkd_scan_")


def test_build_without_tools_returns_false(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(ssm.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(ssm, "_kernel", None)
    monkeypatch.setattr(ssm, "_kernel_error", None)
    monkeypatch.setattr(ssm.shutil, "which", lambda tool: None)
    with caplog.at_level(logging.WARNING, logger="pkd.ssm"):
        assert ssm.build_cpu_kernel() is False
    assert "ninja" in caplog.text and "not found" in caplog.text
    assert "not found" in ssm.available_backends()["cpp"]


def test_cache_dir_key(tmp_path, monkeypatch):
    monkeypatch.setenv(ssm.CACHE_ENV, str(tmp_path))
    name, build_dir = ssm.kernel_build_dir()
    assert build_dir.parent == tmp_path / "scan_kernel" and name.endswith(build_dir.name)


def test_forced_cuda_without_cuda_is_actionable(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    monkeypatch.setenv(ssm.BACKEND_ENV, "cuda")
    inputs = make_inputs(1, 2, 3, 2, D=False, z=False, bias=False, softplus=False)
    with pytest.raises(RuntimeError, match="PKD_SCAN_BACKEND=torch"):
        ssm.selective_scan(*[inputs[k] for k in NAMES])
    assert isinstance(ssm.available_backends()["cuda"], str)


@pytest.mark.parametrize(
    "bad, match",
    [({"A": torch.zeros(3, 2)}, "A must be"), ({"B": torch.zeros(1, 2, 4)}, "B must have shape"),
     ({"u": torch.zeros(2, 3)}, "u must be")],
)
def test_shape_errors(bad, match):
    inputs = make_inputs(1, 2, 3, 2, D=True, z=False, bias=False, softplus=False)
    inputs.update(bad)
    with pytest.raises(ValueError, match=match):
        ssm.selective_scan(*[inputs[k] for k in NAMES])


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
