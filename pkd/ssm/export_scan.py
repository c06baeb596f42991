"""The export backend (``export``): the recurrence in out-of-place aten ops, forward only, so ``torch.export`` and
the ONNX exporter trace it: a sequence up to EXPORT_UNROLL_MAX long is unrolled one step at a time (O(B*ED*N)
memory), a longer one runs in ceil(log2 L) rounds over all of it (a parallel prefix scan, O(B*ED*L*N) memory).
``pkd.export`` selects the backend with ``use_backend("export")``. Inside ``with export_in_rounds():`` short
sequences run in rounds too (a graph of a few dozen nodes a layer instead of six a token: what the web page uses,
pkd.web.build).

Letters: B batch, ED channels (expand * d_model), L sequence length, N state size.
"""

from __future__ import annotations

import contextlib
import contextvars

import torch
import torch.nn.functional as F

from pkd.ssm.ref import selective_scan_ref

EXPORT_UNROLL_MAX = 128  # the export scan unrolls sequences up to this length, longer ones run in rounds
_in_rounds: contextvars.ContextVar[bool] = contextvars.ContextVar("pkd_export_scan_rounds", default=False)


@contextlib.contextmanager
def export_in_rounds():
    """Inside the with-block (this thread), the export scan of a sequence up to EXPORT_UNROLL_MAX long also runs in
    ceil(log2 L) rounds (:func:`_recurrence_in_rounds`) instead of one step per token. Same maths; the graph of the
    shipped MNIST run drops from 829 to 433 ONNX nodes, and the web page's first answer comes 0.1-0.8 s sooner
    on a busy 2-core machine (docs/web.md), for about three times the scan's arithmetic."""
    token = _in_rounds.set(True)
    try:
        yield
    finally:
        _in_rounds.reset(token)


def _export_step(x, dt_t, dtu_t, A, B_t, C_t):
    """One step from x (..., B, ED, N) (None before the first), dt_t and dt_t*u_t (..., B, ED, 1), A (ED, N),
    B_t (..., B, 1, N), C_t (..., B, N, 1): returns the new x and y_t (..., B, ED, 1)."""
    dBu = dtu_t * B_t  # (..., B, ED, N)
    x = dBu if x is None else torch.exp(dt_t * A) * x + dBu  # (..., B, ED, N)
    return x, torch.matmul(x, C_t)  # (..., B, ED, 1)


def _recurrence_in_rounds(dt, dtu, A, B, C):
    """The recurrence of :func:`_export_recurrence` as a parallel prefix scan (Hillis-Steele): the pairs
    (a_t, b_t) = (exp(dt_t A), dt_t u_t B_t) compose as (a, b) after (a', b') = (a a', a b' + b), so after the
    round with shift s every x_t holds the sum over the last 2s steps; ceil(log2 L) rounds cover the sequence.

    Returns:
        y (B, ED, L) and the last state (B, ED, N).
    """
    length = dt.shape[2]
    decay = torch.exp(dt[..., None] * A[:, None, :])  # (B, ED, L, N): a_t
    x = dtu[..., None] * B.transpose(1, 2)[:, None]  # (B, ED, L, N): b_t
    shift = 1
    while shift < length:
        # x_t += a_t x_(t-shift) (0 before t=0): one Pad node shifts along L (s in front, s cut off the end)
        x = x + decay * F.pad(x, (0, 0, shift, -shift))
        if 2 * shift < length:  # the decay over the last 2s steps, for the next round (1 before t=0)
            decay = decay * F.pad(decay, (0, 0, shift, -shift), value=1.0)
        shift *= 2
    return (x * C.transpose(1, 2)[:, None]).sum(dim=-1), x[:, :, -1]  # (B, ED, L), (B, ED, N)


def _export_recurrence(dt, dtu, A, B, C):
    """x_t = exp(dt_t A) x_(t-1) + dt_t u_t B_t and y_t = <x_t, C_t> for dt, dtu (B, ED, L), B, C (B, N, L).

    Up to EXPORT_UNROLL_MAX steps the loop is unrolled when traced (six ops a step); beyond it, and inside
    export_in_rounds(), it runs in rounds (:func:`_recurrence_in_rounds`). (torch's ``scan`` higher-order op, used
    here before, does not reach ONNX for a model with a dynamic batch: the exporter stops on a SymInt.)

    Returns:
        y (B, ED, L) and the last state (B, ED, N).
    """
    if dt.shape[2] > EXPORT_UNROLL_MAX or _in_rounds.get():
        return _recurrence_in_rounds(dt, dtu, A, B, C)
    steps = (dt.permute(2, 0, 1)[..., None], dtu.permute(2, 0, 1)[..., None],  # (L, B, ED, 1) each
             B.permute(2, 0, 1)[:, :, None, :], C.permute(2, 0, 1)[..., None])  # (L, B, 1, N), (L, B, N, 1)
    x, ys = None, []  # split, not unbind: one Split node, no Squeeze per step and operand
    for dt_t, dtu_t, B_t, C_t in zip(*(s.split(1, dim=0) for s in steps)):  # (1, B, ...) each
        x, y_t = _export_step(x, dt_t, dtu_t, A, B_t, C_t)
        ys.append(y_t)
    return torch.cat(ys, dim=0)[..., 0].permute(1, 2, 0), x[0]  # (L, B, ED, 1) -> (B, ED, L); (B, ED, N)


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
