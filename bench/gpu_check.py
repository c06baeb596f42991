"""One prepared GPU check: does pkd train and serve on this GPU? Every figure and every failure in one report.

    bash bench/gpu_check.sh [REPORT_DIR]       # on the GPU machine: installs .gpu/wheels first (bench/gpu_wheels.sh)
    python bench/gpu_check.py --out DIR        # the same, without the wheel install
    python bench/gpu_check.py --out DIR --rehearse   # every step on the CPU at toy sizes: the check's own test

Without a CUDA GPU (and without --rehearse) it prints one line and exits 0, so it sits in the tree and runs in CI's
style. Steps, each under its own time limit (about 6 minutes in all on one H100, 8 at most):
  environment     GPU, torch, CUDA, pkd's scan backends, whether mamba-ssm's kernel imports and matches the reference
  scan_tests      the CUDA tests of tests/ssm (the torch scan on CUDA always; mamba-ssm's only where it imports)
  scan_timing     forward + backward of the selective scan at the shipped MNIST students' sizes, per backend
  training        configs/mnist-quick.yaml on the CPU, on CUDA in fp32 and in bf16: accuracy per prefix, wall time
  throughput      samples/s of a teacher epoch and a student epoch, CUDA against CPU (bench/train_throughput.py)
  inference       the app's inference path (pkd.inference.predict_digit) on CUDA against the CPU, on test digits
Writes REPORT_DIR/gpu_check.json and REPORT_DIR/gpu_check.md; exits 1 if a step that should work did not.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

DEADLINE_S = 8 * 60  # the whole check on a GPU; a step not reached in time is a failure
REHEARSAL_DEADLINE_S = 30 * 60  # the toy rehearsal on a (possibly busy) 2-core CPU
ACC_TOLERANCE = 1.0  # points: a GPU run's final prefix may differ from the CPU run's by this much (other numerics)


class Check:
    """The check's settings and the report it fills: `steps` is a list of {name, status, seconds, figures, error}."""

    def __init__(self, out: Path, rehearse: bool) -> None:
        self.out = out
        self.rehearse = rehearse
        self.device = "cpu" if rehearse else "cuda"
        self.config = "configs/tiny.yaml" if rehearse else "configs/mnist-quick.yaml"
        self.train_limit = 256 if rehearse else 8192
        self.started = time.monotonic()
        self.steps: list[dict] = []

    def left_s(self) -> float:
        return (REHEARSAL_DEADLINE_S if self.rehearse else DEADLINE_S) - (time.monotonic() - self.started)

    def step(self, name: str, body: Callable[[], dict], needed: bool = True) -> dict | None:
        """Runs one step, recording its figures or its failure; a step that is not `needed` may be skipped."""
        record = {"name": name, "status": "ok", "seconds": 0.0, "figures": {}, "error": None}
        begun = time.monotonic()
        if self.left_s() <= 0:
            record.update(status="failed", error="not reached within the check's time")
        else:
            try:
                record["figures"] = body()
            except Skip as skip:
                record.update(status="skipped", error=str(skip))
            except Exception as exc:  # noqa: BLE001 - every failure goes into the report, and the check goes on
                record.update(status="failed" if needed else "skipped", error=f"{type(exc).__name__}: {exc}",
                              traceback=traceback.format_exc(limit=4))
        record["seconds"] = round(time.monotonic() - begun, 1)
        self.steps.append(record)
        print(f"[{record['status']:>7}] {name} ({record['seconds']} s){': ' + record['error'] if record['error'] else ''}",
              flush=True)
        return record["figures"] if record["status"] == "ok" else None


class Skip(Exception):
    """A step that does not apply on this machine (e.g. mamba-ssm not installed): reported, not a failure."""


