"""What every scan backend shares: the argument contract (shapes and B/C layouts, checked once by
:func:`check_shapes`), the compute dtype, whether a call needs gradients, and the backend names.

These sit below every backend module (ref, torch_scan, export_scan, cpu_kernel, cuda) and the dispatcher, so none of
them imports another for its checks. Letters: B batch, ED channels (expand * d_model), L sequence length, N state size,
G groups of B/C.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

BACKENDS = ("auto", "cpp", "torch", "ref", "cuda", "export")
BACKEND_ENV = "PKD_SCAN_BACKEND"


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


def check_shapes(
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


def compute_dtype(t: torch.Tensor | None, complex_a: bool) -> torch.Tensor | None:
    """float32, or complex64 for a complex tensor (A, a fixed B/C) or a fixed operand of a complex-A scan."""
    if t is None:
        return None
    return t.to(torch.complex64) if t.is_complex() or (complex_a and t.dim() == 2) else t.float()


def needs_grad(*tensors: torch.Tensor | None) -> bool:
    """Whether autograd wants gradients of any of these tensors (grad mode on and one requires grad)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
