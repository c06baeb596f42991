"""The selective scan (Mamba-1 S6) with mamba_ssm.selective_scan_fn semantics.

selective_scan_ref is the spec (a plain sequential loop). selective_scan dispatches to the fastest correct backend
available at run time:

- ``cuda``: mamba_ssm's ``selective_scan_fn`` (CUDA tensors, when installed and working);
- ``cpp``: our fused C++/OpenMP CPU kernel (pkd/csrc/selective_scan.cpp), used only once built and cached by
  :func:`build_cpu_kernel` (selective_scan itself never compiles anything);
- ``torch``: a pure-torch autograd Function with a hand-written backward (no build step; any device);
- ``ref``: the reference loop.

Set ``PKD_SCAN_BACKEND`` to ``auto|cpp|torch|ref|cuda`` to force one. Letters: B batch, ED channels
(expand * d_model), L sequence length, N state size.
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
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "cpp", "torch", "ref", "cuda")
BACKEND_ENV = "PKD_SCAN_BACKEND"
CACHE_ENV = "PKD_CACHE_DIR"
_KERNEL_SOURCE = Path(__file__).resolve().parent / "csrc" / "selective_scan.cpp"
_KERNEL_FLAGS = ["-O3", "-fopenmp", "-march=native", "-ffp-contract=fast"]

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


def _check_shapes(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
) -> None:
    """Raises ValueError naming the first argument whose shape breaks the (B, ED, L) / (ED, N) contract."""
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be (batch, dim, L), got shape {tuple(u.shape)}")
    batch, dim, length = u.shape
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"selective_scan: A must be (dim={dim}, N), got shape {tuple(A.shape)}")
    nst = A.shape[1]
    expected = {
        "delta": (delta, (batch, dim, length)),
        "B": (B, (batch, nst, length)),
        "C": (C, (batch, nst, length)),
        "D": (D, (dim,)),
        "z": (z, (batch, dim, length)),
        "delta_bias": (delta_bias, (dim,)),
    }
    for name, (tensor, shape) in expected.items():
        if tensor is not None and tuple(tensor.shape) != shape:
            raise ValueError(f"selective_scan: {name} must have shape {shape}, got {tuple(tensor.shape)}")
    if A.is_complex():
        raise ValueError("selective_scan: complex A is not supported; pass a real (dim, N) A such as -exp(A_log)")


def _grad_like(grad: torch.Tensor | None, like: torch.Tensor | None) -> torch.Tensor | None:
    """Casts a float32 gradient back to its input's dtype (None stays None)."""
    if grad is None or like is None:
        return None
    return grad.to(like.dtype)


# ----------------------------------------------------------------------------------------------------------------
# Pure-torch backend: batched non-recurrent work, one in-place addcmul_ per step, hand-written backward.