def run_pkd(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    """`python -m pkd ARGS` from the repository root; raises with the last lines of stderr when it fails."""
    proc = subprocess.run([sys.executable, "-m", "pkd", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=max(timeout, 1))
    if proc.returncode != 0:
        raise RuntimeError(f"pkd {args[0]} exited {proc.returncode}: {proc.stderr.strip().splitlines()[-3:]}")
    return proc


# ----------------------------------------------------------------------------------------------------- steps

def environment(check: Check) -> dict:
    from pkd.ssm import available_backends, scan_backend

    figures = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
               "cpu": platform.processor() or platform.machine(), "scan_backends": available_backends(),
               "scan_backend_cuda": scan_backend("cuda") if torch.cuda.is_available() else None}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        figures.update(gpu=props.name, capability=f"{props.major}.{props.minor}",
                       gpu_memory_gib=round(props.total_memory / 2**30, 1), gpus=torch.cuda.device_count())
    figures["mamba_ssm"] = mamba_ssm_state()
    return figures


def mamba_ssm_state() -> str:
    """'missing', 'works (max error E)' or 'fails: ...': mamba-ssm's selective_scan_fn against pkd's reference."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception as exc:  # noqa: BLE001 - any import failure (missing, wrong CUDA build) is a state
        return f"missing ({type(exc).__name__})"
    if not torch.cuda.is_available():
        return "imports, but no GPU to run it"
    from pkd.ssm import selective_scan_ref

    try:
        inputs = scan_inputs(batch=2, d_inner=32, d_state=8, length=28, device="cuda")
        got = selective_scan_fn(*inputs, delta_softplus=True)
        want = selective_scan_ref(*inputs, delta_softplus=True)
        return f"works (max error {float((got - want).abs().max()):.2e})"
    except Exception as exc:  # noqa: BLE001
        return f"fails: {type(exc).__name__}: {exc}"


def scan_inputs(batch: int, d_inner: int, d_state: int, length: int, device: str) -> tuple[torch.Tensor, ...]:
    """u, delta (B, D, L); A (D, N); B, C (B, N, L); D (D,): the shapes selective_scan takes."""
    g = torch.Generator().manual_seed(0)
    u = torch.randn(batch, d_inner, length, generator=g)
    delta = torch.randn(batch, d_inner, length, generator=g) * 0.5
    A = -torch.rand(d_inner, d_state, generator=g) - 0.5
    B = torch.randn(batch, d_state, length, generator=g)
    C = torch.randn(batch, d_state, length, generator=g)
    D = torch.randn(d_inner, generator=g)
    return tuple(t.to(device) for t in (u, delta, A, B, C, D))


def scan_tests(check: Check) -> dict:
    if check.rehearse:
        raise Skip("rehearsal on the CPU: the CUDA tests would all skip")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-o", "addopts=", "-p", "no:cacheprovider",
                           "tests/ssm", "-k", "cuda"], cwd=ROOT, capture_output=True, text=True,
                          timeout=min(240, check.left_s()))
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:]
    if proc.returncode != 0:
        raise RuntimeError(f"pytest exited {proc.returncode}: {tail}")
    return {"summary": tail}


def student_sizes() -> list[dict]:
    """(d_inner, d_state, tokens) of each student of the shipped MNIST run, from its resolved config."""
    from pkd.runs import Run

    cfg = Run(ROOT / "pretrained" / "mnist").config()["students"]
    sizes = []
    for stage in cfg["schedule"]:
        merged = {**cfg.get("common", {}), **stage}
        tokens = 28 // merged.get("rows_per_token", 1) if merged.get("tokens", "rows") == "rows" else 784
        sizes.append({"d_inner": merged.get("expand", 2) * merged["d_model"], "d_state": merged["d_state"],
                      "tokens": tokens})
    return sizes


def time_scan(device: str, backend: str, size: dict, batch: int, repeats: int) -> float:
    """Median milliseconds of one forward + backward of the selective scan on `backend`."""
    from pkd.ssm import selective_scan, use_backend

    u, delta, A, B, C, D = scan_inputs(batch, size["d_inner"], size["d_state"], size["tokens"], device)
    for t in (u, delta, A, B, C):
        t.requires_grad_(True)
    times = []
    with use_backend(backend):
        for i in range(repeats + 2):  # two warm-up calls
            if device == "cuda":
                torch.cuda.synchronize()
            begun = time.perf_counter()
            selective_scan(u, delta, A, B, C, D, delta_softplus=True).sum().backward()
            if device == "cuda":
                torch.cuda.synchronize()
            if i >= 2:
                times.append((time.perf_counter() - begun) * 1000)
    return sorted(times)[len(times) // 2]


def scan_timing(check: Check) -> dict:
    from pkd.ssm import available_backends

    backends = ["torch"] + (["cuda"] if available_backends().get("cuda") is True else [])
    batch, repeats = (8, 1) if check.rehearse else (256, 10)
    rows = []
    for size in student_sizes():
        row = dict(size, batch=batch)
        for backend in backends:
            row[f"{backend}_ms"] = round(time_scan(check.device, backend, size, batch, repeats), 3)
        rows.append(row)
    return {"device": check.device, "rows": rows}


def train_one(check: Check, name: str, device: str, precision: str) -> dict:
    """One run of the check's config; returns its accuracy per prefix and wall time."""
    from pkd.runs import Run
    from pkd.runs.schema import PrefixRow, Summary

    path = check.out / "runs" / name
    overrides = [f"precision={precision}"]
    if check.rehearse:  # a toy run: a few hundred samples, one epoch per stage
        overrides += [f"data.train_limit={check.train_limit}", "teacher.optim.epochs=1", "students.optim.epochs=1"]
    begun = time.monotonic()
    run_pkd(["train", "--config", check.config, "--run-dir", str(path), "--no-progress", "--device", device,
             *overrides], timeout=check.left_s() if check.rehearse else min(180, check.left_s()))
    prefixes = Run(path).summary()[Summary.PREFIXES]
    return {"wall_s": round(time.monotonic() - begun, 1),
            "prefix_acc": [round(100 * row[PrefixRow.PREFIX_ACC], 2) for row in prefixes]}


def training(check: Check) -> dict:
    runs = {"fp32": train_one(check, "gpu-fp32", check.device, "fp32")}
    if check.rehearse:  # one toy run, compared with itself: the rehearsal tests the plumbing, not the numerics
        runs["cpu"] = runs["fp32"]
    else:  # the CPU run is the baseline; bf16 autocast is CUDA's
        runs["cpu"] = train_one(check, "cpu", "cpu", "fp32")
        runs["bf16"] = train_one(check, "gpu-bf16", check.device, "bf16")
    base = runs["cpu"]["prefix_acc"][-1]
    gaps = {name: round(r["prefix_acc"][-1] - base, 2) for name, r in runs.items() if name != "cpu"}
    off = {name: gap for name, gap in gaps.items() if abs(gap) > ACC_TOLERANCE}
    if off:
        raise RuntimeError(f"final-prefix accuracy differs from the CPU run's {base}% by {off} points "
                           f"(tolerance {ACC_TOLERANCE}); runs: {runs}")
    return {"config": check.config, "runs": runs, "gap_to_cpu_points": gaps}


def throughput(check: Check) -> dict:
    if check.rehearse:
        raise Skip("rehearsal on the CPU: bench/train_throughput.py measures the CPU itself")
    spec = importlib.util.spec_from_file_location("train_throughput", ROOT / "bench" / "train_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    folder = check.out / "throughput"
    folder.mkdir(parents=True, exist_ok=True)
    figures = {device: module.measure(folder, 1, device, check.train_limit) for device in {"cpu", check.device}}
    figures["speedup"] = {part: round(figures[check.device][part] / figures["cpu"][part], 2)
                          for part in ("teacher", "student")}
    return figures


def inference(check: Check) -> dict:
    """predict_digit on test digits with the fp32 run's models on the check's device against the same on the CPU."""
    from pkd.artifacts import load_ensemble, load_teacher
    from pkd.data import get_dataset_spec, load_split
    from pkd.inference import predict_digit
    from pkd.runs import Run

    run = Run(check.out / "runs" / "gpu-fp32")
    spec = get_dataset_spec(run.setting("data", "dataset"))
    test = load_split(run.setting("data", "dataset"), "test")
    models = {device: (load_ensemble(run, device=device), load_teacher(run, device=device))
              for device in {"cpu", check.device}}
    worst, disagree, n = 0.0, 0, 32 if check.rehearse else 256
    for i in range(n):
        answers = {}
        for device, (ensemble, teacher) in models.items():
            report = predict_digit(ensemble, spec, test.inputs[i].to(device), teacher=teacher)
            answers[device] = torch.tensor(report.prefix_probs)  # (K, C)
        worst = max(worst, float((answers[check.device] - answers["cpu"]).abs().max()))
        disagree += int((answers[check.device].argmax(-1) != answers["cpu"].argmax(-1)).any())
    if worst > 1e-3 or disagree:
        raise RuntimeError(f"{check.device} answers differ from the CPU's: max |dp| {worst:.2e}, "
                           f"{disagree} of {n} digits with another answer")
    return {"digits": n, "max_prob_difference": float(f"{worst:.3e}"), "other_answers": disagree}


# ---------------------------------------------------------------------------------------------------- report

def write_report(check: Check) -> bool:
    """gpu_check.json and gpu_check.md in check.out; True when no step failed."""
    ok = all(step["status"] != "failed" for step in check.steps)
    report = {"verdict": "ok" if ok else "failed", "rehearsal": check.rehearse, "steps": check.steps,
              "seconds": round(time.monotonic() - check.started, 1)}
    check.out.mkdir(parents=True, exist_ok=True)
    (check.out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    env = next((s["figures"] for s in check.steps if s["name"] == "environment"), {})
    lines = [f"# pkd GPU check: {report['verdict']}" + (" (rehearsal on the CPU)" if check.rehearse else ""), "",
             f"GPU {env.get('gpu', 'none')} (compute {env.get('capability', '-')}), torch {env.get('torch')}, "
             f"CUDA {env.get('cuda')}, Python {env.get('python')}; mamba-ssm: {env.get('mamba_ssm')}; "
             f"{report['seconds']} s in all.", "", "| step | status | seconds | figures or error |",
             "|---|---|---:|---|"]
    for step in check.steps:
        detail = step["error"] or json.dumps(step["figures"], default=str)
        lines.append(f"| {step['name']} | {step['status']} | {step['seconds']} | {detail.replace('|', '/')} |")
    (check.out / "gpu_check.md").write_text("\n".join(lines) + "\n")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "gpu-check-report", help="the report folder (made)")
    parser.add_argument("--rehearse", action="store_true", help="run every step on the CPU at toy sizes")
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.rehearse:
        print(f"no CUDA GPU here (torch {torch.__version__}): nothing to check, exiting 0")
        return 0
    out = args.out.expanduser().resolve()
    if out.exists() and any(out.iterdir()):
        print(f"error: the report folder {out} is not empty; name a new one with --out", file=sys.stderr)
        return 2
    check = Check(out, args.rehearse)
    check.step("environment", lambda: environment(check))
    check.step("scan_tests", lambda: scan_tests(check))
    check.step("scan_timing", lambda: scan_timing(check))
    trained = check.step("training", lambda: training(check))
    check.step("throughput", lambda: throughput(check))
    if trained is not None:
        check.step("inference", lambda: inference(check))
    ok = write_report(check)
    print(f"report: {out / 'gpu_check.md'} and gpu_check.json; verdict {'ok' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
