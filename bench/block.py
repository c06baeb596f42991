"""Mamba block speed on CPU: pkd's `Mamba` vs mamba.py's `MambaBlock` with the same weights, side by side.

Times forward + backward (median of --reps, the two blocks interleaved rep by rep so load changes hit both) at
the MNIST-rows student size (batch 128, L 28, d_model 32, d_state 16, expand 2), prints both, their ratio
(target >= 1.5x) and the max output / gradient differences (expected <= 1e-5). Asserts nothing.

    python bench/block.py --reps 30 --threads 2 [--build] [--lanes 8 16]

It prints the CPU, its vector extension and the kernel's lane width first; ``--lanes`` adds pkd's block at each
forced kernel width (``PKD_SCAN_LANES``), interleaved with the others, so widths compare on one machine in one run.
``--unfused-dt`` adds pkd's block with dt = softplus(delta + bias) computed in torch before the kernel (how the
kernel ran before it fused them); ``--build-flags "-mno-avx512f"`` adds pkd's block on a second build of the kernel
made with those extra compiler flags (``PKD_KERNEL_CFLAGS``; that one builds the AVX2 kernel on an AVX-512 CPU,
which is not an AVX2-only CPU: torch's own ops still use AVX-512 here).

pkd's speed comes mostly from the selective-scan backend (`pkd.ssm.scan_backend()`); `--build` builds the fused
C++ kernel first when it is not built. Needs `pip install mambapy`.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pkd import ssm  # noqa: E402
from pkd.models.mamba import Mamba  # noqa: E402
from pkd.ssm.cpu_kernel import LANES_ENV, describe_kernel  # noqa: E402


def step_fn(block: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> Callable[[], torch.Tensor]:
    """One forward + backward of block on x (B, L, D), seeding the backward with grad (B, L, D)."""

    def step() -> torch.Tensor:
        block.zero_grad(set_to_none=True)
        x.grad = None
        y = block(x)  # (B, L, D)
        y.backward(grad)
        return y

    return step


def with_lanes(step: Callable[[], torch.Tensor], lanes: int) -> Callable[[], torch.Tensor]:
    """step with the fused kernel forced to `lanes` SIMD lanes ($PKD_SCAN_LANES) while it runs."""

    def run() -> torch.Tensor:
        old = os.environ.get(LANES_ENV)
        os.environ[LANES_ENV] = str(lanes)
        try:
            return step()
        finally:
            if old is None:
                os.environ.pop(LANES_ENV, None)
            else:
                os.environ[LANES_ENV] = old

    return run


def with_unfused_dt(step: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    """step with the dt activation in torch: the layer's scan gets softplus(delta + bias) and no bias/softplus."""
    import pkd.models.mamba as mamba_module

    def scan_unfused(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, **kw):
        dt = delta if delta_bias is None else delta + delta_bias[None, :, None]
        dt = torch.nn.functional.softplus(dt) if delta_softplus else dt
        return ssm.selective_scan(u, dt, A, B, C, D, z=z, **kw)

    def run() -> torch.Tensor:
        mamba_module.selective_scan = scan_unfused
        try:
            return step()
        finally:
            mamba_module.selective_scan = ssm.selective_scan

    return run


def set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


@functools.lru_cache(maxsize=None)
def other_build(flags: str):
    """The fused kernel module built with extra compiler flags (built once if missing); this process's own build
    stays the one selective_scan uses."""
    from pkd.ssm import cpu_kernel

    old_env, own = os.environ.get("PKD_KERNEL_CFLAGS"), cpu_kernel.KERNEL.module
    set_env("PKD_KERNEL_CFLAGS", flags)
    cpu_kernel._kernel_key.cache_clear()
    cpu_kernel.KERNEL.module = None
    try:
        if not cpu_kernel.build_cpu_kernel(verbose=False):
            sys.exit(f"cannot build the kernel with PKD_KERNEL_CFLAGS={flags!r}: {cpu_kernel.KERNEL.error}")
        module = cpu_kernel.KERNEL.module
    finally:
        set_env("PKD_KERNEL_CFLAGS", old_env)
        cpu_kernel._kernel_key.cache_clear()
        cpu_kernel.KERNEL.module = own
    print(f"second build (PKD_KERNEL_CFLAGS={flags!r}): {module.vector_isa()}, {module.preferred_lanes()} lanes")
    return module