def _torch_discretize(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
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
    dA = torch.empty(length, batch, dim, nst, dtype=u.dtype, device=u.device)  # (L, B, ED, N)
    torch.mul(dt_l.unsqueeze(-1), A, out=dA)
    dA.exp_()
    dBu = torch.empty_like(dA)  # (L, B, ED, N)
    torch.mul((dt_l * u.permute(2, 0, 1)).unsqueeze(-1), B.permute(2, 0, 1).unsqueeze(2), out=dBu)
    return raw, dt_l, dA, dBu


def _torch_scan_forward(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """float32 forward of the torch backend.

    Returns:
        out (B, ED, L), last state (B, ED, N), all states xs (L, B, ED, N) and y before skip/gate (B, ED, L).
    """
    _, _, dA, xs = _torch_discretize(u, delta, A, B, delta_bias, delta_softplus)
    for t in range(1, xs.shape[0]):
        xs[t].addcmul_(dA[t], xs[t - 1])  # (B, ED, N)
    del dA
    y = torch.matmul(xs, C.permute(2, 0, 1).unsqueeze(-1)).squeeze(-1).permute(1, 2, 0)  # (B, ED, L)
    out = y if D is None else y + u * D[None, :, None]  # (B, ED, L)
    if z is not None:
        out = out * F.silu(z)
    return out, xs[-1].clone(), xs, y


class _TorchScan(torch.autograd.Function):
    """Pure-torch selective scan with a hand-written backward (states are kept, decays are recomputed)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):  # type: ignore[override]
        inputs = [t.float() if t is not None else None for t in (u, delta, A, B, C, D, z, delta_bias)]
        out, last, xs, y = _torch_scan_forward(*inputs, delta_softplus)
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
        go = gout.float()  # (B, ED, L)
        gz = None
        if z is not None:
            o = y if D is None else y + u * D[None, :, None]  # (B, ED, L)
            sz = torch.sigmoid(z)
            gz = go * o * sz * (1 + z * (1 - sz))  # (B, ED, L)
            go = go * (z * sz)
        gD = None if D is None else (go * u).sum((0, 2))  # (ED,)
        raw, dt_l, dA, G = _torch_discretize(u, delta, A, B, delta_bias, ctx.delta_softplus)
        go_l = go.permute(2, 0, 1)  # (L, B, ED)
        gC = torch.matmul(xs.transpose(-1, -2), go_l.unsqueeze(-1)).squeeze(-1)  # (L, B, N)
        torch.mul(go_l.unsqueeze(-1), C.permute(2, 0, 1).unsqueeze(2), out=G)  # (L, B, ED, N)
        if glast is not None:
            G[-1].add_(glast.float())
        for t in range(G.shape[0] - 2, -1, -1):
            G[t].addcmul_(dA[t + 1], G[t + 1])  # (B, ED, N): dLoss/dx_t
        u_l = u.permute(2, 0, 1)  # (L, B, ED)
        gdbu = torch.matmul(G, B.permute(2, 0, 1).unsqueeze(-1)).squeeze(-1)  # (L, B, ED): sum_n G B
        gB = torch.matmul(G.transpose(-1, -2), (dt_l * u_l).unsqueeze(-1)).squeeze(-1)  # (L, B, N)
        dA[1:].mul_(xs[:-1])
        dA[0].zero_()
        P = dA.mul_(G)  # (L, B, ED, N): dLoss/d(dA) * dA
        del G
        gA = torch.einsum("lbdn,lbd->dn", P, dt_l)  # (ED, N)
        gdt = P.mul_(A).sum(-1) + gdbu * u_l  # (L, B, ED)
        gu = (gdbu * dt_l).permute(1, 2, 0)  # (B, ED, L)
        if D is not None:
            gu = gu + go * D[None, :, None]
        gdelta = gdt.permute(1, 2, 0)  # (B, ED, L)
        if ctx.delta_softplus:
            gdelta = gdelta * torch.where(raw > 20, torch.ones_like(raw), torch.sigmoid(raw))
        gbias = None if delta_bias is None else gdelta.sum((0, 2))  # (ED,)
        grads = [gu, gdelta, gA, gB.permute(1, 2, 0), gC.permute(1, 2, 0), gD, gz, gbias]
        dtypes = ctx.dtypes
        return (*[g if g is None else g.to(dt) for g, dt in zip(grads, dtypes)], None)


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state):
    if _needs_grad(u, delta, A, B, C, D, z, delta_bias):
        out, last = _TorchScan.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    else:
        inputs = [t.float() if t is not None else None for t in (u, delta, A, B, C, D, z, delta_bias)]
        out, last, _, _ = _torch_scan_forward(*inputs, delta_softplus)
        out = out.to(u.dtype)
    return (out, last) if return_last_state else out


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


class _CppScan(torch.autograd.Function):
    """Fused C++ selective scan on dt = softplus(delta + bias); saves inputs + sparse checkpoints, not states."""

    @staticmethod
    def forward(ctx, kernel, u, dt, A, B, C, D, z):  # type: ignore[override]
        args = _cpp_args(u, dt, A, B, C, D, z)
        out, last, ckpt, ypre = kernel.fwd(*args, True, True)  # ckpt: states every 16 steps (1/16 of all)
        ctx.kernel = kernel
        ctx.dtypes = [t.dtype if t is not None else None for t in (u, dt, A, B, C, D, z)]
        ctx.has = [t is not None for t in args[5:]]
        ctx.save_for_backward(ckpt, ypre, *[t for t in args if t is not None])
        return out.to(u.dtype), last

    @staticmethod
    def backward(ctx, gout, glast):  # type: ignore[override]
        saved = iter(ctx.saved_tensors)
        ckpt, ypre, u, dt, A, Bt, Ct = [next(saved) for _ in range(7)]
        D, z = [next(saved) if has else None for has in ctx.has]
        glast = None if glast is None else glast.float().contiguous()
        gu, gdt, gA, gBt, gCt, gD, gz = ctx.kernel.bwd(
            gout.float().contiguous(), glast, ckpt, ypre, u, dt, A, Bt, Ct, D, z
        )
        grads = [
            gu,
            gdt,
            gA.sum(0),  # (ED, N)
            gBt.transpose(1, 2),  # (B, N, L)
            gCt.transpose(1, 2),  # (B, N, L)
            gD.sum(0) if D is not None else None,  # (ED,)
            gz if z is not None else None,
        ]
        return (None, *[g if g is None else g.to(t) for g, t in zip(grads, ctx.dtypes)])


def _cpp_args(u, dt, A, B, C, D, z) -> list[torch.Tensor | None]:
    """float32 contiguous kernel inputs; B and C go time-major (B, L, N) (a no-op for Mamba's x_proj layout)."""

    def prep(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.float().contiguous()

    Bt = B.float().transpose(1, 2).contiguous()  # (B, L, N)
    Ct = C.float().transpose(1, 2).contiguous()  # (B, L, N)
    return [prep(u), prep(dt), prep(A), Bt, Ct, prep(D), prep(z)]


def _scan_cpp(kernel, u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state):
    dt = delta.float()  # (B, ED, L); bias and softplus run in torch so autograd gives their exact gradients
    if delta_bias is not None:
        dt = dt + delta_bias.float()[None, :, None]
    if delta_softplus:
        dt = F.softplus(dt)
    if _needs_grad(u, delta, A, B, C, D, z, delta_bias):
        out, last = _CppScan.apply(kernel, u, dt, A, B, C, D, z)
    else:
        out, last, _, _ = kernel.fwd(*_cpp_args(u, dt, A, B, C, D, z), return_last_state, False)
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


# ----------------------------------------------------------------------------------------------------------------
# Dispatch.


def _requested_backend() -> str:
    value = os.environ.get(BACKEND_ENV, "auto").strip().lower() or "auto"
    if value not in BACKENDS:
        raise ValueError(f"{BACKEND_ENV}={value!r} is not a scan backend; choose one of: {', '.join(BACKENDS)}")
    return value


def scan_backend(device: str | torch.device = "cpu") -> str:
    """Names the backend selective_scan would use now for tensors on ``device`` (never builds anything).

    Args:
        device: device of the inputs, e.g. "cpu" or "cuda:0".
    Returns:
        one of "cpp", "torch", "ref", "cuda".
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
        {"ref", "torch", "cpp", "cuda"} -> True when usable, else a one-line reason string (test with ``is True``).
    """
    cpp: bool | str = True
    if _load_cached_kernel() is None:
        cpp = _kernel_error or "not built yet: run pkd.ssm.build_cpu_kernel() (training builds it automatically)"
    fn, reason = _cuda_scan_fn()
    return {"ref": True, "torch": True, "cpp": cpp, "cuda": True if fn is not None else reason}


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
    """Selective scan with :func:`selective_scan_ref` semantics on the fastest available backend.

    Args:
        u, delta: (B, ED, L). A: (ED, N). B, C: (B, N, L). D, delta_bias: (ED,). z: (B, ED, L).
        delta_softplus: apply softplus to delta + delta_bias. return_last_state: also return the last state.
    Returns:
        y (B, ED, L), and the last state (B, ED, N) when return_last_state.
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    backend = scan_backend(u.device)
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    if backend == "ref":
        return selective_scan_ref(*args)
    if backend == "cuda":
        fn, reason = _cuda_scan_fn()
        if fn is None or u.device.type != "cuda":
            why = reason if fn is None else f"inputs are on {u.device}, not CUDA"
            raise RuntimeError(f"{BACKEND_ENV}=cuda but {why}; {_CUDA_HINT}")
        return fn(*args)
    if backend == "cpp":
        kernel = _load_cached_kernel()
        if kernel is None or u.device.type != "cpu":
            why = f"inputs are on {u.device}" if kernel is not None else "the kernel is not built"
            raise RuntimeError(f"{BACKEND_ENV}=cpp but {why}; run pkd.ssm.build_cpu_kernel() on a CPU run, or "
                               f"set {BACKEND_ENV}=torch")
        return _scan_cpp(kernel, *args)
    return _scan_torch(*args)
