"""The selective scan (Mamba-1 S6) with mamba_ssm.selective_scan_fn semantics.

selective_scan_ref is the spec (a plain sequential loop), for every layout of mamba_ssm's: B and C (B, N, L),
(B, G, N, L) or fixed (ED, N); real or complex A. selective_scan dispatches to the fastest backend available at run
time that computes the call exactly (a backend hands a layout it does not run to ``torch``):

- ``cuda``: mamba_ssm's ``selective_scan_fn`` (CUDA tensors, when installed and working);
- ``cpp``: our fused C++/OpenMP CPU kernel (pkd/ssm/csrc/selective_scan.cpp), used only once built and cached by
  :func:`build_cpu_kernel` (selective_scan itself never compiles anything);
- ``torch``: a pure-torch autograd Function with a hand-written backward (no build step; any device);
- ``ref``: the reference loop;
- ``export``: forward only, in plain aten ops without in-place writes, so ``torch.export`` and
  the ONNX exporter trace it (the loop over L unrolls for short sequences, longer ones run in log2 L rounds).

Set ``PKD_SCAN_BACKEND`` to ``auto|cpp|torch|ref|cuda|export`` to force one, or ``with use_backend("export"):``
for one block of code (what ``pkd.export`` does). The fused kernel is also the custom operator ``pkd::scan_fwd``
(backward ``pkd::scan_bwd``) with fake implementations, so ``torch.export`` traces a model that uses it.
Letters: B batch, ED channels (expand * d_model), L sequence length, N state size.

Modules: ``dispatch`` (selective_scan, the backend choice and report), ``layout`` (the argument contract every backend
shares), ``ref``, ``torch_scan``, ``export_scan``, ``cpu_kernel`` (build, cache and custom operator of the fused
kernel, source in ``csrc/``) and ``cuda`` (mamba_ssm, checked at run time). This face re-exports what callers use.
"""

from pkd.ssm.cpu_kernel import CACHE_ENV, build_cpu_kernel, kernel_build_dir
from pkd.ssm.dispatch import available_backends, scan_backend, selective_scan, use_backend
from pkd.ssm.export_scan import EXPORT_UNROLL_MAX, export_in_rounds, selective_scan_export
from pkd.ssm.layout import BACKEND_ENV, BACKENDS, ScanLayout
from pkd.ssm.ref import selective_scan_ref

__all__ = [
    "BACKENDS", "BACKEND_ENV", "CACHE_ENV", "EXPORT_UNROLL_MAX", "ScanLayout", "available_backends",
    "build_cpu_kernel", "export_in_rounds", "kernel_build_dir", "scan_backend", "selective_scan", "selective_scan_export",
    "selective_scan_ref", "use_backend",
]
