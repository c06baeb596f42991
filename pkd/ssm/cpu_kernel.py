"""The fused C++/OpenMP CPU kernel (backend ``cpp``): built once by :func:`build_cpu_kernel` with
torch.utils.cpp_extension and ninja from ``csrc/selective_scan.cpp``, cached per source, torch/Python version and CPU
under ``$PKD_CACHE_DIR`` (default ``~/.cache/pkd``), and loaded instantly from that cache afterwards
(:func:`load_cached_kernel` never compiles: selective_scan itself never builds anything).

The kernel is also the custom operator ``pkd::scan_fwd`` (backward ``pkd::scan_bwd``) with fake implementations, so
``torch.export`` traces a model that uses it. Letters: B batch, ED channels (expand * d_model), L sequence length,
N state size, G groups of B/C, W SIMD lanes.

Lanes: every build holds the 4-, 8- and 16-lane kernels; :func:`pick_lanes` chooses one per call, at most
:func:`preferred_lanes`: what the compiler's vector target suits (16 with AVX-512, 8 with AVX/AVX2, 4 with NEON or
SSE2), or ``$PKD_SCAN_LANES`` (4, 8 or 16) to force one (the tests run every width on every machine). One build per
CPU, so no two widths share or overwrite a cache entry.
"""

from __future__ import annotations

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
from typing import Any, Optional

import torch
import torch.nn.functional as F

from pkd.ssm.cpu_info import cpu_model, describe_cpu, kernel_flags, vector_extension
from pkd.cache import CACHE_ENV, cache_root  # noqa: F401  (CACHE_ENV: pkd.ssm's public name for it)
from pkd.ssm.layout import BACKEND_ENV, ScanLayout, needs_grad

logger = logging.getLogger("pkd.ssm")  # the package's one logger: its lines read "pkd.ssm:" as before the split

LANES_ENV = "PKD_SCAN_LANES"
LANE_WIDTHS = (4, 8, 16)
_KERNEL_SOURCE = Path(__file__).resolve().parent / "csrc" / "selective_scan.cpp"


# ----------------------------------------------------------------------------------------------------------------
# Build once (build_cpu_kernel), load the cached library instantly afterwards.


@dataclass
class KernelState:
    """This process's fused kernel: ``module`` once loaded or built (None before), ``error`` the reason the last
    build failed (None when it did not). One instance, :data:`KERNEL`."""

    module: Any = None
    error: str | None = None


KERNEL = KernelState()
_kernel_lock = threading.Lock()


