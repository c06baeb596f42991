"""The reference scan, pkd's spec: a plain sequential loop over L with mamba_ssm's ``selective_scan_ref`` semantics,
for every layout of mamba_ssm's (B and C (B, N, L), (B, G, N, L) or fixed (ED, N); real or complex A).

Every other backend is tested against it; the ``ref`` backend and the export scan (for layouts its recurrence does not
cover) run it. Letters: B batch, ED channels (expand * d_model), L sequence length, N state size.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from pkd.ssm.layout import compute_dtype


def _ref_operand(M: torch.Tensor, dim: int, complex_a: bool) -> Callable[[int], torch.Tensor]:
    """B or C for the loop: step t -> its values broadcastable to (B, ED, N): fixed (1, ED, N), (B, 1, N) or
    (B, ED, N) (grouped: channel d reads group d // (ED/G))."""
    M = compute_dtype(M, complex_a)
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
    u, delta, A = u.float(), delta.float(), compute_dtype(A, complex_a)
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
