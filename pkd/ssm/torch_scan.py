"""The pure-torch backend (``torch``): batched non-recurrent work, one in-place addcmul_ per step, hand-written
backward (states are kept, decays are recomputed). No build step, any device, every layout; the backend every other one
hands a layout it does not run to.

Letters: B batch, ED channels (expand * d_model), L sequence length, N state size, G groups of B/C.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pkd.ssm.layout import compute_dtype, needs_grad


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
    return [compute_dtype(t, complex_a) for t in tensors]


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


def scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state):
    """The torch backend on selective_scan's (checked) arguments: y (B, ED, L), with the last state when asked."""
    if needs_grad(u, delta, A, B, C, D, z, delta_bias):
        out, last = _TorchScan.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    else:
        complex_a = A.is_complex()
        inputs = _torch_inputs(u, delta, A, B, C, D, z, delta_bias, complex_a=complex_a)
        ops = _torch_operands(inputs[3], inputs[4], u.shape[1], complex_a, (not B.is_complex(), not C.is_complex()))
        out, last, _, _ = _torch_scan_forward(*inputs[:3], *ops, *inputs[5:], delta_softplus)
        out = out.to(u.dtype)
    return (out, last) if return_last_state else out