def _cpu_signature() -> str:
    """The CPU model and flags: the kernel is compiled for the native CPU, so a cached build is per CPU type."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    keep = [ln for ln in lines if ln.startswith(("model name", "flags", "Features", "CPU part"))][:3]
    return "\n".join(keep) or f"{cpu_model()} {vector_extension()}"


@functools.lru_cache(maxsize=1)
def _kernel_key() -> str:
    """Hash of the kernel source, torch and Python versions, compiler and flags, and CPU (once per process)."""
    digest = hashlib.sha256()
    cflags, ldflags = kernel_flags()
    for part in (_KERNEL_SOURCE.read_bytes(), torch.__version__.encode(), sys.version.encode(),
                 " ".join(cflags + ldflags).encode(), os.environ.get("CXX", "c++").encode(),
                 _cpu_signature().encode()):
        digest.update(part)
    return digest.hexdigest()[:16]


def kernel_build_dir() -> tuple[str, Path]:
    """Module name and build directory of the fused kernel, keyed by source hash, torch/Python version and CPU.

    Returns:
        (module name, directory under ``$PKD_CACHE_DIR`` (default ``~/.cache/pkd``)).
    """
    key = _kernel_key()
    return f"pkd_scan_{key}", cache_root() / "scan_kernel" / key


def _import_built(name: str, so_path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, so_path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {so_path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_cached_kernel() -> Any:
    """Returns the kernel module if loaded already or if a cached build exists (never compiles), else None."""
    if KERNEL.module is not None:
        return KERNEL.module
    with _kernel_lock:
        if KERNEL.module is not None:
            return KERNEL.module
        name, build_dir = kernel_build_dir()
        so_path = build_dir / f"{name}.so"
        if not so_path.is_file():
            return None
        try:
            KERNEL.module = _import_built(name, so_path)
        except (ImportError, OSError) as exc:  # a stale or partial file: ignored, a rebuild will replace it
            logger.warning("cannot load the cached scan kernel %s (%s); using the torch scan", so_path, exc)
            return None
        return KERNEL.module


def build_cpu_kernel(verbose: bool = True) -> bool:
    """Builds (about a minute, once) or loads the cached fused CPU scan kernel; blocking and thread-safe.

    Args:
        verbose: log progress at INFO level (the compiler output itself stays quiet).
    Returns:
        True when the kernel is loaded; False (with the reason logged) when no compiler/ninja is available or the
        build failed, in which case selective_scan keeps using the pure-torch backend.
    """
    if load_cached_kernel() is not None:
        return True
    with _kernel_lock:
        if KERNEL.module is not None:
            return True
        compiler = (shlex.split(os.environ.get("CXX", "")) or ["c++"])[0]
        missing = [tool for tool in ("ninja", compiler) if shutil.which(tool) is None]
        if missing:
            KERNEL.error = f"cannot build the fused CPU scan kernel: {' and '.join(missing)} not found on PATH " \
                           "(install g++ and `pip install ninja`); using the pure-torch scan"
            logger.warning(KERNEL.error)
            return False
        name, build_dir = kernel_build_dir()
        build_dir.mkdir(parents=True, exist_ok=True)
        if verbose:
            logger.info("building the fused CPU scan kernel once (about a minute); cached in %s", build_dir)
        from torch.utils.cpp_extension import load

        cflags, ldflags = kernel_flags()
        try:
            KERNEL.module = load(name=name, sources=[str(_KERNEL_SOURCE)], extra_cflags=cflags,
                                 extra_ldflags=ldflags, build_directory=str(build_dir), verbose=False)
        except Exception as exc:  # compiler errors come as RuntimeError/subprocess errors; keep one line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            KERNEL.error = (f"building the fused CPU scan kernel for {platform.system()} {platform.machine()} "
                            f"failed ({first}); using the pure-torch scan")
            logger.warning(KERNEL.error)
            return False
        KERNEL.error = None
        if verbose:
            openmp = "" if "-fopenmp" in cflags else " (built without OpenMP: one thread per scan)"
            logger.info("fused CPU scan kernel ready: %s, %d lanes%s", KERNEL.module.vector_isa(),
                        KERNEL.module.preferred_lanes(), openmp)
        return True


# The kernel as torch.library custom operators pkd::scan_fwd / pkd::scan_bwd: autograd through register_autograd,
# fake (shape-only) implementations so torch.export and torch.compile trace a model that uses the kernel.


def _loaded_kernel() -> Any:
    kernel = load_cached_kernel()
    if kernel is None:
        raise RuntimeError("the fused CPU scan kernel is not built; run `python -m pkd backends --build` or set "
                           f"{BACKEND_ENV}=torch")
    return kernel


def preferred_lanes() -> int:
    """The most lanes a call may use: ``$PKD_SCAN_LANES`` when set, else what the built kernel's vector target suits
    (16 with AVX-512, 8 with AVX/AVX2, 4 with NEON/SSE2; 8 before any build)."""
    value = os.environ.get(LANES_ENV, "").strip()
    if value:
        if value not in {str(w) for w in LANE_WIDTHS}:
            raise ValueError(f"{LANES_ENV}={value!r} is not a lane width; choose one of 4, 8, 16 or unset it")
        return int(value)
    kernel = load_cached_kernel()
    return int(kernel.preferred_lanes()) if kernel is not None else 8


def pick_lanes(dim: int, per_group: list[int], preferred: int) -> int:
    """SIMD lanes W for one call: the widest W <= preferred such that every group of a grouped B/C (``per_group``
    channels each) fills whole blocks, and, for 16 lanes, ED does too (narrower blocks pad the last one). The
    checkpoints are shaped by it (their last dimension), so the backward pass reads it back from them."""
    for w in sorted(LANE_WIDTHS, reverse=True):
        if w <= preferred and all(h % w == 0 for h in per_group) and (dim % w == 0 or w <= 8):
            return w
    raise ValueError(f"no lane width fits {per_group} channels per group; the torch backend runs this layout")


def _per_group(dim: int, *operands: torch.Tensor) -> list[int]:
    """Channels per group of every grouped (B, G, L, N) kernel operand."""
    return [dim // M.shape[1] for M in operands if M.dim() == 4 and M.shape[1] > 1]


def cpp_takes(layout: ScanLayout, dim: int) -> bool:
    """Whether the fused kernel runs this layout: real A, and whole 4-lane blocks per group of a grouped B/C."""
    groups = [g for g in (layout.b_groups, layout.c_groups) if g > 1]
    return not layout.complex and all((dim // g) % min(LANE_WIDTHS) == 0 for g in groups)


def describe_kernel() -> str:
    """One line for benchmark output and ``pkd backends``: the CPU, its vector extension, the kernel's compile
    target and lane width, e.g. "AMD EPYC (x86_64, AVX2, 2 cores); cpp kernel: AVX2 build, 8 lanes"."""
    info = kernel_info()
    if info["kernel_target"] is None:
        return f"{describe_cpu()}; cpp kernel: not built"
    forced = f" (forced by {LANES_ENV})" if info["lanes_forced"] else ""
    return f"{describe_cpu()}; cpp kernel: {info['kernel_target']} build, {info['lanes']} lanes{forced}"


def kernel_info() -> dict[str, str | int | None]:
    """What ``python -m pkd backends`` and the benchmarks print: the CPU, its vector extension, the extension the
    kernel was compiled for and the lane width in use (None where the kernel is not built)."""
    kernel = load_cached_kernel()
    return {"cpu": cpu_model(), "cpu_vector_extension": vector_extension(),
            "kernel_target": kernel.vector_isa() if kernel is not None else None,
            "lanes": preferred_lanes() if kernel is not None else None,
            "lanes_forced": os.environ.get(LANES_ENV) or None}


@torch.library.custom_op("pkd::scan_fwd", mutates_args=())
def scan_fwd_op(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, Bt: torch.Tensor, Ct: torch.Tensor,
                D: Optional[torch.Tensor], z: Optional[torch.Tensor], delta_bias: Optional[torch.Tensor],
                softplus: bool, want_last: bool, save: bool, lanes: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Kernel forward on float32 contiguous u, delta (B, ED, L), A (ED, N), Bt, Ct (B, L, N), (B, G, L, N) or fixed
    (ED, N), D (ED,), z (B, ED, L), delta_bias (ED,), with W = lanes (4, 8 or 16; :func:`pick_lanes`). The kernel
    computes dt = softplus(delta + delta_bias) itself (without softplus: delta + delta_bias), block by block.

    Returns:
        out (B, ED, L); last state (B, ED, N) if want_last; if save, checkpoints (B, ED/W, ceil(L/16), N, W) and
        y before the gate (B, ED, L) when z is given. Outputs not asked for are empty (0,) tensors.
    """
    out, last, ckpt, ypre = _loaded_kernel().fwd(u, delta, A, Bt, Ct, D, z, delta_bias, softplus, want_last, save,
                                                 lanes)
    return out, last, ckpt, ypre


