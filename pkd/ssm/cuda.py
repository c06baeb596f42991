"""The ``cuda`` backend: mamba_ssm's ``selective_scan_fn``, imported lazily and smoke-tested once per process (at
run time, never at import: mamba-ssm is optional, and a CUDA extension built for another arch only fails when called).

:func:`cuda_takes` says which calls it computes exactly; the dispatcher hands the others to the torch backend.
Letters: B batch, ED channels (expand * d_model), L sequence length, N state size, G groups of B/C.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable

import torch

from pkd.ssm.layout import BACKEND_ENV, ScanLayout, compute_dtype, needs_grad

logger = logging.getLogger("pkd.ssm")  # the package's one logger: its lines read "pkd.ssm:" as before the split


@dataclass
class CudaCheck:
    """The once-per-process check of mamba_ssm: ``done`` once made, then ``fn`` (its selective_scan_fn, or None
    when unusable) and ``reason`` (why it is unusable). One instance, :data:`CHECK`."""

    done: bool = False
    fn: Callable | None = None
    reason: str = ""


CHECK = CudaCheck()
_cuda_lock = threading.Lock()
CUDA_HINT = ("install it with `MAMBA_KEEP_CUDA_BUILD=TRUE pip install mamba-ssm --no-build-isolation` or set "
             f"{BACKEND_ENV}=torch")


def cuda_scan_fn() -> tuple[Callable | None, str]:
    """Returns (mamba_ssm selective_scan_fn or None, reason it is unusable); checked once per process."""
    with _cuda_lock:
        if CHECK.done:
            return CHECK.fn, CHECK.reason
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
                logger.warning("%s; CUDA scans use the pure-torch backend; %s", reason, CUDA_HINT)
        CHECK.done, CHECK.fn, CHECK.reason = True, fn, reason
        return fn, reason


def cuda_takes(layout: ScanLayout, args: tuple) -> bool:
    """Whether mamba_ssm's kernel computes exactly selective_scan_ref on these inputs: its dtype rules (delta, z and
    an input-dependent B/C in u's dtype, one of fp32/fp16/bf16), N <= 256, one group count shared by B and C (a
    fixed one aside), and no gradient wanted through the last state (selective_scan_fn drops it)."""
    u, delta, A, B, C, D, z, delta_bias, _, return_last_state = args
    if u.dtype not in (torch.float32, torch.float16, torch.bfloat16) or A.shape[1] > 256:
        return False
    if return_last_state and needs_grad(u, delta, A, B, C, D, z, delta_bias):
        return False
    same = [delta, z, *(M for M in (B, C) if M.dim() > 2)]
    if any(t is not None and t.dtype != u.dtype for t in same):
        return False
    return layout.c_groups in (0, max(layout.b_groups, 1))


def scan_cuda(fn: Callable, u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state):
    """Calls selective_scan_fn with the weight dtypes it requires: A, a fixed B/C in float32 (complex64 for complex
    A), D and delta_bias in float32 (no-ops for pkd's models; the casts are differentiable)."""
    A = compute_dtype(A, A.is_complex())
    B, C = [M.to(A.dtype) if M.dim() == 2 else M for M in (B, C)]
    D = None if D is None else D.float()
    delta_bias = None if delta_bias is None else delta_bias.float()
    return fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
