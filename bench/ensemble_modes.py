"""Ensemble modes side by side: the same teacher, students and seed distilled as a plain residual sum (B-DISTIL),
a residual sum with learned scales (distill.learn_prev_scale) and independently. Prints each prefix's test
accuracy and the learned scales; asserts nothing.

    python bench/ensemble_modes.py                      # configs/mnist.yaml students, about 20 min on 2 cores
    python bench/ensemble_modes.py --config configs/mnist-quick.yaml   # about 6 min

The teacher is loaded from --teacher (default: the shipped run's), so only the students are trained; each mode
is a real `python -m pkd train` subprocess in a temporary runs folder (kept with --keep).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pkd.runs import Run  # noqa: E402

MODES = {
    "residual, plain sum": ["distill.mode=residual", "distill.learn_prev_scale=false"],
    "residual, learned s_k": ["distill.mode=residual", "distill.learn_prev_scale=true"],
    "independent": ["distill.mode=independent", "distill.learn_prev_scale=false"],
}


def train(config: str, teacher: str, overrides: list[str], run_dir: Path) -> Run:
    """One run of `config` with the given overrides (a real `pkd train` subprocess)."""
    proc = subprocess.run([sys.executable, "-m", "pkd", "train", "--config", config, "--run-dir", str(run_dir),
                           "--no-progress", f"teacher.checkpoint={teacher}", "teacher.optim.epochs=0", *overrides],
                          cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"training failed ({' '.join(overrides)}):\n{proc.stderr[-2000:]}")
    return Run(run_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/mnist.yaml")
    parser.add_argument("--teacher", default="pretrained/mnist/teacher.pt")
    parser.add_argument("--keep", action="store_true", help="keep the run folders (printed)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="pkd-modes-"))
    tables = {}  # mode name -> prefix.csv rows
    for i, (name, overrides) in enumerate(MODES.items()):
        started = time.perf_counter()
        tables[name] = train(args.config, args.teacher, overrides, folder / f"mode{i}").prefix_table()
        print(f"{name}: {time.perf_counter() - started:.0f} s", flush=True)
    teacher_acc = Run(folder / "mode0").summary()["teacher"]["test_acc"]
    print(f"\nconfig {args.config}, teacher test accuracy {100 * teacher_acc:.2f}%")
    print(f"{'k':>2} {'cum. FLOPs':>11} {'% teacher':>9}" + "".join(f" {name:>22}" for name in tables))
    for j, row in enumerate(next(iter(tables.values()))):
        cells = []
        for rows in tables.values():
            scale = rows[j].get("prev_scale")
            note = f" (s={scale:.2f})" if scale not in (None, 1.0) else ""
            cells.append(f"{100 * rows[j]['prefix_acc']:.2f}%{note}")
        print(f"{row['k']:>2} {row['cumulative_flops']:>11,} {100 * row['share_of_teacher']:>8.2f}%"
              + "".join(f" {cell:>22}" for cell in cells))
    if args.keep:
        print(f"\nruns kept in {folder}")
    else:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