@scan_fwd_op.register_fake
def _scan_fwd_fake(u, delta, A, Bt, Ct, D, z, delta_bias, softplus, want_last, save, lanes):
    batch, dim, length = u.shape
    nst = A.shape[1]
    empty = u.new_empty(0)
    last = u.new_empty(batch, dim, nst) if want_last else empty
    ckpt = u.new_empty(batch, (dim + lanes - 1) // lanes, (length + 15) // 16, nst, lanes) if save else u.new_empty(0)
    ypre = u.new_empty(batch, dim, length) if save and z is not None else u.new_empty(0)
    return u.new_empty(batch, dim, length), last, ckpt, ypre


@torch.library.custom_op("pkd::scan_bwd", mutates_args=())
def _scan_bwd_op(gout: torch.Tensor, glast: Optional[torch.Tensor], ckpt: torch.Tensor, ypre: torch.Tensor,
                 u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, Bt: torch.Tensor, Ct: torch.Tensor,
                 D: Optional[torch.Tensor], z: Optional[torch.Tensor], delta_bias: Optional[torch.Tensor],
                 softplus: bool) -> list[torch.Tensor]:
    """Kernel backward. Returns gu, gdelta (B, ED, L), gA per batch row (B, ED, N), gBt, gCt shaped as Bt, Ct (a
    fixed one per batch row, (B, ED, N)), gD per batch row (B, ED) or empty, gz (B, ED, L) or empty, gdelta_bias
    per batch row (B, ED) or empty."""
    return list(_loaded_kernel().bwd(gout, glast, ckpt, ypre, u, delta, A, Bt, Ct, D, z, delta_bias, softplus))


@_scan_bwd_op.register_fake
def _scan_bwd_fake(gout, glast, ckpt, ypre, u, delta, A, Bt, Ct, D, z, delta_bias, softplus):
    batch, dim, length = u.shape
    nst = A.shape[1]
    gBt, gCt = [u.new_empty(batch, dim, nst) if M.dim() == 2 else M.new_empty(M.shape) for M in (Bt, Ct)]
    return [u.new_empty(batch, dim, length), u.new_empty(batch, dim, length), u.new_empty(batch, dim, nst), gBt, gCt,
            u.new_empty(batch, dim) if D is not None else u.new_empty(0),
            u.new_empty(batch, dim, length) if z is not None else u.new_empty(0),
            u.new_empty(batch, dim) if delta_bias is not None else u.new_empty(0)]


def _scan_setup_context(ctx, inputs, output) -> None:
    u, delta, A, Bt, Ct, D, z, delta_bias, softplus, want_last, save, _lanes = inputs
    _, _, ckpt, ypre = output
    ctx.want_last, ctx.save, ctx.softplus = want_last, save, softplus
    ctx.save_for_backward(ckpt, ypre, u, delta, A, Bt, Ct, D, z, delta_bias)


def _scan_backward(ctx, gout, glast, _gckpt, _gypre):
    if not ctx.save:
        raise RuntimeError("pkd::scan_fwd was called with save=False, so it cannot be differentiated")
    ckpt, ypre, u, delta, A, Bt, Ct, D, z, delta_bias = ctx.saved_tensors
    glast = glast.float().contiguous() if ctx.want_last and glast is not None else None
    gu, gdelta, gA, gBt, gCt, gD, gz, gbias = _scan_bwd_op(gout.float().contiguous(), glast, ckpt, ypre, u, delta, A,
                                                           Bt, Ct, D, z, delta_bias, ctx.softplus)
    gBt, gCt = [g.sum(0) if M.dim() == 2 else g for g, M in ((gBt, Bt), (gCt, Ct))]  # a fixed one: (ED, N)
    return (gu, gdelta, gA.sum(0), gBt, gCt, gD.sum(0) if D is not None else None,  # (ED, N), (ED,)
            gz if z is not None else None, gbias.sum(0) if delta_bias is not None else None,  # (ED,)
            None, None, None, None)


torch.library.register_autograd("pkd::scan_fwd", _scan_backward, setup_context=_scan_setup_context)


def _cpp_args(u, delta, A, B, C, D, z, delta_bias) -> list[torch.Tensor | None]:
    """float32 contiguous kernel inputs; B and C go time-major, (B, N, L) -> (B, L, N) (a no-op for Mamba's x_proj
    layout) or (B, G, N, L) -> (B, G, L, N); a fixed (ED, N) one stays as it is."""

    def prep(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.float().contiguous()

    Bt = B.float().transpose(-1, -2).contiguous() if B.dim() > 2 else prep(B)  # (B, [G,] L, N) | (ED, N)
    Ct = C.float().transpose(-1, -2).contiguous() if C.dim() > 2 else prep(C)  # (B, [G,] L, N) | (ED, N)
    return [prep(u), prep(delta), prep(A), Bt, Ct, prep(D), prep(z), prep(delta_bias)]


def plain_eager_inference(save: bool, u: torch.Tensor) -> bool:
    """Eager inference on real tensors, nothing to differentiate: the kernel is then called directly rather than
    through the pkd::scan_fwd custom op (the same function), whose CPU implementation torch wraps in a guard that
    imports torch._dynamo on first use: 2-3 s of CPU in every `pkd eval`, `pkd predict` and app process. Autograd,
    torch.compile, tracing and fake tensors (torch.export) take the op."""
    return (not save and type(u) is torch.Tensor and not torch.compiler.is_compiling()
            and not torch.jit.is_tracing())


def scan_cpp(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state):
    """The cpp backend on selective_scan's (checked) arguments: y (B, ED, L), with the last state when asked. The
    kernel adds delta_bias and takes the softplus itself (and their gradients), so no (B, ED, L) dt is made here."""
    save = needs_grad(u, delta, A, B, C, D, z, delta_bias)  # keep checkpoints only for a backward pass
    if not save and (delta_bias is not None or delta_softplus):
        # inference: torch's own softplus, so evaluations reproduce saved runs' figures bit for bit; training, where
        # the time goes, takes the fused activation
        delta = delta.float() if delta_bias is None else delta.float() + delta_bias.float()[None, :, None]
        delta, delta_bias, delta_softplus = F.softplus(delta) if delta_softplus else delta, None, False
    args = _cpp_args(u, delta, A, B, C, D, z, delta_bias)
    lanes = pick_lanes(u.shape[1], _per_group(u.shape[1], args[3], args[4]), preferred_lanes())
    forward = _loaded_kernel().fwd if plain_eager_inference(save, u) else scan_fwd_op
    out, last, _, _ = forward(*args, bool(delta_softplus), return_last_state or save, save, lanes)
    out = out.to(u.dtype)
    return (out, last) if return_last_state else out
