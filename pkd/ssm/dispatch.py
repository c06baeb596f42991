"""Choosing the scan backend: :func:`selective_scan` (the entry point every model calls), :func:`scan_backend` (which
backend runs now), :func:`use_backend` (force one for a with-block), :func:`available_backends` (what ``python -m pkd
backends`` prints) and :func:`route` (the backend that runs one call: a backend hands a layout it does not run exactly
to ``torch``).

Letters: B batch, ED channels (expand * d_model), L sequence length, N state size, G groups of B/C.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os

import torch

from pkd.ssm.cpu_kernel import KERNEL, cpp_takes, load_cached_kernel, scan_cpp
from pkd.ssm.cuda import CUDA_HINT, cuda_scan_fn, cuda_takes, scan_cuda
from pkd.ssm.export_scan import selective_scan_export
from pkd.ssm.layout import BACKEND_ENV, BACKENDS, ScanLayout, check_shapes
from pkd.ssm.ref import selective_scan_ref
from pkd.ssm.torch_scan import scan_torch

logger = logging.getLogger("pkd.ssm")  # the package's one logger: its lines read "pkd.ssm:" as before the split

_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("pkd_scan_backend", default=None)


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
        return "cuda" if cuda_scan_fn()[0] is not None else "torch"
    return "cpp" if load_cached_kernel() is not None else "torch"


def available_backends() -> dict[str, bool | str]:
    """Which backends can run here, for display.

    Returns:
        {"ref", "torch", "cpp", "cuda", "export"} -> True when usable, else a one-line reason string (test with
        ``is True``).
    """
    cpp: bool | str = True
    if load_cached_kernel() is None:
        cpp = KERNEL.error or "not built yet: run pkd.ssm.build_cpu_kernel() (training builds it automatically)"
    fn, reason = cuda_scan_fn()
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
    kernel: complex A, groups of fewer than 8 channels; mamba_ssm: see :func:`cuda_takes`) hands it to the torch
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
    layout = check_shapes(u, delta, A, B, C, D, z, delta_bias)
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    backend = route(scan_backend(u.device), layout, args)
    if backend == "ref":
        return selective_scan_ref(*args)
    if backend == "cuda":
        return scan_cuda(cuda_scan_fn()[0], *args)
    if backend == "cpp":
        return scan_cpp(*args)
    if backend == "export":
        return selective_scan_export(*args)
    return scan_torch(*args)


def route(backend: str, layout: ScanLayout, args: tuple) -> str:
    """The backend that runs this call: ``backend`` (as scan_backend names it) when it computes this layout exactly,
    else "torch". A forced cuda or cpp backend that cannot run at all raises RuntimeError saying why."""
    u = args[0]
    if backend == "cuda":
        fn, reason = cuda_scan_fn()
        if fn is None or u.device.type != "cuda":
            why = reason if fn is None else f"inputs are on {u.device}, not CUDA"
            raise RuntimeError(f"{BACKEND_ENV}=cuda but {why}; {CUDA_HINT}")
        takes = cuda_takes(layout, args)
    elif backend == "cpp":
        built = load_cached_kernel() is not None
        if not built or u.device.type != "cpu":
            why = f"inputs are on {u.device}" if built else "the kernel is not built"
            raise RuntimeError(f"{BACKEND_ENV}=cpp but {why}; run pkd.ssm.build_cpu_kernel() on a CPU run, or "
                               f"set {BACKEND_ENV}=torch")
        takes = cpp_takes(layout, u.shape[1])
    else:
        return backend
    if not takes:
        logger.debug("the %s scan backend does not run %s; using the torch backend", backend, layout)
    return backend if takes else "torch"