def with_build(step: Callable[[], torch.Tensor], flags: str) -> Callable[[], torch.Tensor]:
    """step on the kernel built with extra flags, at the lane width that build prefers."""
    from pkd.ssm import cpu_kernel

    other = other_build(flags)

    def run() -> torch.Tensor:
        own, old_lanes = cpu_kernel.KERNEL.module, os.environ.get(LANES_ENV)
        cpu_kernel.KERNEL.module = other
        os.environ[LANES_ENV] = str(other.preferred_lanes())
        try:
            return step()
        finally:
            cpu_kernel.KERNEL.module = own
            set_env(LANES_ENV, old_lanes)

    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seq-len", type=int, default=28)
    p.add_argument("--d-model", type=int, default=32)
    p.add_argument("--d-state", type=int, default=16)
    p.add_argument("--expand", type=int, default=2)
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--build", action="store_true", help="build pkd's C++ scan kernel first if it is missing")
    p.add_argument("--lanes", type=int, nargs="*", default=[], choices=[4, 8, 16],
                   help="also time pkd's block with the kernel forced to these lane widths")
    p.add_argument("--unfused-dt", action="store_true",
                   help="also time pkd's block with softplus(delta + bias) in torch, outside the kernel")
    p.add_argument("--build-flags", default=None,
                   help='also time pkd\'s block on a kernel built with these extra flags, e.g. "-mno-avx512f"')
    args = p.parse_args()

    try:
        from mambapy.mamba import MambaBlock, MambaConfig
    except ImportError:
        sys.exit("bench/block.py needs mamba.py: pip install mambapy")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.build and hasattr(ssm, "build_cpu_kernel") and ssm.scan_backend() != "cpp":
        print("building the C++ scan kernel ...", flush=True)
        ssm.build_cpu_kernel(verbose=False)

    backend = ssm.scan_backend() if hasattr(ssm, "scan_backend") else "n/a (pkd.ssm has no scan_backend)"
    print(describe_kernel())
    print(f"load average {os.getloadavg()[0]:.2f}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"pkd scan backend: {backend}")
    print(f"batch {args.batch}, L {args.seq_len}, d_model {args.d_model}, d_state {args.d_state}, "
          f"expand {args.expand}, fp32, forward + backward, median of {args.reps}")

    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    ours = Mamba(args.d_model, d_state=args.d_state, expand=args.expand)
    blocks = {"pkd Mamba": ours}
    for name, pscan in (("mambapy MambaBlock (pscan)", True), ("mambapy MambaBlock (sequential)", False)):
        cfg = MambaConfig(d_model=args.d_model, n_layers=1, d_state=args.d_state, expand_factor=args.expand,
                          pscan=pscan)
        ref = MambaBlock(cfg)
        ref.load_state_dict(ours.state_dict())  # same key names and shapes: loads unchanged
        blocks[name] = ref

    x = torch.randn(args.batch, args.seq_len, args.d_model, generator=gen)
    g = torch.randn(args.batch, args.seq_len, args.d_model, generator=gen)
    inputs = {name: x.clone().requires_grad_() for name in blocks}
    steps = {name: step_fn(b, inputs[name], g) for name, b in blocks.items()}
    for lanes in args.lanes:
        name = f"pkd Mamba, {lanes} lanes"
        inputs[name] = x.clone().requires_grad_()
        blocks[name] = ours
        steps[name] = with_lanes(step_fn(ours, inputs[name], g), lanes)
    extra = {}
    if args.unfused_dt:
        extra["pkd Mamba, dt in torch"] = with_unfused_dt
    if args.build_flags:
        extra[f"pkd Mamba, {args.build_flags} build"] = lambda step: with_build(step, args.build_flags)
        if args.unfused_dt:
            extra[f"pkd Mamba, {args.build_flags}, dt in torch"] = lambda step: with_unfused_dt(
                with_build(step, args.build_flags))
    for name, wrap in extra.items():
        inputs[name] = x.clone().requires_grad_()
        blocks[name] = ours
        steps[name] = wrap(step_fn(ours, inputs[name], g))

    outs = {name: step().detach() for name, step in steps.items()}
    base = "pkd Mamba"
    for name in blocks:
        if name == base or blocks[name] is ours:
            continue
        dy = (outs[name] - outs[base]).abs().max().item()
        dx = (inputs[name].grad - inputs[base].grad).abs().max().item()
        dw = max((pa.grad - pb.grad).abs().max().item()
                 for pa, pb in zip(blocks[base].parameters(), blocks[name].parameters()))
        print(f"max |diff| vs {name}: output {dy:.2e}, input grad {dx:.2e}, weight grads {dw:.2e} "
              f"({'within' if max(dy, dx) <= 1e-5 else 'OUTSIDE'} 1e-5)")

    for _ in range(args.warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in blocks}
    for _ in range(args.reps):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)

    med = {name: statistics.median(ts) for name, ts in times.items()}
    print(f"{'block':34s} {'median ms':>10s} {'min ms':>8s} {'samples/s':>10s} {'pkd speed-up':>13s}")
    for name, ts in times.items():
        print(f"{name:34s} {med[name] * 1e3:10.2f} {min(ts) * 1e3:8.2f} {args.batch / med[name]:10.0f} "
              f"{med[name] / med[base]:12.2f}x")
    best_ref = min(v for k, v in med.items() if blocks[k] is not ours)
    print(f"pkd vs the faster mamba.py mode: {best_ref / med[base]:.2f}x (target >= 1.5x)")


if __name__ == "__main__":
    main()
