"""The selective scan (Mamba-1 S6) with mamba_ssm.selective_scan_fn semantics.

selective_scan_ref is the spec (a plain sequential loop), for every layout of mamba_ssm's: B and C (B, N, L),
(B, G, N, L) or fixed (ED, N); real or complex A. selective_scan dispatches to the fastest backend available at run
time that computes the call exactly (a backend hands a layout it does not run to ``torch``):

- ``cuda``: mamba_ssm's ``selective_scan_fn`` (CUDA tensors, when installed and working);
- ``cpp``: our fused C++/OpenMP CPU kernel (pkd/csrc/selective_scan.cpp), used only once built and cached by
  :func:`build_cpu_kernel` (selective_scan itself never compiles anything);
- ``torch``: a pure-torch autograd Function with a hand-written backward (no build step; any device);
- ``ref``: the reference loop;
- ``export``: forward only, in plain aten ops without in-place writes, so ``torch.export`` and
  the ONNX exporter trace it (the loop over L unrolls for short sequences, else torch's ``scan`` operator).

Set ``PKD_SCAN_BACKEND`` to ``auto|cpp|torch|ref|cuda|export`` to force one, or ``with use_backend("export"):``
for one block of code (what ``pkd.export`` does). The fused kernel is also the custom operator ``pkd::scan_fwd``
(backward ``pkd::scan_bwd``) with fake implementations, so ``torch.export`` traces a model that uses it.
Letters: B batch, ED channels (expand * d_model), L sequence length, N state size.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import importlib.util
import logging
import os
import platform
import shlex
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "cpp", "torch", "ref", "cuda", "export")
BACKEND_ENV = "PKD_SCAN_BACKEND"
CACHE_ENV = "PKD_CACHE_DIR"
_KERNEL_SOURCE = Path(__file__).resolve().parent / "csrc" / "selective_scan.cpp"
_KERNEL_FLAGS = ["-O3", "-fopenmp", "-march=native", "-ffp-contract=fast"]
EXPORT_UNROLL_MAX = 128  # the export scan unrolls sequences up to this length, longer ones use torch's scan op
_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("pkd_scan_backend", default=None)


@dataclass(frozen=True)
class ScanLayout:
    """How B and C are given: ``b_groups`` / ``c_groups`` is 0 for a fixed (ED, N) operand, 1 for (B, N, L)
    (Mamba-1) and G for (B, G, N, L); ``complex`` when A is complex (then L doubles in a varying B/C)."""

    complex: bool
    b_groups: int
    c_groups: int


def _operand_groups(name: str, M: torch.Tensor, batch: int, dim: int, nst: int, length: int, complex_a: bool) -> int:
    """Checks B or C against the layouts upstream supports; returns 0 (fixed), 1 ((B, N, L)) or G ((B, G, N, L))."""
    steps = 2 * length if complex_a else length
    shape = tuple(M.shape)
    if M.dim() == 2 and shape == (dim, nst):
        if M.is_complex() and not complex_a:
            raise ValueError(f"selective_scan: {name} is complex but A is real; pass a real {name} or a complex A")
        return 0
    ok = (M.dim() == 3 and shape == (batch, nst, steps)) or (
        M.dim() == 4 and shape[0] == batch and shape[2:] == (nst, steps) and shape[1] > 0 and dim % shape[1] == 0)
    if not ok:
        pairs = " (real/imag pairs interleaved, complex A)" if complex_a else ""
        raise ValueError(f"selective_scan: {name} must have shape {(batch, nst, steps)}{pairs}, (batch, G, N, {steps}) "
                         f"with G dividing dim={dim}, or fixed {(dim, nst)}; got {shape}")
    if M.is_complex():
        raise ValueError(f"selective_scan: an input-dependent {name} must be real (with complex A its last axis holds "
                         f"interleaved real/imag pairs, 2L = {steps}); got {M.dtype}")
    return 1 if M.dim() == 3 else shape[1]


def _check_shapes(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
) -> ScanLayout:
    """Raises ValueError naming the first argument that breaks the (B, ED, L) / (ED, N) contract; else the layout."""
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be (batch, dim, L), got shape {tuple(u.shape)}")
    batch, dim, length = u.shape
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"selective_scan: A must be (dim={dim}, N), got shape {tuple(A.shape)}")
    nst = A.shape[1]
    expected = {
        "delta": (delta, (batch, dim, length)),
        "D": (D, (dim,)),
        "z": (z, (batch, dim, length)),
        "delta_bias": (delta_bias, (dim,)),
    }
    for name, (tensor, shape) in expected.items():
        if tensor is not None and tuple(tensor.shape) != shape:
            raise ValueError(f"selective_scan: {name} must have shape {shape}, got {tuple(tensor.shape)}")
    for name, tensor in (("u", u), *((k, t) for k, (t, _) in expected.items())):
        if tensor is not None and tensor.is_complex():
            raise ValueError(f"selective_scan: {name} must be real (only A, and a fixed B or C, may be complex)")
    complex_a = A.is_complex()
    return ScanLayout(complex_a, _operand_groups("B", B, batch, dim, nst, length, complex_a),
                      _operand_groups("C", C, batch, dim, nst, length, complex_a))


def _compute_dtype(t: torch.Tensor | None, complex_a: bool) -> torch.Tensor | None:
    """float32, or complex64 for a complex tensor (A, a fixed B/C) or a fixed operand of a complex-A scan."""
    if t is None:
        return None
    return t.to(torch.complex64) if t.is_complex() or (complex_a and t.dim() == 2) else t.float()


def _ref_operand(M: torch.Tensor, dim: int, complex_a: bool) -> Callable[[int], torch.Tensor]:
    """B or C for the loop: step t -> its values broadcastable to (B, ED, N): fixed (1, ED, N), (B, 1, N) or
    (B, ED, N) (grouped: channel d reads group d // (ED/G))."""
    M = _compute_dtype(M, complex_a)
    if M.dim() == 2:
        return lambda t: M[None]  # (1, ED, N) at every step
    if complex_a:  # (..., N, 2L) real -> (..., N, L) complex: (re, im) pairs as upstream's view_as_complex
        M = torch.view_as_complex(M.contiguous().unflatten(-1, (-1, 2)))
    if M.dim() == 3:
        return lambda t: M[:, None, :, t]  # (B, 1, N)
    M = M.repeat_interleave(dim // M.shape[1], dim=1)  # (B, G, N, L) -> (B, ED, N, L)
    return lambda t: M[..., t]  # (B, ED, N)


def selective_scan_ref(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
):
    """Reference scan: x_t = exp(delta_t*A) x_{t-1} + delta_t*B_t*u_t, y_t = <x_t, C_t> (+ D u)(* silu z).

    Computed in float32 (complex64 for complex A, where y_t = 2 Re<x_t, C_t>), as mamba_ssm's selective_scan_ref;
    the gate silu(z) too, as mamba_ssm's CUDA kernel (its Python reference computes the gate in z's dtype).

    Args:
        u, delta: (B, ED, L). A: (ED, N), real or complex.
        B, C: (B, N, L) input-dependent; (B, G, N, L) shared by G groups of ED/G channels; or fixed (ED, N). With
            complex A an input-dependent one is real (B, [G,] N, 2L) holding interleaved (real, imag) pairs, and a
            fixed one may be complex. D, delta_bias: (ED,). z: (B, ED, L).
    Returns:
        y (B, ED, L) in u's dtype, and the last state (B, ED, N) (float32, or complex64) when return_last_state.
    """
    dtype_in = u.dtype
    complex_a = A.is_complex()
    u, delta, A = u.float(), delta.float(), _compute_dtype(A, complex_a)
    if delta_bias is not None:
        delta = delta + delta_bias.float()[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, length = u.shape
    B_at, C_at = _ref_operand(B, dim, complex_a), _ref_operand(C, dim, complex_a)  # t -> (B|1, ED|1, N)
    x = A.new_zeros(batch, dim, A.shape[1])  # (B, ED, N)
    ys = []
    for t in range(length):
        dA = torch.exp(delta[:, :, t, None] * A)  # (B, ED, N)
        dBu = delta[:, :, t, None] * B_at(t) * u[:, :, t, None]  # (B, ED, N)
        x = dA * x + dBu
        y = (x * C_at(t)).sum(-1)  # (B, ED)
        ys.append(2 * y.real if complex_a else y)
    y = torch.stack(ys, dim=2)  # (B, ED, L)
    if D is not None:
        y = y + u * D.float()[None, :, None]
    if z is not None:
        y = y * F.silu(z.float())
    y = y.to(dtype_in)
    return (y, x) if return_last_state else y


# ----------------------------------------------------------------------------------------------------------------
# Pure-torch backend: batched non-recurrent work, one in-place addcmul_ per step, hand-written backward.


class _Operand:
    """B or C for the torch backend, time-major against the states (L, B, ED, N).

    ``t`` is (ED, N) fixed, (L, B, N) or (L, B, G, N) (complex from the interleaved pairs when A is complex). For a
    (B, N, L) operand every method runs exactly the operations the Mamba-1-only backend ran before.
    """

    def __init__(self, M: torch.Tensor, dim: int, complex_a: bool, real_input: bool):
        self.fixed, self.groups = M.dim() == 2, M.shape[1] if M.dim() == 4 else 0
        self.complex_a, self.real_input = complex_a, real_input
        if not self.fixed and complex_a:
            M = torch.view_as_complex(M.contiguous().unflatten(-1, (-1, 2)))  # (..., N, 2L) -> (..., N, L) complex
        self.t = M if self.fixed else M.permute(M.dim() - 1, *range(M.dim() - 1))  # (ED, N) | (L, B, [G,] N)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(2, (self.groups, -1))  # (L, B, ED, ...) -> (L, B, G, H, ...)

    def mul_into(self, w: torch.Tensor, out: torch.Tensor, conj: bool = False) -> None:
        """out (L, B, ED, N) = w (L, B, ED) * M (conj(M) if conj), M broadcast to every channel of its group."""
        M = self.t.conj() if conj else self.t
        if self.fixed:
            torch.mul(w.unsqueeze(-1), M, out=out)
        elif self.groups:
            torch.mul(self._split(w).unsqueeze(-1), M.unsqueeze(3), out=self._split(out))
        else:
            torch.mul(w.unsqueeze(-1), M.unsqueeze(2), out=out)

    def contract(self, states: torch.Tensor, conj: bool = False) -> torch.Tensor:
        """sum_n states (L, B, ED, N) * M (conj(M) if conj) -> (L, B, ED)."""
        M = self.t.conj() if conj else self.t
        if self.fixed:
            return (states * M).sum(-1)
        if self.groups:
            return torch.matmul(self._split(states), M.unsqueeze(-1)).squeeze(-1).flatten(2)
        return torch.matmul(states, M.unsqueeze(-1)).squeeze(-1)

    def grad(self, states: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Gradient of M, in M's own layout, given dLoss/dM broadcast = states (L, B, ED, N) * w (L, B, ED)."""
        w = w.to(states.dtype)
        if self.fixed:
            g = torch.einsum("lbdn,lbd->dn", states, w)  # (ED, N)
            return g.real if self.complex_a and self.real_input else g
        if self.groups:
            g = torch.matmul(self._split(states).transpose(-1, -2), self._split(w).unsqueeze(-1)).squeeze(-1)
            g = g.permute(1, 2, 3, 0)  # (L, B, G, N) -> (B, G, N, L)
        else:
            g = torch.matmul(states.transpose(-1, -2), w.unsqueeze(-1)).squeeze(-1).permute(1, 2, 0)  # (B, N, L)
        return torch.view_as_real(g).flatten(-2) if self.complex_a else g  # complex: (..., N, 2L) pairs


def _torch_inputs(*tensors: torch.Tensor | None, complex_a: bool) -> list[torch.Tensor | None]:
    """u, delta, A, B, C, D, z, delta_bias in float32 (A and a fixed B/C in complex64 when A is complex)."""
    return [_compute_dtype(t, complex_a) for t in tensors]


def _torch_discretize(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    Bop: _Operand,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Time-major discretisation shared by forward and backward.

    Returns:
        raw delta + bias (B, ED, L), dt (L, B, ED), dA = exp(dt A) (L, B, ED, N) and dBu = dt u B (L, B, ED, N).
    """
    raw = delta if delta_bias is None else delta + delta_bias[None, :, None]  # (B, ED, L)
    dt = F.softplus(raw) if delta_softplus else raw  # (B, ED, L)
    dt_l = dt.permute(2, 0, 1)  # (L, B, ED)
    length, batch, dim = dt_l.shape
    nst = A.shape[1]
    dA = torch.empty(length, batch, dim, nst, dtype=A.dtype, device=u.device)  # (L, B, ED, N)
    torch.mul(dt_l.unsqueeze(-1), A, out=dA)
    dA.exp_()
    dBu = torch.empty_like(dA)  # (L, B, ED, N)
    Bop.mul_into(dt_l * u.permute(2, 0, 1), dBu)
    return raw, dt_l, dA, dBu


def _torch_scan_forward(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    Bop: _Operand,
    Cop: _Operand,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """float32 forward of the torch backend.

    Returns:
        out (B, ED, L), last state (B, ED, N), all states xs (L, B, ED, N) and y before skip/gate (B, ED, L).
    """
    _, _, dA, xs = _torch_discretize(u, delta, A, Bop, delta_bias, delta_softplus)
    for t in range(1, xs.shape[0]):
        xs[t].addcmul_(dA[t], xs[t - 1])  # (B, ED, N)
    del dA
    y = Cop.contract(xs)  # (L, B, ED)
    if A.is_complex():
        y = 2 * y.real  # y_t = 2 Re <x_t, C_t>, as mamba_ssm
    y = y.permute(1, 2, 0)  # (B, ED, L)
    out = y if D is None else y + u * D[None, :, None]  # (B, ED, L)
    if z is not None:
        out = out * F.silu(z)
    return out, xs[-1].clone(), xs, y


def _torch_operands(B: torch.Tensor, C: torch.Tensor, dim: int, complex_a: bool,
                    real_bc: tuple[bool, bool]) -> tuple[_Operand, _Operand]:
    return _Operand(B, dim, complex_a, real_bc[0]), _Operand(C, dim, complex_a, real_bc[1])


class _TorchScan(torch.autograd.Function):
    """Pure-torch selective scan with a hand-written backward (states are kept, decays are recomputed).

    With complex A the adjoint follows torch's convention for complex gradients (grad = dL/dRe + i dL/dIm):
    every product's gradient takes the conjugate of the other factor.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):  # type: ignore[override]
        ctx.complex_a, ctx.real_bc = A.is_complex(), (not B.is_complex(), not C.is_complex())
        inputs = _torch_inputs(u, delta, A, B, C, D, z, delta_bias, complex_a=ctx.complex_a)
        ops = _torch_operands(inputs[3], inputs[4], u.shape[1], ctx.complex_a, ctx.real_bc)
        out, last, xs, y = _torch_scan_forward(*inputs[:3], *ops, *inputs[5:], delta_softplus)
        ctx.delta_softplus = delta_softplus
        ctx.dtypes = [t.dtype if t is not None else None for t in (u, delta, A, B, C, D, z, delta_bias)]
        ctx.has = [t is not None for t in inputs[5:]]
        ctx.save_for_backward(*[t for t in inputs if t is not None], xs, y)
        return out.to(u.dtype), last

    @staticmethod
    def backward(ctx, gout, glast):  # type: ignore[override]
        saved = list(ctx.saved_tensors)
        u, delta, A, B, C = saved[:5]
        rest = iter(saved[5:-2])
        D, z, delta_bias = [next(rest) if has else None for has in ctx.has]
        xs, y = saved[-2:]
        Bop, Cop = _torch_operands(B, C, u.shape[1], ctx.complex_a, ctx.real_bc)
        go = gout.float()  # (B, ED, L)
        gz = None
        if z is not None:
            o = y if D is None else y + u * D[None, :, None]  # (B, ED, L)
            sz = torch.sigmoid(z)
            gz = go * o * sz * (1 + z * (1 - sz))  # (B, ED, L)
            go = go * (z * sz)
        gD = None if D is None else (go * u).sum((0, 2))  # (ED,)
        raw, dt_l, dA, G = _torch_discretize(u, delta, A, Bop, delta_bias, ctx.delta_softplus)
        go_l = go.permute(2, 0, 1)  # (L, B, ED)
        gy_l = 2 * go_l if ctx.complex_a else go_l  # dLoss/d<x_t, C_t>
        gC = Cop.grad(xs.conj(), gy_l)  # C's layout
        Cop.mul_into(gy_l, G, conj=True)  # (L, B, ED, N)
        if glast is not None:
            G[-1].add_(glast.to(G.dtype))
        if ctx.complex_a:
            dA.conj_physical_()
        for t in range(G.shape[0] - 2, -1, -1):
            G[t].addcmul_(dA[t + 1], G[t + 1])  # (B, ED, N): dLoss/dx_t
        u_l = u.permute(2, 0, 1)  # (L, B, ED)
        gdbu = Bop.contract(G, conj=True)  # (L, B, ED): sum_n G conj(B)
        gdbu = gdbu.real if ctx.complex_a else gdbu
        gB = Bop.grad(G, dt_l * u_l)  # B's layout
        dA[1:].mul_(xs[:-1].conj())
        dA[0].zero_()
        P = dA.mul_(G)  # (L, B, ED, N): dLoss/d(dt A)
        del G
        gA = torch.einsum("lbdn,lbd->dn", P, dt_l.to(P.dtype))  # (ED, N)
        gdt = P.mul_(A.conj()).sum(-1)  # (L, B, ED)
        gdt = (gdt.real if ctx.complex_a else gdt) + gdbu * u_l
        gu = (gdbu * dt_l).permute(1, 2, 0)  # (B, ED, L)
        if D is not None:
            gu = gu + go * D[None, :, None]
        gdelta = gdt.permute(1, 2, 0)  # (B, ED, L)
        if ctx.delta_softplus:
            gdelta = gdelta * torch.where(raw > 20, torch.ones_like(raw), torch.sigmoid(raw))
        gbias = None if delta_bias is None else gdelta.sum((0, 2))  # (ED,)
        grads = [gu, gdelta, gA, gB, gC, gD, gz, gbias]
        dtypes = ctx.dtypes
        return (*[g if g is None else g.to(dt) for g, dt in zip(grads, dtypes)], None)


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state):
    if _needs_grad(u, delta, A, B, C, D, z, delta_bias):
        out, last = _TorchScan.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    else:
        complex_a = A.is_complex()
        inputs = _torch_inputs(u, delta, A, B, C, D, z, delta_bias, complex_a=complex_a)
        ops = _torch_operands(inputs[3], inputs[4], u.shape[1], complex_a, (not B.is_complex(), not C.is_complex()))
        out, last, _, _ = _torch_scan_forward(*inputs[:3], *ops, *inputs[5:], delta_softplus)
        out = out.to(u.dtype)
    return (out, last) if return_last_state else out


# ----------------------------------------------------------------------------------------------------------------
# Export backend: the recurrence in out-of-place aten ops, discretised one step at a time (O(B*ED*N) memory).


def _export_step(x, dt_t, dtu_t, A, B_t, C_t):
    """One step from x (..., B, ED, N) (None before the first), dt_t and dt_t*u_t (..., B, ED, 1), A (ED, N),
    B_t (..., B, 1, N), C_t (..., B, N, 1): returns the new x and y_t (..., B, ED, 1)."""
    dBu = dtu_t * B_t  # (..., B, ED, N)
    x = dBu if x is None else torch.exp(dt_t * A) * x + dBu  # (..., B, ED, N)
    return x, torch.matmul(x, C_t)  # (..., B, ED, 1)


def _export_recurrence(dt, dtu, A, B, C):
    """x_t = exp(dt_t A) x_(t-1) + dt_t u_t B_t and y_t = <x_t, C_t> for dt, dtu (B, ED, L), B, C (B, N, L).

    Up to EXPORT_UNROLL_MAX steps the loop is unrolled when traced (six ops a step); beyond it, torch's ``scan``
    higher-order op keeps the graph one step long (ONNX ``Scan``).

    Returns:
        y (B, ED, L) and the last state (B, ED, N).
    """
    steps = (dt.permute(2, 0, 1)[..., None], dtu.permute(2, 0, 1)[..., None],  # (L, B, ED, 1) each
             B.permute(2, 0, 1)[:, :, None, :], C.permute(2, 0, 1)[..., None])  # (L, B, 1, N), (L, B, N, 1)
    if dt.shape[2] <= EXPORT_UNROLL_MAX:  # split, not unbind: one Split node, no Squeeze per step and operand
        x, ys = None, []
        for dt_t, dtu_t, B_t, C_t in zip(*(s.split(1, dim=0) for s in steps)):  # (1, B, ...) each
            x, y_t = _export_step(x, dt_t, dtu_t, A, B_t, C_t)
            ys.append(y_t)
        return torch.cat(ys, dim=0)[..., 0].permute(1, 2, 0), x[0]  # (L, B, ED, 1) -> (B, ED, L); (B, ED, N)
    from torch._higher_order_ops.scan import scan

    def combine(x, xs):
        return _export_step(x, xs[0], xs[1], A, xs[2], xs[3])

    x0 = dt.new_zeros(dt.shape[0], dt.shape[1], A.shape[1])  # (B, ED, N)
    last, ys = scan(combine, x0, steps, dim=0)  # (B, ED, N), (L, B, ED, 1)
    return ys[..., 0].permute(1, 2, 0), last  # (B, ED, L)


def selective_scan_export(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
):
    """:func:`selective_scan_ref` for exporters: the same maths, forward only, no in-place writes, no kernel.

    Mamba-1's layout (real A, B and C (B, N, L)) runs the step-wise recurrence below; any other layout runs the
    reference loop itself (also plain out-of-place ops).

    Args:
        u, delta: (B, ED, L). A: (ED, N). B, C: (B, N, L). D, delta_bias: (ED,). z: (B, ED, L).
    Returns:
        y (B, ED, L), and the last state (B, ED, N) when return_last_state.
    """
    if A.is_complex() or B.dim() != 3 or C.dim() != 3:
        return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    dtype_in = u.dtype
    u, delta, A, B, C = u.float(), delta.float(), A.float(), B.float(), C.float()
    dt = delta if delta_bias is None else delta + delta_bias.float()[None, :, None]  # (B, ED, L)
    if delta_softplus:
        dt = F.softplus(dt)
    y, last = _export_recurrence(dt, dt * u, A, B, C)  # (B, ED, L), (B, ED, N)
    if D is not None:
        y = y + u * D.float()[None, :, None]
    if z is not None:
        y = y * F.silu(z.float())
    y = y.to(dtype_in)
    return (y, last) if return_last_state else y


# ----------------------------------------------------------------------------------------------------------------
# Fused C++ CPU kernel: build once (build_cpu_kernel), load the cached library instantly afterwards.

_kernel_lock = threading.Lock()
_kernel: Any = None
_kernel_error: str | None = None


def _cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "pkd").expanduser()


def _cpu_signature() -> str:
    """The CPU model and flags: the kernel is compiled with -march=native, so a cached build is per CPU type."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    keep = [ln for ln in lines if ln.startswith(("model name", "flags"))][:2]
    return "\n".join(keep) or platform.machine()


@functools.lru_cache(maxsize=1)
def _kernel_key() -> str:
    """Hash of the kernel source, torch and Python versions, compiler flags and CPU (computed once per process)."""
    digest = hashlib.sha256()
    for part in (_KERNEL_SOURCE.read_bytes(), torch.__version__.encode(), sys.version.encode(),
                 " ".join(_KERNEL_FLAGS).encode(), _cpu_signature().encode()):
        digest.update(part)
    return digest.hexdigest()[:16]


def kernel_build_dir() -> tuple[str, Path]:
    """Module name and build directory of the fused kernel, keyed by source hash, torch/Python version and CPU.

    Returns:
        (module name, directory under ``$PKD_CACHE_DIR`` (default ``~/.cache/pkd``)).
    """
    key = _kernel_key()
    return f"pkd_scan_{key}", _cache_dir() / "scan_kernel" / key


def _import_built(name: str, so_path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, so_path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {so_path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load_cached_kernel() -> Any:
    """Returns the kernel module if loaded already or if a cached build exists (never compiles), else None."""
    global _kernel
    if _kernel is not None:
        return _kernel
    with _kernel_lock:
        if _kernel is not None:
            return _kernel
        name, build_dir = kernel_build_dir()
        so_path = build_dir / f"{name}.so"
        if not so_path.is_file():
            return None
        try:
            _kernel = _import_built(name, so_path)
        except (ImportError, OSError) as exc:  # a stale or partial file: ignored, a rebuild will replace it
            logger.warning("cannot load the cached scan kernel %s (%s); using the torch scan", so_path, exc)
            return None
        return _kernel


def build_cpu_kernel(verbose: bool = True) -> bool:
    """Builds (about a minute, once) or loads the cached fused CPU scan kernel; blocking and thread-safe.

    Args:
        verbose: log progress at INFO level (the compiler output itself stays quiet).
    Returns:
        True when the kernel is loaded; False (with the reason logged) when no compiler/ninja is available or the
        build failed, in which case selective_scan keeps using the pure-torch backend.
    """
    global _kernel, _kernel_error
    if _load_cached_kernel() is not None:
        return True
    with _kernel_lock:
        if _kernel is not None:
            return True
        compiler = (shlex.split(os.environ.get("CXX", "")) or ["c++"])[0]
        missing = [tool for tool in ("ninja", compiler) if shutil.which(tool) is None]
        if missing:
            _kernel_error = f"cannot build the fused CPU scan kernel: {' and '.join(missing)} not found on PATH " \
                            "(install g++ and `pip install ninja`); using the pure-torch scan"
            logger.warning(_kernel_error)
            return False
        name, build_dir = kernel_build_dir()
        build_dir.mkdir(parents=True, exist_ok=True)
        if verbose:
            logger.info("building the fused CPU scan kernel once (about a minute); cached in %s", build_dir)
        from torch.utils.cpp_extension import load

        try:
            _kernel = load(name=name, sources=[str(_KERNEL_SOURCE)], extra_cflags=_KERNEL_FLAGS,
                           extra_ldflags=["-fopenmp"], build_directory=str(build_dir), verbose=False)
        except Exception as exc:  # compiler errors come as RuntimeError/subprocess errors; keep one line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            _kernel_error = f"building the fused CPU scan kernel failed ({first}); using the pure-torch scan"
            logger.warning(_kernel_error)
            return False
        _kernel_error = None
        if verbose:
            logger.info("fused CPU scan kernel ready")
        return True


# The kernel as torch.library custom operators pkd::scan_fwd / pkd::scan_bwd: autograd through register_autograd,
# fake (shape-only) implementations so torch.export and torch.compile trace a model that uses the kernel.


def _loaded_kernel() -> Any:
    kernel = _load_cached_kernel()
    if kernel is None:
        raise RuntimeError("the fused CPU scan kernel is not built; run `python -m pkd backends --build` or set "
                           f"{BACKEND_ENV}=torch")
    return kernel


def _lanes(dim: int, *operands: torch.Tensor) -> int:
    """SIMD lanes the kernel picks (pick_lanes in selective_scan.cpp): 16 when ED and the channels per group of
    every grouped (B, G, L, N) operand are multiples of 16, else 8. It shapes the checkpoints."""
    per_group = [dim // M.shape[1] for M in operands if M.dim() == 4 and M.shape[1] > 1]
    return 16 if dim % 16 == 0 and all(h % 16 == 0 for h in per_group) else 8


def _cpp_takes(layout: ScanLayout, dim: int) -> bool:
    """Whether the fused kernel runs this layout: real A, and whole 8-lane blocks per group of a grouped B/C."""
    groups = [g for g in (layout.b_groups, layout.c_groups) if g > 1]
    return not layout.complex and all((dim // g) % 8 == 0 for g in groups)


@torch.library.custom_op("pkd::scan_fwd", mutates_args=())
def _scan_fwd_op(u: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, Bt: torch.Tensor, Ct: torch.Tensor,
                 D: Optional[torch.Tensor], z: Optional[torch.Tensor], want_last: bool, save: bool
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Kernel forward on float32 contiguous u, dt (B, ED, L), A (ED, N), Bt, Ct (B, L, N), (B, G, L, N) or fixed
    (ED, N), D (ED,), z (B, ED, L).

    Returns:
        out (B, ED, L); last state (B, ED, N) if want_last; if save, checkpoints (B, ED/W, ceil(L/16), N, W) and
        y before the gate (B, ED, L) when z is given. Outputs not asked for are empty (0,) tensors.
    """
    out, last, ckpt, ypre = _loaded_kernel().fwd(u, dt, A, Bt, Ct, D, z, want_last, save)
    return out, last, ckpt, ypre


@_scan_fwd_op.register_fake
def _scan_fwd_fake(u, dt, A, Bt, Ct, D, z, want_last, save):
    batch, dim, length = u.shape
    nst, lanes = A.shape[1], _lanes(dim, Bt, Ct)
    empty = u.new_empty(0)
    last = u.new_empty(batch, dim, nst) if want_last else empty
    ckpt = u.new_empty(batch, (dim + lanes - 1) // lanes, (length + 15) // 16, nst, lanes) if save else u.new_empty(0)
    ypre = u.new_empty(batch, dim, length) if save and z is not None else u.new_empty(0)
    return u.new_empty(batch, dim, length), last, ckpt, ypre


@torch.library.custom_op("pkd::scan_bwd", mutates_args=())
def _scan_bwd_op(gout: torch.Tensor, glast: Optional[torch.Tensor], ckpt: torch.Tensor, ypre: torch.Tensor,
                 u: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, Bt: torch.Tensor, Ct: torch.Tensor,
                 D: Optional[torch.Tensor], z: Optional[torch.Tensor]) -> list[torch.Tensor]:
    """Kernel backward. Returns gu, gdt (B, ED, L), gA per batch row (B, ED, N), gBt, gCt shaped as Bt, Ct (a fixed
    one per batch row, (B, ED, N)), gD per batch row (B, ED) or empty, gz (B, ED, L) or empty."""
    return list(_loaded_kernel().bwd(gout, glast, ckpt, ypre, u, dt, A, Bt, Ct, D, z))


@_scan_bwd_op.register_fake
def _scan_bwd_fake(gout, glast, ckpt, ypre, u, dt, A, Bt, Ct, D, z):
    batch, dim, length = u.shape
    nst = A.shape[1]
    gBt, gCt = [u.new_empty(batch, dim, nst) if M.dim() == 2 else M.new_empty(M.shape) for M in (Bt, Ct)]
    return [u.new_empty(batch, dim, length), u.new_empty(batch, dim, length), u.new_empty(batch, dim, nst), gBt, gCt,
            u.new_empty(batch, dim) if D is not None else u.new_empty(0),
            u.new_empty(batch, dim, length) if z is not None else u.new_empty(0)]


def _scan_setup_context(ctx, inputs, output) -> None:
    u, dt, A, Bt, Ct, D, z, want_last, save = inputs
    _, _, ckpt, ypre = output
    ctx.want_last, ctx.save = want_last, save
    ctx.save_for_backward(ckpt, ypre, u, dt, A, Bt, Ct, D, z)


def _scan_backward(ctx, gout, glast, _gckpt, _gypre):
    if not ctx.save:
        raise RuntimeError("pkd::scan_fwd was called with save=False, so it cannot be differentiated")
    ckpt, ypre, u, dt, A, Bt, Ct, D, z = ctx.saved_tensors
    glast = glast.float().contiguous() if ctx.want_last and glast is not None else None
    gu, gdt, gA, gBt, gCt, gD, gz = _scan_bwd_op(gout.float().contiguous(), glast, ckpt, ypre, u, dt, A, Bt, Ct,
                                                 D, z)
    gBt, gCt = [g.sum(0) if M.dim() == 2 else g for g, M in ((gBt, Bt), (gCt, Ct))]  # a fixed one: (ED, N)
    return (gu, gdt, gA.sum(0), gBt, gCt, gD.sum(0) if D is not None else None,  # (ED, N), (ED,)
            gz if z is not None else None, None, None)


torch.library.register_autograd("pkd::scan_fwd", _scan_backward, setup_context=_scan_setup_context)


def _cpp_args(u, dt, A, B, C, D, z) -> list[torch.Tensor | None]:
    """float32 contiguous kernel inputs; B and C go time-major, (B, N, L) -> (B, L, N) (a no-op for Mamba's x_proj
    layout) or (B, G, N, L) -> (B, G, L, N); a fixed (ED, N) one stays as it is."""

    def prep(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.float().contiguous()

    Bt = B.float().transpose(-1, -2).contiguous() if B.dim() > 2 else prep(B)  # (B, [G,] L, N) | (ED, N)
    Ct = C.float().transpose(-1, -2).contiguous() if C.dim() > 2 else prep(C)  # (B, [G,] L, N) | (ED, N)
    return [prep(u), prep(dt), prep(A), Bt, Ct, prep(D), prep(z)]


def _scan_cpp(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state):
    dt = delta.float()  # (B, ED, L); bias and softplus run in torch so autograd gives their exact gradients
    if delta_bias is not None:
        dt = dt + delta_bias.float()[None, :, None]
    if delta_softplus:
        dt = F.softplus(dt)
    save = _needs_grad(u, delta, A, B, C, D, z, delta_bias)  # keep checkpoints only for a backward pass
    out, last, _, _ = _scan_fwd_op(*_cpp_args(u, dt, A, B, C, D, z), return_last_state or save, save)
    out = out.to(u.dtype)
    return (out, last) if return_last_state else out


# ----------------------------------------------------------------------------------------------------------------
# mamba_ssm's CUDA kernel, imported lazily and smoke-tested once.

_cuda_lock = threading.Lock()
_cuda_state: dict[str, Any] = {}
_CUDA_HINT = ("install it with `MAMBA_KEEP_CUDA_BUILD=TRUE pip install mamba-ssm --no-build-isolation` or set "
              f"{BACKEND_ENV}=torch")


def _cuda_scan_fn() -> tuple[Callable | None, str]:
    """Returns (mamba_ssm selective_scan_fn or None, reason it is unusable); checked once per process."""
    with _cuda_lock:
        if "fn" in _cuda_state:
            return _cuda_state["fn"], _cuda_state["reason"]
        fn, reason = None, ""
        if not torch.cuda.is_available():
            reason = "no CUDA device"
        else:
            try:
                from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

                x = torch.ones(1, 1, 2, device="cuda")
                selective_scan_fn(x, x, -torch.ones(1, 1, device="cuda"), x, x)  # smoke test: a broken build fails
                fn = selective_scan_fn
            except Exception as exc:  # ImportError, missing triton, or a CUDA extension built for another arch
                detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                reason = f"mamba_ssm selective_scan_fn unusable ({type(exc).__name__}: {detail})"
                logger.warning("%s; CUDA scans use the pure-torch backend; %s", reason, _CUDA_HINT)
        _cuda_state.update(fn=fn, reason=reason)
        return fn, reason


def _cuda_takes(layout: ScanLayout, args: tuple) -> bool:
    """Whether mamba_ssm's kernel computes exactly selective_scan_ref on these inputs: its dtype rules (delta, z and
    an input-dependent B/C in u's dtype, one of fp32/fp16/bf16), N <= 256, one group count shared by B and C (a
    fixed one aside), and no gradient wanted through the last state (selective_scan_fn drops it)."""
    u, delta, A, B, C, D, z, delta_bias, _, return_last_state = args
    if u.dtype not in (torch.float32, torch.float16, torch.bfloat16) or A.shape[1] > 256:
        return False
    if return_last_state and _needs_grad(u, delta, A, B, C, D, z, delta_bias):
        return False
    same = [delta, z, *(M for M in (B, C) if M.dim() > 2)]
    if any(t is not None and t.dtype != u.dtype for t in same):
        return False
    return layout.c_groups in (0, max(layout.b_groups, 1))


def _scan_cuda(fn: Callable, u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state):
    """Calls selective_scan_fn with the weight dtypes it requires: A, a fixed B/C in float32 (complex64 for complex
    A), D and delta_bias in float32 (no-ops for pkd's models; the casts are differentiable)."""
    A = _compute_dtype(A, A.is_complex())
    B, C = [M.to(A.dtype) if M.dim() == 2 else M for M in (B, C)]
    D = None if D is None else D.float()
    delta_bias = None if delta_bias is None else delta_bias.float()
    return fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)


# ----------------------------------------------------------------------------------------------------------------
# Dispatch.


def _requested_backend() -> str:
    """The backend forced by use_backend() in this thread, else by $PKD_SCAN_BACKEND, else "auto"."""
    forced = _override.get()
    if forced is not None:
        return forced
    value = os.environ.get(BACKEND_ENV, "auto").strip().lower() or "auto"
    if value not in BACKENDS:
        raise ValueError(f"{BACKEND_ENV}={value!r} is not a scan backend; choose one of: {', '.join(BACKENDS)}")
    return value


@contextlib.contextmanager
def use_backend(name: str):
    """Force the scan backend `name` (one of BACKENDS) inside a with-block, in this thread only (it wins over
    $PKD_SCAN_BACKEND): ``with use_backend("export"): torch.export.export(model, ...)``."""
    if name not in BACKENDS:
        raise ValueError(f"{name!r} is not a scan backend; choose one of: {', '.join(BACKENDS)}")
    token = _override.set(name)
    try:
        yield
    finally:
        _override.reset(token)


def scan_backend(device: str | torch.device = "cpu") -> str:
    """Names the backend selective_scan would use now for tensors on ``device`` (never builds anything).

    Args:
        device: device of the inputs, e.g. "cpu" or "cuda:0".
    Returns:
        one of "cpp", "torch", "ref", "cuda", "export".
    """
    requested = _requested_backend()
    is_cuda = torch.device(device).type == "cuda"
    if requested != "auto":
        return requested
    if is_cuda:
        return "cuda" if _cuda_scan_fn()[0] is not None else "torch"
    return "cpp" if _load_cached_kernel() is not None else "torch"


def available_backends() -> dict[str, bool | str]:
    """Which backends can run here, for display.

    Returns:
        {"ref", "torch", "cpp", "cuda", "export"} -> True when usable, else a one-line reason string (test with
        ``is True``).
    """
    cpp: bool | str = True
    if _load_cached_kernel() is None:
        cpp = _kernel_error or "not built yet: run pkd.ssm.build_cpu_kernel() (training builds it automatically)"
    fn, reason = _cuda_scan_fn()
    return {"ref": True, "torch": True, "cpp": cpp, "cuda": True if fn is not None else reason, "export": True}


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Selective scan with :func:`selective_scan_ref` semantics on the fastest backend that runs these inputs.

    Every layout of ``mamba_ssm.selective_scan_fn`` is accepted; a backend that does not run a layout (the fused
    kernel: complex A, groups of fewer than 8 channels; mamba_ssm: see :func:`_cuda_takes`) hands it to the torch
    backend, which runs them all.

    Args:
        u, delta: (B, ED, L). A: (ED, N), real or complex.
        B, C: (B, N, L), (B, G, N, L) (G groups of ED/G channels) or fixed (ED, N); with complex A an
            input-dependent one is real (B, [G,] N, 2L) of interleaved (real, imag) pairs.
        D, delta_bias: (ED,). z: (B, ED, L).
        delta_softplus: apply softplus to delta + delta_bias. return_last_state: also return the last state.
    Returns:
        y (B, ED, L) in u's dtype, and the last state (B, ED, N) (float32, complex64 for complex A) when
        return_last_state.
    """
    layout = _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    backend = _route(scan_backend(u.device), layout, args)
    if backend == "ref":
        return selective_scan_ref(*args)
    if backend == "cuda":
        return _scan_cuda(_cuda_scan_fn()[0], *args)
    if backend == "cpp":
        return _scan_cpp(*args)
    if backend == "export":
        return selective_scan_export(*args)
    return _scan_torch(*args)


def _route(backend: str, layout: ScanLayout, args: tuple) -> str:
    """The backend that runs this call: ``backend`` (as scan_backend names it) when it computes this layout exactly,
    else "torch". A forced cuda or cpp backend that cannot run at all raises RuntimeError saying why."""
    u = args[0]
    if backend == "cuda":
        fn, reason = _cuda_scan_fn()
        if fn is None or u.device.type != "cuda":
            why = reason if fn is None else f"inputs are on {u.device}, not CUDA"
            raise RuntimeError(f"{BACKEND_ENV}=cuda but {why}; {_CUDA_HINT}")
        takes = _cuda_takes(layout, args)
    elif backend == "cpp":
        built = _load_cached_kernel() is not None
        if not built or u.device.type != "cpu":
            why = f"inputs are on {u.device}" if built else "the kernel is not built"
            raise RuntimeError(f"{BACKEND_ENV}=cpp but {why}; run pkd.ssm.build_cpu_kernel() on a CPU run, or "
                               f"set {BACKEND_ENV}=torch")
        takes = _cpp_takes(layout, u.shape[1])
    else:
        return backend
    if not takes:
        logger.debug("the %s scan backend does not run %s; using the torch backend", backend, layout)
    return backend if takes else "torch"
