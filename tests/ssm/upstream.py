"""Parity with mamba_ssm: its reference (transcribed line by line), its grid of switches and its per-dtype
tolerances, for the tests that hold pkd's reference and every backend to upstream's."""

from __future__ import annotations

import dataclasses
import itertools

import torch
import torch.nn.functional as F

from tests.ssm.scan_inputs import NAMES

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
