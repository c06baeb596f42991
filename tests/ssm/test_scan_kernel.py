"""The fused CPU kernel (pkd.ssm.cpu_kernel): split across threads, never built by a scan, loaded from its cache without
compiling, a clear False without compiler or ninja, its cache key, its custom operator's fake implementations, and its
lane width: chosen for the CPU, forced by $PKD_SCAN_LANES, every width run on every machine, named by `pkd backends`."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys

import pytest
import torch
import torch.utils.cpp_extension

from pkd import ssm
from pkd.ssm.cpu_info import cpu_model, kernel_flags, vector_extension
from pkd.ssm.cpu_kernel import (KERNEL, LANE_WIDTHS, LANES_ENV, describe_kernel, kernel_info, load_cached_kernel,
                                pick_lanes, preferred_lanes, scan_fwd_op)
from tests.pkd_process import ROOT, child_env, pkd_ok
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
    bias = torch.rand(48, generator=g)
    per_group = [48 // M.shape[1] for M in (Bt, Ct) if M.dim() == 4 and M.shape[1] > 1]
    for lanes in sorted({pick_lanes(48, per_group, w) for w in LANE_WIDTHS}):
        args = [t.detach().requires_grad_() for t in (u, dt, A, Bt, Ct, D, z, bias)] + [True, True, True, lanes]
        torch.library.opcheck(scan_fwd_op, args, test_utils=["test_faketensor", "test_autograd_registration"])
        assert scan_fwd_op(*args)[2].shape[-1] == lanes  # the checkpoints carry the width to the backward


@pytest.mark.parametrize("lanes", LANE_WIDTHS)
@pytest.mark.parametrize("b_shape, c_shape", [((48, 4), (2, 3, 4, 9)), ((2, 12, 4, 9), (48, 4)),
                                              ((2, 6, 4, 9), (2, 3, 4, 9))],
                         ids=["fixed-B-16-per-group-C", "4-per-group-B-fixed-C", "grouped-8-and-16"])
def test_every_lane_width_runs_grouped_and_fixed_layouts(cpp_kernel, lanes, b_shape, c_shape, monkeypatch):
    """At each forced width the kernel takes the widest blocks that fit the groups: same results and gradients as
    the reference loop, with D, z, bias and softplus."""
    monkeypatch.setenv(ssm.BACKEND_ENV, "cpp")
    monkeypatch.setenv(LANES_ENV, str(lanes))
    inputs = make_inputs(2, 48, 9, 4, D=True, z=True, bias=True, softplus=True)
    g = torch.Generator().manual_seed(3)
    inputs["B"], inputs["C"] = (torch.randn(s, generator=g) for s in (b_shape, c_shape))
    y0, last0, g0 = run_with_grads(ssm.selective_scan_ref, inputs, True)
    y1, last1, g1 = run_with_grads(ssm.selective_scan, inputs, True)
    assert_close("y", y1, y0)
    assert_close("last_state", last1, last0)
    for name in g0:
        assert_close(f"grad {name}", g1[name], g0[name])


def test_pick_lanes_takes_the_widest_block_that_fits():
    assert pick_lanes(64, [], 16) == 16 and pick_lanes(64, [], 8) == 8 and pick_lanes(64, [], 4) == 4
    assert pick_lanes(72, [], 16) == 8  # 16 lanes only when ED fills whole blocks
    assert pick_lanes(20, [], 16) == 8  # narrower widths pad the last block
    assert pick_lanes(48, [16, 8], 16) == 8 and pick_lanes(48, [4], 16) == 4
    with pytest.raises(ValueError, match="torch backend"):
        pick_lanes(48, [2], 16)


def test_lane_width_comes_from_the_cpu_or_the_environment(cpp_kernel, monkeypatch):
    """Unforced, the width is what the kernel's compile target suits (16 with AVX-512F, 8 with AVX/AVX2, 4
    otherwise); $PKD_SCAN_LANES forces one and a bad value is a one-line error naming the variable."""
    monkeypatch.delenv(LANES_ENV, raising=False)
    suits = {"AVX-512F": 16, "AVX2": 8, "AVX": 8}.get(cpp_kernel.vector_isa(), 4)
    assert preferred_lanes() == cpp_kernel.preferred_lanes() == suits
    info = kernel_info()
    assert info["lanes"] == suits and info["kernel_target"] == cpp_kernel.vector_isa() and info["cpu"]
    monkeypatch.setenv(LANES_ENV, "4")
    assert preferred_lanes() == 4 and "4 lanes (forced by PKD_SCAN_LANES)" in describe_kernel()
    monkeypatch.setenv(LANES_ENV, "12")
    with pytest.raises(ValueError, match="PKD_SCAN_LANES='12' is not a lane width"):
        preferred_lanes()


def test_backends_command_names_cpu_extension_and_width(cpp_kernel):
    """`python -m pkd backends` prints the CPU model, its vector extension, the kernel's target and width."""
    proc = pkd_ok("backends", env=child_env(PKD_SCAN_LANES="8"))
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("CPU: "))
    assert cpu_model() in line and vector_extension() in line
    assert f"cpp kernel: {cpp_kernel.vector_isa()} build, 8 lanes (forced by PKD_SCAN_LANES)" in line


