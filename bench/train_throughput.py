"""Training throughput at world size 1 and 2 (and on every GPU present), side by side in one run.

Each measurement is a real `python -m pkd train` run (torchrun for 2 processes) of configs/tiny.yaml on a larger
slice of MNIST; samples per second come from the epoch records' `seconds` in metrics.jsonl (a teacher epoch and a
student epoch). Scaling efficiency = (samples/s at N processes) / (N x samples/s at 1 process).

    python bench/train_throughput.py [--train-limit 8192] [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pkd.runs import Run  # noqa: E402


def measure(folder: Path, nproc: int, device: str, train_limit: int) -> dict[str, float]:
    """Samples per second of the teacher's epoch and of student 2's last epoch in one run."""
    path = folder / f"{device}-{nproc}"
    command = [sys.executable, "-m", "pkd", "train", "--config", "configs/tiny.yaml", "--run-dir", str(path),
               "--no-progress", "--device", device, f"data.train_limit={train_limit}", "teacher.optim.epochs=1",
               "students.optim.epochs=1", "students.optim.batch_size=64"]
    if nproc > 1:
        command += ["--nproc", str(nproc)]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"training failed ({device}, {nproc} processes):\n{proc.stderr[-2000:]}")
    epochs = [r for r in Run(path).metrics() if r.get("event") == "epoch"]
    teacher = next(r for r in epochs if r["stage"] == "teacher")
    student = [r for r in epochs if r["stage"] == "student"][-1]
    return {"teacher": train_limit / teacher["seconds"], "student": train_limit / student["seconds"]}


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-limit", type=int, default=8192)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="pkd-throughput-"))
    setups = [("cpu", 1), ("cpu", 2)]
    if torch.cuda.is_available():
        setups += [("cuda", 1)] + ([("cuda", torch.cuda.device_count())] if torch.cuda.device_count() > 1 else [])
    results = {setup: measure(folder, setup[1], setup[0], args.train_limit) for setup in setups}
    from pkd.ssm.cpu_kernel import describe_kernel  # after the runs: the kernel they built is in the cache

    print(describe_kernel())
    print(f"{'device':<6} {'procs':>5} {'teacher samples/s':>18} {'student samples/s':>18} {'efficiency (t/s)':>17}")
    for (device, nproc), r in results.items():
        base = results[(device, 1)]
        eff = f"{r['teacher'] / (nproc * base['teacher']):.2f}/{r['student'] / (nproc * base['student']):.2f}"
        print(f"{device:<6} {nproc:>5} {r['teacher']:>18,.0f} {r['student']:>18,.0f} {eff:>17}")
    if args.keep:
        print(f"runs kept in {folder}")
    else:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
