"""The selective scan (Mamba-1 S6) with mamba_ssm.selective_scan_fn semantics.

selective_scan_ref is the spec (a plain sequential loop). selective_scan dispatches to the fastest
correct backend available at run time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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

    Args:
        u, delta: (B, ED, L). A: (ED, N). B, C: (B, N, L). D, delta_bias: (ED,). z: (B, ED, L).
    Returns:
        y (B, ED, L), and the last state (B, ED, N) when return_last_state.
    """
    dtype_in = u.dtype
    u, delta, A, B, C = u.float(), delta.float(), A.float(), B.float(), C.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, length = u.shape
    x = u.new_zeros(batch, dim, A.shape[1])  # (B, ED, N)
    ys = []
    for t in range(length):
        dA = torch.exp(delta[:, :, t, None] * A)  # (B, ED, N)
        dBu = delta[:, :, t, None] * B[:, None, :, t] * u[:, :, t, None]  # (B, ED, N)
        x = dA * x + dBu
        ys.append(torch.einsum("bdn,bn->bd", x, C[:, :, t]))  # (B, ED)
    y = torch.stack(ys, dim=2)  # (B, ED, L)
    if D is not None:
        y = y + u * D.float()[None, :, None]
    if z is not None:
        y = y * F.silu(z.float())
    y = y.to(dtype_in)
    return (y, x) if return_last_state else y


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False):
    """Dispatching scan (placeholder until the fast backends land: uses the reference)."""
    return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
