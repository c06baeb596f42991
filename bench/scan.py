"""Selective-scan speed on CPU: pkd's fused C++ kernel and torch fallback vs a lean loop and mamba.py's pscan.

Times forward + backward (median of --reps) at batch 64, d_inner 64, N 16, fp32, and prints a table with the
ratio of each pkd backend to the faster baseline and its max abs difference from the loop. Asserts nothing.

    python bench/scan.py --lengths 28 196 784 --reps 5 --threads 2 [--lanes 8 16]

It prints the CPU, its vector extension and the kernel's lane width first; ``--lanes`` adds a cpp column per forced
kernel width (``PKD_SCAN_LANES``), timed in the same run.

Needs `pip install mambapy` for the pscan column (skipped when missing). Builds the kernel once if needed.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pkd import ssm  # noqa: E402
from pkd.ssm.cpu_kernel import LANES_ENV, describe_kernel  # noqa: E402

Scan = Callable[..., torch.Tensor]


def lean_loop(u, delta, A, B, C, D):
    """Sequential scan keeping only the (B, ED, N) state; autograd through every step."""
    x = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])  # (B, ED, N)
    ys = []
    for t in range(u.shape[2]):
        dt = delta[:, :, t, None]  # (B, ED, 1)
        x = torch.exp(dt * A) * x + dt * B[:, None, :, t] * u[:, :, t, None]  # (B, ED, N)
        ys.append(torch.einsum("bdn,bn->bd", x, C[:, :, t]))  # (B, ED)
    return torch.stack(ys, dim=2) + u * D[None, :, None]  # (B, ED, L)


def mambapy_pscan(u, delta, A, B, C, D):
    """mamba.py's selective_scan: Blelloch pscan over (B, L, ED, N) tensors (alxndrTL/mamba.py mambapy/mamba.py)."""
    from mambapy.pscan import pscan

    x, dl = u.transpose(1, 2), delta.transpose(1, 2)  # (B, L, ED)
    Bl, Cl = B.transpose(1, 2), C.transpose(1, 2)  # (B, L, N)
    deltaA = torch.exp(dl.unsqueeze(-1) * A)  # (B, L, ED, N)
    BX = dl.unsqueeze(-1) * Bl.unsqueeze(2) * x.unsqueeze(-1)  # (B, L, ED, N)
    hs = pscan(deltaA, BX)  # (B, L, ED, N)
    y = (hs @ Cl.unsqueeze(-1)).squeeze(3) + D * x  # (B, L, ED)
    return y.transpose(1, 2)  # (B, ED, L)


def pkd_backend(name: str, lanes: int | None = None) -> Scan:
    """selective_scan on backend `name`, the fused kernel forced to `lanes` SIMD lanes when given."""

    def run(u, delta, A, B, C, D):
        os.environ[ssm.BACKEND_ENV] = name
        if lanes is not None:
            os.environ[LANES_ENV] = str(lanes)
        try:
            return ssm.selective_scan(u, delta, A, B, C, D)
        finally:
            os.environ.pop(ssm.BACKEND_ENV, None)
            if lanes is not None:
                os.environ.pop(LANES_ENV, None)

    return run


def inputs(length: int, batch: int, dim: int, nst: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, dim, length, generator=g)
    delta = torch.rand(batch, dim, length, generator=g) * 0.1 + 1e-3
    A = -torch.arange(1, nst + 1, dtype=torch.float32).repeat(dim, 1)  # (ED, N), Mamba's -exp(A_log) init
    B = torch.randn(batch, nst, length, generator=g)
    C = torch.randn(batch, nst, length, generator=g)
    D = torch.ones(dim)
    return [u, delta, A, B, C, D]


def time_fwd_bwd(fn: Scan, tensors: list[torch.Tensor], reps: int) -> tuple[float, torch.Tensor]:
    """Median seconds of forward + backward of sum(y * w) over reps runs, and the output of the last run.

    A first run under one second is a warm-up and is dropped; a slower one counts (warm-up is noise there).
    """
    w = torch.randn(tensors[0].shape, generator=torch.Generator().manual_seed(1))

    def once() -> tuple[float, torch.Tensor]:
        leaves = [t.clone().requires_grad_() for t in tensors]
        start = time.perf_counter()
        y = fn(*leaves)
        (y * w).sum().backward()
        return time.perf_counter() - start, y.detach()

    first, y = once()
    times = [] if first < 1.0 else [first]
    while len(times) < reps:
        elapsed, y = once()
        times.append(elapsed)
    return statistics.median(times), y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[28, 49, 64, 196, 784])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--nst", type=int, default=16)
    parser.add_argument("--lanes", type=int, nargs="*", default=[], choices=[4, 8, 16],
                        help="also time the cpp backend forced to these lane widths")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    have_kernel = ssm.build_cpu_kernel()
    try:
        import mambapy.pscan  # noqa: F401

        have_pscan = True
    except ImportError:
        have_pscan = False
        print("mambapy not installed (pip install mambapy): pscan column skipped")
    print(describe_kernel())
    print(f"uptime: {os.popen('uptime').read().strip()}")
    print(f"batch {args.batch}, d_inner {args.dim}, N {args.nst}, fp32, fwd+bwd, {args.threads} threads, "
          f"median of {args.reps}; ratio = best baseline time / pkd time")
    header = f"{'L':>5} {'loop s':>9} {'pscan s':>9} {'cpp s':>9} {'torch s':>9} {'cpp x':>7} {'torch x':>8}" \
             f" {'cpp diff':>9} {'torch diff':>10}" + "".join(f" {f'cpp {w}l s':>9} {f'{w}l x':>6}" for w in args.lanes)
    print(header)
    for length in args.lengths:
        tensors = inputs(length, args.batch, args.dim, args.nst)
        t_loop, y_loop = time_fwd_bwd(lean_loop, tensors, args.reps)
        t_pscan = time_fwd_bwd(mambapy_pscan, tensors, args.reps)[0] if have_pscan else float("nan")
        best = min(t_loop, t_pscan) if have_pscan else t_loop
        row = {}
        for name in ("cpp", "torch"):
            if name == "cpp" and not have_kernel:
                row[name] = (float("nan"), float("nan"))
                continue
            t, y = time_fwd_bwd(pkd_backend(name), tensors, args.reps)
            row[name] = (t, (y - y_loop).abs().max().item())
        forced = [time_fwd_bwd(pkd_backend("cpp", w), tensors, args.reps)[0] if have_kernel else float("nan")
                  for w in args.lanes]
        (t_cpp, d_cpp), (t_torch, d_torch) = row["cpp"], row["torch"]
        print(f"{length:>5} {t_loop:>9.4f} {t_pscan:>9.4f} {t_cpp:>9.4f} {t_torch:>9.4f} {best / t_cpp:>7.1f}"
              f" {best / t_torch:>8.2f} {d_cpp:>9.1e} {d_torch:>10.1e}"
              + "".join(f" {t:>9.4f} {best / t:>6.1f}" for t in forced), flush=True)


if __name__ == "__main__":
    main()
