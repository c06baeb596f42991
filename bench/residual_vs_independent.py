"""Residual against independent students over several seeds: for each seed the same config is trained twice,
once in residual mode (with the given distill overrides) and once independently, and each prefix's test accuracy
is compared pair by pair. Prints the per-seed table, the mean paired difference with its standard error, and how
many seeds residual wins; asserts nothing.

    python bench/residual_vs_independent.py                       # the shipped video students, 5 seeds: ~40 min
    python bench/residual_vs_independent.py --seeds 0 1 --residual distill.mode=residual distill.solo_weight=0.8

Every run is a real `python -m pkd train --teacher-ref` subprocess (the config's teacher.checkpoint is shared, its
logits cache read), one thread each, --workers at a time, in a temporary folder (kept with --keep). A single seed
decides nothing here: on 2,000 test clips two seeds of the same recipe differ by up to a point and a half.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pkd.runs import Run  # noqa: E402

RESIDUAL = ["distill.mode=residual", "distill.solo_weight=0.5", "distill.prefix_loss=mean"]
INDEPENDENT = ["distill.mode=independent", "distill.learn_prev_scale=false", "distill.solo_weight=0",
               "distill.prefix_loss=sum"]


def train(config: str, overrides: list[str], run_dir: Path) -> list[float]:
    """Test accuracy of every prefix of one real `pkd train` run of `config` with `overrides`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "pkd", "train", "--config", config, "--run-dir", str(run_dir),
                           "--no-progress", "--teacher-ref", *overrides], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"training failed ({' '.join(overrides)}):\n{proc.stderr[-2000:]}")
    return [row["prefix_acc"] for row in Run(run_dir).prefix_table()]


def report(seeds: list[int], residual: dict[int, list[float]], independent: dict[int, list[float]]) -> None:
    """Per-seed accuracies and paired differences (points), then their mean, standard error and wins."""
    k = len(residual[seeds[0]])
    print(f"{'seed':>4} {'k':>2} {'residual':>9} {'independent':>11} {'difference':>10}")
    diffs = {j: [] for j in range(k)}
    for seed in seeds:
        for j in range(k):
            diff = 100 * (residual[seed][j] - independent[seed][j])
            diffs[j].append(diff)
            print(f"{seed:>4} {j + 1:>2} {100 * residual[seed][j]:>8.2f}% {100 * independent[seed][j]:>10.2f}% "
                  f"{diff:>+10.2f}")
    print(f"\n{'k':>2} {'mean difference':>15} {'std. error':>10} {'residual ahead':>14}")
    for j in range(k):
        error = statistics.stdev(diffs[j]) / len(diffs[j]) ** 0.5 if len(diffs[j]) > 1 else float("nan")
        ahead = sum(d > 0 for d in diffs[j])
        print(f"{j + 1:>2} {statistics.mean(diffs[j]):>+15.2f} {error:>10.2f} {ahead:>8} of {len(diffs[j])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/moving-mnist-independent.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--residual", nargs="+", default=RESIDUAL, help="overrides of the residual runs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the run folders (printed)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="pkd-residual-"))
    jobs = {(mode, seed): (overrides + [f"seed={seed}"], folder / f"{mode}-{seed}")
            for seed in args.seeds for mode, overrides in (("residual", args.residual), ("independent", INDEPENDENT))}
    with ThreadPoolExecutor(args.workers) as pool:
        futures = {key: pool.submit(train, args.config, *job) for key, job in jobs.items()}
    done = {key: future.result() for key, future in futures.items()}
    print(f"config {args.config}; residual: {' '.join(args.residual)}\n")
    report(args.seeds, {s: done["residual", s] for s in args.seeds}, {s: done["independent", s] for s in args.seeds})
    if args.keep:
        print(f"\nruns kept in {folder}")
    else:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