@pytest.mark.parametrize("system, machine, arch, openmp", [
    ("Linux", "x86_64", "-march=native", True), ("Linux", "aarch64", "-mcpu=native", True),
    ("Darwin", "arm64", "-mcpu=native", False), ("Darwin", "x86_64", "-march=native", False),
    ("Linux", "riscv64", None, True)])
def test_kernel_flags_per_platform(system, machine, arch, openmp, monkeypatch):
    """Native tuning where the flag exists on that architecture; no -fopenmp on macOS (Apple clang has none)."""
    monkeypatch.delenv("PKD_KERNEL_CFLAGS", raising=False)
    cflags, ldflags = kernel_flags(system, machine)
    assert ("-fopenmp" in cflags) is openmp and ("-fopenmp" in ldflags) is openmp
    assert [f for f in cflags if f.startswith(("-march", "-mcpu"))] == ([arch] if arch else [])
    monkeypatch.setenv("PKD_KERNEL_CFLAGS", "-mno-avx512f -DX=1")
    assert kernel_flags(system, machine)[0][-2:] == ["-mno-avx512f", "-DX=1"]


def test_vector_extension_reads_cpu_flags():
    assert vector_extension("fpu sse2 avx avx2 fma avx512f", "x86_64") == "AVX-512F"
    assert vector_extension("fpu sse2 avx avx2 fma bmi2", "x86_64") == "AVX2"
    assert vector_extension("fp asimd evtstrm aes", "aarch64") == "NEON"
    assert vector_extension("", "arm64") == "NEON"  # macOS lists no flags; Apple silicon has NEON
    assert vector_extension("fpu", "riscv64") == "none known"


def test_eager_inference_calls_the_kernel_directly_and_imports_no_dynamo(cpp_kernel):
    """`pkd eval`, `pkd predict` and the app run the scan without gradients: the kernel is called directly (torch's
    guard around a custom op's CPU implementation imports torch._dynamo, 1.3-3 s of CPU per process), with the
    op's outputs bit for bit; a model built on the meta device (sizes only) imports no dynamo either."""
    code = """if True:
        import sys, torch
        from pkd import ssm
        from pkd.models.registry import build_student
        from pkd.ssm.cpu_kernel import pick_lanes, plain_eager_inference, preferred_lanes, scan_fwd_op
        assert ssm.build_cpu_kernel()
        with torch.device("meta"):
            build_student("mamba", image_shape=(1, 28, 28), num_classes=10, tokens="patch", patch=7, d_model=8)
        g = torch.Generator().manual_seed(0)
        u, dt, z = (torch.rand(2, 48, 9, generator=g) for _ in range(3))
        A, B, C = -torch.rand(48, 4, generator=g), torch.randn(2, 4, 9, generator=g), torch.randn(2, 4, 9, generator=g)
        D, bias = torch.randn(48, generator=g), torch.rand(48, generator=g)
        with torch.no_grad(), ssm.use_backend("cpp"):
            y = ssm.selective_scan(u, dt, A, B, C, D, z=z, delta_bias=bias, delta_softplus=True)
        assert "torch._dynamo" not in sys.modules, "eager inference imported torch._dynamo"
        assert plain_eager_inference(False, u) and not plain_eager_inference(True, u)
        delta = torch.nn.functional.softplus(dt + bias[None, :, None])  # what the inference path gives the kernel
        Bt, Ct = (M.transpose(-1, -2).contiguous() for M in (B, C))  # (B, L, N): the kernel's layout
        lanes = pick_lanes(48, [], preferred_lanes())
        assert torch.equal(y, scan_fwd_op(u, delta, A, Bt, Ct, D, z, None, False, False, False, lanes)[0])
        print("ok")
    """
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=child_env(OMP_NUM_THREADS="1"),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
