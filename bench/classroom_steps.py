"""One training step (forward + backward + AdamW, batch 128) of each classroom-run student, the fused kernel's conv and
dt activation against torch's, interleaved rep by rep in one process.

The students are configs/mnist-quick.yaml's (the Train page's first offer). Variants: "fused" (what trains now: the
kernel runs Mamba's conv1d + SiLU and dt = softplus(delta + bias)), "dt in torch" (softplus in torch before the
kernel), "conv and dt in torch" (both in torch: how the kernel ran before), and with ``--lanes 16`` the fused
kernel forced to 16 lanes. Ratios are each variant's median over "fused". Asserts nothing.

    python bench/classroom_steps.py --reps 15 [--lanes 16]

Run it under ``ATEN_CPU_CAPABILITY=avx2 PKD_KERNEL_CFLAGS=-mno-avx512f`` to see torch's and the kernel's AVX2 code
on an AVX-512 CPU (still not an AVX2-only CPU: same caches and clocks).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import pkd.models.mamba as mamba_module  # noqa: E402
from pkd import ssm  # noqa: E402
from pkd.models.student import MambaClassifier  # noqa: E402
from pkd.ssm.cpu_kernel import LANES_ENV, describe_kernel  # noqa: E402


def torch_conv_silu(x, weight, bias):
    return F.silu(F.conv1d(x, weight, bias, padding=weight.shape[-1] - 1, groups=x.shape[1])[..., :x.shape[2]])


def scan_dt_in_torch(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, **kw):
    dt = delta if delta_bias is None else delta + delta_bias[None, :, None]
    return ssm.selective_scan(u, F.softplus(dt) if delta_softplus else dt, A, B, C, D, z=z, **kw)


@contextlib.contextmanager
def variant(name: str):
    """Patch the Mamba layer's conv / scan entry points (and the lane width) for one variant."""
    saved = (mamba_module.causal_conv1d_silu, mamba_module.selective_scan, os.environ.get(LANES_ENV))
    if "dt in torch" in name:
        mamba_module.selective_scan = scan_dt_in_torch
    if "conv" in name:
        mamba_module.causal_conv1d_silu = torch_conv_silu
    if name.endswith("lanes"):
        os.environ[LANES_ENV] = name.split()[-2]
    try:
        yield
    finally:
        mamba_module.causal_conv1d_silu, mamba_module.selective_scan = saved[:2]
        if saved[2] is None:
            os.environ.pop(LANES_ENV, None)
        else:
            os.environ[LANES_ENV] = saved[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lanes", type=int, nargs="*", default=[], choices=[4, 8, 16])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not ssm.build_cpu_kernel(verbose=False):
        sys.exit("the fused kernel does not build here")
    cfg = yaml.safe_load((ROOT / "configs" / "mnist-quick.yaml").read_text())["students"]
    batch = cfg["optim"]["batch_size"]
    print(describe_kernel())
    print(f"load average {os.getloadavg()[0]:.2f}, {torch.get_num_threads()} threads, ATEN_CPU_CAPABILITY="
          f"{os.environ.get('ATEN_CPU_CAPABILITY', 'default')}, batch {batch}, median of {args.reps}")
    names = ["fused", "dt in torch", "conv and dt in torch"] + [f"fused, {w} lanes" for w in args.lanes]
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(batch, 1, 28, 28, generator=g), torch.randint(0, 10, (batch,), generator=g)
    for k, size in enumerate(cfg["schedule"], start=1):
        spec = {**cfg["common"], **{key: v for key, v in size.items() if key != "optim"}}
        torch.manual_seed(0)
        model = MambaClassifier(**spec)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        times: dict[str, list[float]] = {name: [] for name in names}
        for rep in range(args.reps + 2):  # two warm-up rounds
            for name in names:
                with variant(name):
                    t0 = time.perf_counter()
                    loss = F.cross_entropy(model(x), y)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    if rep >= 2:
                        times[name].append(time.perf_counter() - t0)
        base = statistics.median(times["fused"])
        print(f"student {k} {spec}: " + " | ".join(
            f"{name} {statistics.median(v) * 1e3:.1f} ms ({statistics.median(v) / base:.2f}x)"
            for name, v in times.items()), flush=True)


if __name__ == "__main__":
    main()
