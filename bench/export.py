"""Exported prefixes vs eager PyTorch: parity on the whole test set, and latency side by side on pinned threads.

For every k of a run (default the shipped `pretrained/mnist`): export students 1..k to ONNX and to torch.export
(.pt2) in a temporary folder, then
- parity: max |exported - eager| over the logits and probabilities of all test images (10,000 for MNIST), and how
  many predictions are identical; eager is `PrefixModel` on the usual scan backend (the fused kernel when built);
- latency: batch 1 and batch 256, best of rounds, onnxruntime vs torch eager vs the .pt2 program in torch, all
  on `--threads` threads (onnxruntime intra-op threads = torch threads, one inter-op thread, no spin-waiting so
  it does not steal the cores from torch between calls); ratio = eager / ORT.

    python bench/export.py [--run pretrained/mnist] [--threads 2] [--rounds 7] [--skip-parity | --skip-latency]

Prints figures, asserts nothing. Check `uptime` first: on a shared 2-core machine the numbers move with the load.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from pkd import data as pkd_data  # noqa: E402
from pkd import export, ssm  # noqa: E402
from pkd.artifacts import load_ensemble  # noqa: E402
from pkd.runs import Run  # noqa: E402


def per_call_ms(fns: dict, pixels: torch.Tensor, rounds: int, calls: int) -> dict[str, float]:
    """Per function, the best over rounds of the mean time of `calls` calls in ms (after `calls` warm-up calls).

    The functions take turns within each round, so a change of load hits all of them alike, and the best round is
    reported (as timeit does): on a shared 2-core machine a busy neighbour only ever adds time, most to the many
    small parallel regions of a batch of 1.
    """
    for fn in fns.values():
        for _ in range(calls):
            fn(pixels)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                fn(pixels)
            times[name].append((time.perf_counter() - t0) / calls * 1e3)
    return {name: min(values) for name, values in times.items()}


def parity(fn, eager_out: list[torch.Tensor], pixels: torch.Tensor) -> tuple[float, int]:
    """(max abs difference over logits and probs, identical predictions) of an exported file on all of `pixels`."""
    outs = [fn(pixels[i:i + 500]) for i in range(0, len(pixels), 500)]
    logits, probs = (torch.cat([o[j] for o in outs]) for j in range(2))
    diff = max(float((logits - eager_out[0]).abs().max()), float((probs - eager_out[1]).abs().max()))
    return diff, int((logits.argmax(-1) == eager_out[0].argmax(-1)).sum())


def bench_prefix(run: Run, k: int, spec, test: torch.Tensor, args: argparse.Namespace, tmp: Path) -> dict:
    """Export students 1..k both ways and measure parity and latency; returns the figures of one table row."""
    model = export.PrefixModel(load_ensemble(run, k=k), spec).eval()
    row, files = {"k": k}, {}
    for fmt in export.FORMATS:
        t0 = time.perf_counter()
        files[fmt] = export.load_file(export.export_prefix(run, k, fmt, out=tmp), fmt)
        row[f"{fmt}_export_s"] = time.perf_counter() - t0
    session = export.onnx_session(tmp / export.default_name(k, "onnx"), args.threads, spinning=False)
    files["onnx"] = lambda pixels: [torch.from_numpy(a) for a in session.run(None, {"pixels": pixels.numpy()})]

    def eager(pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.inference_mode():
            return model(pixels)

    if not args.skip_parity:
        want = [torch.cat(parts) for parts in zip(*(eager(test[i:i + 500]) for i in range(0, len(test), 500)))]
        for fmt in export.FORMATS:
            row[f"{fmt}_diff"], row[f"{fmt}_same"] = parity(files[fmt], want, test)
    for batch, calls in () if args.skip_latency else ((1, 200), (256, 10)):
        timed = per_call_ms({"eager": eager, **files}, test[:batch].contiguous(), args.rounds, calls)
        row.update({f"{name}_{batch}": ms for name, ms in timed.items()})
    return row


def print_table(rows: list[dict], n_test: int) -> None:
    if "onnx_diff" in rows[0]:
        print(f"\nparity on {n_test:,} test images (max |exported - eager| over logits and probs; same predictions)")
        print(f"{'k':>2} {'ONNX diff':>10} {'same':>13} {'pt2 diff':>10} {'same':>13} {'export s (onnx/pt2)':>20}")
        for r in rows:
            print(f"{r['k']:>2} {r['onnx_diff']:>10.2e} {r['onnx_same']:>6,}/{n_test:<6,} {r['pt2_diff']:>10.2e} "
                  f"{r['pt2_same']:>6,}/{n_test:<6,} {r['onnx_export_s']:>11.1f} / {r['pt2_export_s']:.1f}")
    if "eager_1" not in rows[0]:
        return
    print("\nlatency per call, ms (best of rounds); ratio = torch eager / onnxruntime")
    print(f"{'k':>2} {'batch':>5} {'torch eager':>12} {'onnxruntime':>12} {'pt2 program':>12} {'eager/ORT':>10}")
    for r in rows:
        for batch in (1, 256):
            eager, ort, pt2 = r[f"eager_{batch}"], r[f"onnx_{batch}"], r[f"pt2_{batch}"]
            print(f"{r['k']:>2} {batch:>5} {eager:>12.3f} {ort:>12.3f} {pt2:>12.3f} {eager / ort:>9.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(ROOT / "pretrained" / "mnist"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--skip-parity", action="store_true", help="latency only")
    parser.add_argument("--skip-latency", action="store_true", help="parity only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    run = Run(Path(args.run))
    spec = pkd_data.get_dataset_spec(run.setting("data", "dataset"))
    test = pkd_data.load_split(spec.name, "test").inputs.float()
    print(f"run {run.path}: {run.students_saved()} students; torch {torch.__version__}, {args.threads} threads, "
          f"eager scan backend {ssm.scan_backend('cpu')}")
    with tempfile.TemporaryDirectory(prefix="pkd-bench-export-") as tmp:
        rows = [bench_prefix(run, k, spec, test, args, Path(tmp)) for k in range(1, run.students_saved() + 1)]
    print_table(rows, len(test))


if __name__ == "__main__":
    main()
