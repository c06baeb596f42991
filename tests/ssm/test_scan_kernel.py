"""The fused CPU kernel (pkd.ssm.cpu_kernel): split across threads, never built by a scan, loaded from its cache without
compiling, a clear False without compiler or ninja, its cache key, and its custom operator's fake implementations."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch
import torch.utils.cpp_extension

from pkd import ssm
from pkd.ssm.cpu_kernel import KERNEL, load_cached_kernel, scan_fwd_op
from tests.ssm.scan_inputs import NAMES, assert_close, make_inputs, run_with_grads


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


def test_cpu_never_builds(tmp_path, monkeypatch):
    """Without a cached build, selective_scan falls back to torch and never compiles or writes anything."""
    monkeypatch.delenv(ssm.BACKEND_ENV, raising=False)
    monkeypatch.setenv(ssm.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(KERNEL, "module", None)

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
    monkeypatch.setattr(KERNEL, "module", None)
    monkeypatch.setattr(torch.utils.cpp_extension, "load", lambda *a, **k: pytest.fail("recompiled"))
    assert load_cached_kernel() is not None
    name, build_dir = ssm.kernel_build_dir()
    assert (build_dir / f"{name}.so").is_file() and torch.__version__ and name.startswith("pkd_scan_")


def test_build_without_tools_returns_false(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(ssm.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(KERNEL, "module", None)
    monkeypatch.setattr(KERNEL, "error", None)
    monkeypatch.setattr(shutil, "which", lambda tool: None)
    with caplog.at_level(logging.WARNING, logger="pkd.ssm"):
        assert ssm.build_cpu_kernel() is False
    assert "ninja" in caplog.text and "not found" in caplog.text
    assert "not found" in ssm.available_backends()["cpp"]


def test_cache_dir_key(tmp_path, monkeypatch):
    monkeypatch.setenv(ssm.CACHE_ENV, str(tmp_path))
    name, build_dir = ssm.kernel_build_dir()
    assert build_dir.parent == tmp_path / "scan_kernel" and name.endswith(build_dir.name)


@pytest.mark.parametrize("b_shape, c_shape", [((48, 4), (2, 3, 9, 4)), ((2, 2, 9, 4), (48, 4)), ((2, 9, 4), (2, 9, 4))],
                         ids=["fixed-B-grouped-C", "grouped-B-fixed-C", "mamba1"])
def test_kernel_custom_op_fakes_match_every_layout(cpp_kernel, b_shape, c_shape):
    """pkd::scan_fwd's fake (what torch.export traces) has the real kernel's output shapes for each B/C layout; the
    time-major (B, [G,] L, N) or fixed (ED, N) B/C is what _cpp_args passes."""
    g = torch.Generator().manual_seed(0)
    u, dt, z = (torch.rand(2, 48, 9, generator=g) for _ in range(3))
    A, D = -torch.rand(48, 4, generator=g), torch.randn(48, generator=g)
    Bt, Ct = (torch.randn(s, generator=g) for s in (b_shape, c_shape))
    args = [t.requires_grad_() for t in (u, dt, A, Bt, Ct, D, z)] + [True, True]
    torch.library.opcheck(scan_fwd_op, args, test_utils=["test_faketensor", "test_autograd_registration"])
