"""Every selective-scan backend against the reference loop: outputs, last state and all gradients; pkd's reference and
every backend against mamba_ssm's own reference (transcribed below) over upstream's grid of layouts and switches."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os

import pytest
import torch
import torch.nn.functional as F
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


# ----------------------------------------------------------------------------------------------------------------
# Parity with mamba_ssm: its reference, its grid of switches and its per-dtype tolerances.

UPSTREAM = "state-spaces/mamba mamba_ssm/ops/selective_scan_interface.py @ e9594ce1c732d97440f0332fdc43170a2294dbfa"


def upstream_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False):
    """mamba_ssm's selective_scan_ref, line by line (UPSTREAM), with einops' rearrange/repeat spelled in plain torch.

    Shapes as upstream's docstring: u, delta r(B D L); A c(D N) or r(D N); B, C c(D N), r(B N L), r(B N 2L) or
    r(B G N L); D r(D); z r(B D L); delta_bias r(D). Returns out r(B D L) and last_state r(B D N) or c(B D N).
    """
    dtype_in = u.dtype
    u = u.float()
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias[..., None].float()
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, dstate = u.shape[0], A.shape[0], A.shape[1]
    is_variable_B = B.dim() >= 3
    is_variable_C = C.dim() >= 3
    if A.is_complex():
        if is_variable_B:
            B = torch.view_as_complex(B.float().unflatten(-1, (-1, 2)))  # "... (L two) -> ... L two"
        if is_variable_C:
            C = torch.view_as_complex(C.float().unflatten(-1, (-1, 2)))
    else:
        B = B.float()
        C = C.float()
    x = A.new_zeros((batch, dim, dstate))
    ys = []
    deltaA = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    if not is_variable_B:
        deltaB_u = torch.einsum("bdl,dn,bdl->bdln", delta, B, u)
    else:
        if B.dim() == 3:
            deltaB_u = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)
        else:
            B = _repeat_groups(B, dim)
            deltaB_u = torch.einsum("bdl,bdnl,bdl->bdln", delta, B, u)
    if is_variable_C and C.dim() == 4:
        C = _repeat_groups(C, dim)
    last_state = None
    for i in range(u.shape[2]):
        x = deltaA[:, :, i] * x + deltaB_u[:, :, i]
        if not is_variable_C:
            y = torch.einsum("bdn,dn->bd", x, C)
        else:
            if C.dim() == 3:
                y = torch.einsum("bdn,bn->bd", x, C[:, :, i])
            else:
                y = torch.einsum("bdn,bdn->bd", x, C[:, :, :, i])
        if i == u.shape[2] - 1:
            last_state = x
        if y.is_complex():
            y = y.real * 2
        ys.append(y)
    y = torch.stack(ys, dim=2)  # (batch dim L)
    out = y if D is None else y + u * D[:, None]  # rearrange(D, "d -> d 1")
    if z is not None:
        out = out * F.silu(z)
    out = out.to(dtype=dtype_in)
    return out if not return_last_state else (out, last_state)


def _repeat_groups(M, dim):
    """einops.repeat(M, "B G N L -> B (G H) N L", H=dim // G)."""
    b, g, n, length = M.shape
    return M[:, :, None].expand(b, g, dim // g, n, length).reshape(b, dim, n, length)


@dataclasses.dataclass(frozen=True)
class Case:
    """One point of upstream's grid. b_groups / c_groups: 0 = fixed (dim, N) (is_variable_B False), 1 = (B, N, L),
    G > 1 = (B, G, N, L) (varBC_groups); L doubles for a varying B/C when wtype is complex."""

    b_groups: int
    c_groups: int
    wtype: torch.dtype
    itype: torch.dtype
    has_D: bool
    has_z: bool
    has_delta_bias: bool
    delta_softplus: bool
    return_last_state: bool
    seqlen: int
    dim: int = 4
    dstate: int = 8
    batch: int = 2

    @property
    def id(self) -> str:
        kinds = {0: "fix", 1: "var"}
        bc = "-".join(kinds.get(g, f"g{g}") for g in (self.b_groups, self.c_groups))
        flags = "".join(c for c, on in zip("Dzbsl", (self.has_D, self.has_z, self.has_delta_bias,
                                                       self.delta_softplus, self.return_last_state)) if on)
        dt = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16", torch.complex64: "c64"}
        return f"{bc}-{dt[self.wtype]}-{dt[self.itype]}-{flags or 'none'}-L{self.seqlen}-d{self.dim}"


# upstream's (is_variable_B, is_variable_C, varBC_groups) with its skip rule (groups > 1 only when both vary)
UPSTREAM_BC = [(0, 0), (0, 1), (1, 0), (1, 1), (2, 2)]
UPSTREAM_SEQLENS = [1, 8, 16, 17, 32, 33, 64, 128]  # upstream's short lengths plus 1, 17, 33 (kernel chunk edges)
# Two-level orthogonal array OA(8; 2^5) over (has_D, has_z, has_delta_bias, delta_softplus, return_last_state):
# columns a, b, c, not(a^b), not(a^c) of the 2^3 factorial. Every pair of switch values appears in every
# (layout, wtype, itype) cell, and row 7 is upstream's default (all True).
SWITCHES = [(a, b, c, 1 - (a ^ b), 1 - (a ^ c)) for a, b, c in itertools.product((0, 1), repeat=3)]


def upstream_grid() -> list[Case]:
    """Upstream's grid, CI-sized: the full product of its B/C layouts (5) x wtype (float32, complex64) x itype (fp32,
    fp16, bf16), each crossed with the 8 pairwise-covering rows of the five binary switches, lengths cycling."""
    cases = []
    cells = itertools.product(UPSTREAM_BC, (torch.float32, torch.complex64),
                              (torch.float32, torch.float16, torch.bfloat16))
    for c, ((gb, gc), wtype, itype) in enumerate(cells):
        for r, flags in enumerate(SWITCHES):
            seqlen = UPSTREAM_SEQLENS[(r + c) % len(UPSTREAM_SEQLENS)]
            cases.append(Case(gb, gc, wtype, itype, *map(bool, flags), seqlen=seqlen))
    return cases


def kernel_grid() -> list[Case]:
    """Wider channels (48, N 16) for the fused kernel's lane blocks: fixed, varying and grouped B/C, mixed layouts and
    group counts (ED/G = 24, 16, 8 channels run in the kernel; 4 falls back to torch), every switch on, fp32 and
    bf16."""
    layouts = [(0, 0), (0, 1), (1, 0), (1, 1), (2, 2), (3, 3), (6, 6), (12, 12), (3, 0), (0, 6), (2, 3), (1, 4)]
    return [Case(gb, gc, torch.float32, itype, True, True, True, True, True, seqlen=37, dim=48, dstate=16, batch=3)
            for (gb, gc), itype in itertools.product(layouts, (torch.float32, torch.bfloat16))]


GRID = upstream_grid() + kernel_grid()


def upstream_inputs(case: Case, seed: int) -> dict[str, torch.Tensor | None]:
    """Inputs drawn as upstream's test_selective_scan draws them (its shapes, scales and dtypes), from a seed."""
    g = torch.Generator().manual_seed(seed)
    is_complex = case.wtype == torch.complex64
    steps = case.seqlen * 2 if is_complex else case.seqlen

    def operand(groups):
        if groups == 0:
            return torch.randn(case.dim, case.dstate, generator=g, dtype=case.wtype)
        shape = (case.batch, case.dstate, steps) if groups == 1 else (case.batch, groups, case.dstate, steps)
        return torch.randn(*shape, generator=g).to(case.itype)

    act = (case.batch, case.dim, case.seqlen)
    return {
        "u": torch.randn(*act, generator=g).to(case.itype),
        "delta": (0.5 * torch.rand(*act, generator=g)).to(case.itype),
        "A": -0.5 * torch.rand(case.dim, case.dstate, generator=g, dtype=case.wtype),
        "B": operand(case.b_groups),
        "C": operand(case.c_groups),
        "D": torch.randn(case.dim, generator=g) if case.has_D else None,
        "z": torch.randn(*act, generator=g).to(case.itype) if case.has_z else None,
        "delta_bias": 0.5 * torch.rand(case.dim, generator=g) if case.has_delta_bias else None,
    }


def upstream_tolerances(case: Case) -> dict[str, tuple[float, float]]:
    """(rtol, atol) per compared tensor, exactly as upstream's test_selective_scan sets them."""
    rtol, atol = (6e-4, 2e-3) if case.itype == torch.float32 else (3e-3, 5e-3)
    if case.itype == torch.bfloat16:
        rtol, atol = 3e-2, 5e-2
    rtolw, atolw = 1e-3, 1e-3
    if case.has_z:  # upstream: "If we have z, the errors on the weights seem higher"
        rtolw, atolw = max(rtolw, rtol), max(atolw, atol)
    return {
        "out": (rtol, atol), "last_state": (rtol, atol),
        "u": (rtol * 2, atol * 2), "delta": (rtol * 5, atol * 10), "A": (rtolw, atolw * 5),
        "B": (rtolw, atolw) if case.b_groups == 0 else (rtol, atol),
        "C": (rtolw, atolw) if case.c_groups == 0 else (rtol, atol),
        "D": (rtolw, atolw), "z": (rtolw, atolw), "delta_bias": (rtolw, atolw),
    }


def run_case(fn, case: Case, inputs: dict, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Output, last state and every input's gradient of fn, back-propagating seeded weights through both outputs."""
    leaves = {k: (v.to(device).requires_grad_() if v is not None else None) for k, v in inputs.items()}
    result = fn(*[leaves[k] for k in NAMES], delta_softplus=case.delta_softplus,
                return_last_state=case.return_last_state)
    outs = list(result) if case.return_last_state else [result]
    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(o.shape, generator=g, dtype=o.dtype).to(device) for o in outs]
    torch.autograd.backward(outs, weights)
    got = {"out": outs[0].detach().cpu()}
    if case.return_last_state:
        got["last_state"] = outs[1].detach().cpu()
    got.update({k: v.grad.cpu() for k, v in leaves.items() if v is not None})
    return got


_upstream_results: dict[Case, dict[str, torch.Tensor]] = {}


def upstream_kernel_precision(u, delta, A, B, C, D=None, z=None, delta_bias=None, **kwargs):
    """upstream_ref with the gate silu(z) in float32, as upstream's CUDA kernel (what selective_scan_fn runs) and pkd
    compute it (csrc/selective_scan/selective_scan_fwd_kernel.cuh: ``float z_val = z_vals[i]``). The same as
    upstream_ref for float32 z; for fp16/bf16 z, upstream_ref's half-precision silu alone puts its A and C gradients
    up to 2x outside upstream's tolerances (test_upstream_ref_gate_precision)."""
    return upstream_ref(u, delta, A, B, C, D, None if z is None else z.float(), delta_bias, **kwargs)


def upstream_result(case: Case) -> dict[str, torch.Tensor]:
    if case not in _upstream_results:
        inputs = upstream_inputs(case, GRID.index(case))
        _upstream_results[case] = run_case(upstream_kernel_precision, case, inputs)
    return _upstream_results[case]


def assert_upstream_close(case: Case, got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    tolerances = upstream_tolerances(case)
    for name, w in want.items():
        o = got[name]
        assert o.shape == w.shape and o.dtype == w.dtype, f"{name}: {o.shape} {o.dtype} vs {w.shape} {w.dtype}"
        o, w = (torch.view_as_real(t) if t.is_complex() else t.double() for t in (o, w))
        rtol, atol = tolerances[name]
        diff = (o.double() - w.double()).abs().max().item()
        print(f"{case.id} {name}: max abs diff {diff:.2e} (rtol {rtol}, atol {atol})")
        assert torch.allclose(o.double(), w.double(), rtol=rtol, atol=atol), f"{name}: max abs diff {diff:.2e}"


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


def _layout_args(b_shape, c_shape, *, dim=48, complex_a=False, dtype=torch.float32, return_last_state=False):
    """(u, ..., return_last_state) for _route / _cuda_takes: zeros of the given B/C shapes, batch 2, L 5, N 4."""
    A = torch.zeros(dim, 4, dtype=torch.complex64 if complex_a else torch.float32)
    x = torch.zeros(2, dim, 5, dtype=dtype)
    B, C = (torch.zeros(s, dtype=torch.complex64 if complex_a and len(s) == 2 else dtype) for s in (b_shape, c_shape))
    return (x, x, A, B, C, None, None, None, True, return_last_state)


@pytest.mark.parametrize("b_shape, c_shape, complex_a, expected", [
    ((2, 4, 5), (2, 4, 5), False, "cpp"),
    ((48, 4), (2, 3, 4, 5), False, "cpp"),      # fixed B, 16 channels per group of C
    ((2, 6, 4, 5), (2, 4, 5), False, "cpp"),    # 8 channels per group
    ((2, 12, 4, 5), (2, 4, 5), False, "torch"),  # 4 channels per group: not whole 8-lane blocks
    ((2, 4, 10), (48, 4), True, "torch"),       # complex A
])
def test_cpp_routes_what_it_cannot_run_to_torch(cpp_kernel, b_shape, c_shape, complex_a, expected):
    args = _layout_args(b_shape, c_shape, complex_a=complex_a)
    assert ssm._route("cpp", ssm._check_shapes(*args[:8]), args) == expected


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
    assert ssm._cuda_takes(ssm._check_shapes(*args[:8]), args) is takes


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


@pytest.mark.parametrize("bad, match", [
    ({"B": torch.zeros(2, 3, 8, 9)}, r"B must have shape .* G dividing dim=4"),
    ({"C": torch.zeros(2, 8, 9, dtype=torch.complex64)}, "input-dependent C must be real"),
    ({"B": torch.zeros(4, 8, dtype=torch.complex64)}, "B is complex but A is real"),
    ({"A": torch.zeros(4, 8, dtype=torch.complex64)}, r"B must have shape \(2, 8, 18\) \(real/imag pairs"),
    ({"z": torch.zeros(2, 4, 9, dtype=torch.complex64)}, "z must be real"),
])
def test_layout_errors_name_the_argument(bad, match):
    inputs = upstream_inputs(Case(1, 1, torch.float32, torch.float32, True, True, True, True, False, seqlen=9), 0)
    inputs.update(bad)
    with pytest.raises(ValueError, match=match):
        ssm.selective_scan(*[inputs[k] for k in NAMES])


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
    torch.library.opcheck(ssm._scan_fwd_op, args, test_utils=["test_faketensor", "test_autograd_registration"])


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
