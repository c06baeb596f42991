"""Command line: `python -m pkd train | eval | predict | runs | backends` (each has --help)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from pkd.devices import DEVICES

logger = logging.getLogger("pkd")


def _setup_logging(log_file: Path | None = None, verbose: bool = False) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(fmt)
    root.addHandler(stream)
    if log_file is not None:
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(fmt)
        root.addHandler(file_handler)


class _Progress:
    """tqdm bar per stage (teacher, student k), fed by the training loop's progress callback."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None
        self.key = None

    def __call__(self, info: dict) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        key = (info["stage"], info["student"])
        if key != self.key:
            self.close()
            label = "teacher" if info["stage"] == "teacher" else f"student {info['student']}"
            self.bar = tqdm(total=100, desc=label, unit="%", leave=True, file=sys.stderr,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")
            self.key = key
        self.bar.n = int(100 * info["progress"])
        post = {"epoch": f"{info['epoch']}/{info['epochs']}"}
        if "loss" in info:
            post["loss"] = f"{info['loss']:.4f}"
        if "val_acc" in info:
            post["val_acc"] = f"{info['val_acc']:.4f}"
        self.bar.set_postfix(post, refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _open_run(args: argparse.Namespace):
    """The run `train` works on: the one to resume, or a new one, created only once its config has passed every
    check (models, device, scan backend). Returns (run, config)."""
    from pkd import train
    from pkd.config import config_from_dict, load_config
    from pkd.devices import resolve_device
    from pkd.runs import Run, State, default_runs_dir, resolve_run

    if args.resume:
        if args.config or args.overrides:
            raise ValueError("--resume continues a run with its saved config; drop --config and overrides")
        run = resolve_run(args.resume, args.runs_dir or default_runs_dir())
        cfg = config_from_dict(run.config())
        if run.state() == State.RUNNING:
            raise ValueError(f"run {run.name} is still running (pid {run.status().get('pid')}); stop it first")
        _check_scan_backend(resolve_device(args.device or cfg.device))
        return run, cfg
    cfg = load_config(args.config, args.overrides)
    train.check_models(cfg)
    _check_scan_backend(resolve_device(args.device or cfg.device))  # fail before creating anything
    if args.run_dir:
        return Run.create_at(Path(args.run_dir), cfg.to_dict(), command=sys.argv), cfg
    return Run.create(args.runs_dir or default_runs_dir(), cfg.name, cfg.to_dict(), command=sys.argv), cfg


def cmd_train(args: argparse.Namespace) -> int:
    from pkd import ssm, train
    from pkd.devices import resolve_device
    from pkd.runs import State, write_error

    run, cfg = _open_run(args)
    try:
        _setup_logging(run.log_path(), args.verbose)
    except OSError as exc:
        raise write_error(run.log_path(), exc) from None
    device = resolve_device(args.device or cfg.device)  # again, now that train.log records its choice
    run.mark_started(message=f"device {device}")
    logger.info("run %s: %s students, mode %s, device %s", run.path, cfg.students.k, cfg.distill.mode, device)
    if device.type == "cpu" and hasattr(ssm, "build_cpu_kernel") and not args.no_kernel_build:
        ssm.build_cpu_kernel(verbose=True)
    if hasattr(ssm, "scan_backend"):
        logger.info("selective scan backend: %s", ssm.scan_backend(device.type))
        run.write_status(scan_backend=ssm.scan_backend(device.type))
    train.install_stop_handler()
    progress = _Progress(enabled=not args.no_progress and sys.stderr.isatty())
    try:
        summary = train.train_run(run, device.type, progress)
    except train.StopRequested:
        progress.close()
        run.mark_ended(State.STOPPED, "stopped on request; continue with --resume")
        logger.info("stopped; continue with: python -m pkd train --resume %s", run.path)
        return 3
    except KeyboardInterrupt:
        progress.close()
        run.mark_ended(State.STOPPED, "interrupted; continue with --resume")
        return 130
    except Exception as exc:
        progress.close()
        run.mark_ended(State.FAILED, f"{exc.__class__.__name__}: {exc}")
        raise
    progress.close()
    run.mark_ended(State.DONE, "finished", progress=1.0)
    _print_table(summary)
    print(f"run directory: {run.path}")
    return 0


def _check_scan_backend(device) -> None:
    """Refuse a forced PKD_SCAN_BACKEND that cannot run on `device` before anything is created or trained."""
    from pkd import ssm

    if not hasattr(ssm, "scan_backend"):
        return
    backend = ssm.scan_backend(device.type)  # ValueError naming the choices for an unknown value
    if backend == "cuda" and device.type != "cuda":
        raise ValueError(f"{ssm.BACKEND_ENV}=cuda needs a CUDA GPU with a working mamba-ssm, but training runs on "
                         f"{device}; unset {ssm.BACKEND_ENV} (auto picks the fastest CPU scan) or set it to torch")
    if backend == "cpp" and device.type != "cpu":
        raise ValueError(f"{ssm.BACKEND_ENV}=cpp is the CPU kernel, but training runs on {device}; "
                         f"unset {ssm.BACKEND_ENV} or set it to torch")


def _print_table(summary: dict) -> None:
    teacher = summary.get("teacher", {})
    print(f"teacher {teacher.get('arch')}: {teacher.get('flops', 0):,} FLOPs/sample, "
          f"test acc {teacher.get('test_acc', float('nan')):.4f}")
    print(f"{'k':>3} {'student FLOPs':>14} {'cumulative':>12} {'% teacher':>10} {'prefix acc':>11} {'solo acc':>9}")
    for row in summary.get("prefixes", []):
        print(f"{row['k']:>3} {row['student_flops']:>14,} {row['cumulative_flops']:>12,} "
              f"{100 * row['share_of_teacher']:>9.2f}% {row['prefix_acc']:>11.4f} {row['solo_acc']:>9.4f}")


def cmd_eval(args: argparse.Namespace) -> int:
    from pkd.devices import resolve_device
    from pkd.evaluate import evaluate_run
    from pkd.runs import default_runs_dir, resolve_run

    _setup_logging(verbose=args.verbose)
    run = resolve_run(args.run, args.runs_dir or default_runs_dir())
    rows = evaluate_run(run, device=resolve_device(args.device))
    summary = run.summary()
    summary["prefixes"] = rows
    _print_table(summary)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from pkd import data as pkd_data
    from pkd import preprocess
    from pkd.artifacts import load_ensemble
    from pkd.runs import default_runs_dir, resolve_run

    _setup_logging(verbose=args.verbose)
    run = resolve_run(args.run, args.runs_dir or default_runs_dir())
    dataset = run.config()["data"]["dataset"]
    spec = pkd_data.get_dataset_spec(dataset)
    image = preprocess.load_image_file(args.image)
    x = preprocess.prepare_image(spec, image)
    if x is None:
        print("no digit found in the image (it is blank): nothing to classify")
        return 2
    if spec.sample_shape == (1, 28, 28) and preprocess.ink_extent(image) < preprocess.MIN_INK_EXTENT:
        print("too little ink in the image (a dot or a speck, not a digit): nothing to classify; draw the whole digit")
        return 2
    ensemble = load_ensemble(run)
    pred = ensemble.predict(spec.normalize(x[None]), k=args.k, flop_budget=args.flop_budget,
                            confidence=args.confidence)
    probs = pred.probs[0]
    top = torch.argsort(probs, descending=True)[:3]
    names = spec.class_names
    print(f"prediction: {names[int(pred.classes[0])]} (p={float(probs.max()):.3f}) using {int(pred.k_used[0])} of "
          f"{ensemble.k} students, {int(pred.flops[0]):,} FLOPs")
    print("top 3: " + ", ".join(f"{names[int(i)]} {float(probs[i]):.3f}" for i in top))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from pkd.runs import default_runs_dir, list_runs

    folders = args.dirs or [str(args.runs_dir or default_runs_dir()), "pretrained"]
    runs = list_runs(folders)
    if not runs:
        print(f"no runs in {', '.join(folders)}")
        return 0
    print(f"{'state':<8} {'dataset':<8} {'mode':<12} {'K':>5} {'teacher':>8} {'final':>7} {'% teacher':>10}  path")
    def number(value, fmt: str) -> str:  # "-" for figures a run does not have (yet)
        return format(value, fmt) if isinstance(value, (int, float)) else "-"

    for run in runs:
        info = run.info()
        share = f"{100 * info['final_share']:.2f}%" if isinstance(info["final_share"], (int, float)) else "-"
        print(f"{info['state']:<8} {info['dataset']:<8} {info['mode']:<12} {info['k_done']:>2}/{info['k_planned']:<2} "
              f"{number(info['teacher_acc'], '.4f'):>8} {number(info['final_acc'], '.4f'):>7} {share:>10}  "
              f"{info['path']}")
    return 0


def cmd_backends(args: argparse.Namespace) -> int:  # noqa: ARG001
    import torch

    from pkd import ssm

    print(f"torch {torch.__version__}; CUDA GPU: "
          f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
    if args.build and hasattr(ssm, "build_cpu_kernel"):
        ssm.build_cpu_kernel(verbose=True)
    if hasattr(ssm, "available_backends"):
        for name, state in ssm.available_backends().items():
            print(f"  {name}: {state}")
        print(f"scan backend on cpu: {ssm.scan_backend('cpu')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pkd", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a new run from a config, or resume one",
                       description="Train the teacher and K students; every file goes to one run directory.")
    p.add_argument("--config", help="YAML config (see configs/)")
    p.add_argument("--device", choices=DEVICES, help="overrides the config's device")
    p.add_argument("--run-dir", help="exact directory for the new run (must not exist or be empty)")
    p.add_argument("--runs-dir", help="folder for auto-named runs (default $PKD_RUNS_DIR or ./runs)")
    p.add_argument("--resume", metavar="RUN", help="continue a stopped/killed run (path or name)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-kernel-build", action="store_true", help="do not build the fused CPU scan kernel")
    p.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. distill.alpha=0.5")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="re-evaluate every prefix of a run on the test set from its saved weights")
    p.add_argument("run", help="run directory or name")
    p.add_argument("--runs-dir")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="classify an image file with the first k students of a run")
    p.add_argument("run", help="run directory or name")
    p.add_argument("image", help="PNG/JPEG image (a digit: white on black or black on white)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--k", type=int, help="use the first k students (default: all)")
    group.add_argument("--flop-budget", type=float, help="largest prefix within this many FLOPs per sample")
    p.add_argument("--confidence", type=float, help="stop early once the ensemble is this confident")
    p.add_argument("--runs-dir")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("runs", help="list runs with their state and final figures")
    p.add_argument("dirs", nargs="*", help="folders to look in (default: the runs dir and pretrained/)")
    p.add_argument("--runs-dir")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("backends", help="show the selective-scan backends and the GPU")
    p.add_argument("--build", action="store_true", help="build the fused CPU kernel now (about a minute, once)")
    p.set_defaults(func=cmd_backends)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from pkd.config import ConfigError
    from pkd.runs import RunError

    try:
        return args.func(args)
    except (ConfigError, RunError, ValueError, FileNotFoundError, RuntimeError, OSError) as exc:
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
