"""Command line: `python -m pkd train | eval | predict | runs | backends | export` (each has --help)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from pkd.devices import DEVICES

logger = logging.getLogger("pkd")


def _setup_logging(log_file: Path | None = None, verbose: bool = False, rank: int = 0) -> None:
    """Log to stderr (and `log_file`); ranks after 0 mark their lines with their rank."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    where = f" [rank {rank}]" if rank else ""
    fmt = logging.Formatter(f"%(asctime)s %(levelname)s{where} %(name)s: %(message)s", "%H:%M:%S")
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
        if run.writer_alive() or run.state() == State.RUNNING:
            raise ValueError(f"run {run.name} is being trained by another process (pid {run.status().get('pid')}); "
                             "stop it first, or wait for it to finish")
        _check_scan_backend(resolve_device(args.device or cfg.device))
        if run.state() == State.DONE:
            raise ValueError(f"run {run.name} is already done; nothing to resume (`pkd eval {run.path}` re-checks "
                             "it; a new run needs --config)")
        run.check_config_unedited()
        return run, cfg
    cfg = load_config(args.config, args.overrides)
    train.check_models(cfg)
    _check_scan_backend(resolve_device(args.device or cfg.device))  # fail before creating anything
    shared = _shared_teacher(cfg) if getattr(args, "teacher_ref", False) else None
    if args.run_dir:
        run = Run.create_at(Path(args.run_dir), cfg.to_dict(), command=sys.argv)
    else:
        run = Run.create(args.runs_dir or default_runs_dir(), cfg.name, cfg.to_dict(), command=sys.argv)
    if shared is not None:
        run.reference_teacher(shared)  # the run shares this file (a sweep's teacher) instead of copying it
    return run, cfg


def _shared_teacher(cfg):
    """`train --teacher-ref`: the config's teacher.checkpoint, checked to be a pkd teacher file the run can share."""
    from pkd.runs import check_teacher_file

    if not cfg.teacher.checkpoint:
        raise ValueError("--teacher-ref: the config has no teacher.checkpoint to share; set one or drop --teacher-ref")
    return check_teacher_file(cfg.teacher.checkpoint)


def _open_run_in_world(args: argparse.Namespace, world):
    """Rank 0 opens (creates or resumes) the run and takes its writer lock; the other ranks get its path from
    rank 0 and only read it. Returns (run, config)."""
    from pkd.config import config_from_dict
    from pkd.distributed import broadcast_object
    from pkd.runs import Run, default_runs_dir, resolve_run

    if world.is_writer:
        try:
            run, cfg = _open_run(args)
            run.lock_writer()  # one run, one writer: a second process stops here, before it writes anything
        except Exception as exc:
            broadcast_object((None, f"{exc}"), world)
            raise
        broadcast_object((str(run.path), None), world)
        return run, cfg
    path, error = broadcast_object(None, world)
    if error:
        raise ValueError(f"rank 0 could not open the run: {error}")
    mine = Path(args.run_dir).resolve() if args.run_dir else \
        resolve_run(args.resume, args.runs_dir or default_runs_dir()).path if args.resume else None
    if mine is not None and Path(mine) != Path(path):
        raise ValueError(f"rank {world.rank} was given run directory {mine}, rank 0 {path}: give every rank the same")
    run = Run(Path(path))
    return run, config_from_dict(run.config())


def _join_world(args: argparse.Namespace):
    """The torchrun world of this process (one process outside torchrun), joined on the run's device."""
    from pkd.config import config_from_dict, load_config
    from pkd.devices import resolve_device
    from pkd.distributed import SINGLE, init_world, world_from_env
    from pkd.runs import default_runs_dir, resolve_run

    if not world_from_env().distributed:
        return SINGLE
    if args.resume:
        cfg = config_from_dict(resolve_run(args.resume, args.runs_dir or default_runs_dir()).config())
    else:
        cfg = load_config(args.config, args.overrides)
    return init_world(resolve_device(args.device or cfg.device))


def _prepare_process(args: argparse.Namespace, run, cfg, world):
    """Logging (rank 0 also into train.log), the writer's start record, the scan kernel; returns the device."""
    from pkd import ssm
    from pkd.devices import resolve_device
    from pkd.distributed import barrier
    from pkd.runs import write_error

    try:
        _setup_logging(run.log_path() if world.is_writer else None, args.verbose, rank=world.rank)
    except OSError as exc:
        raise write_error(run.log_path(), exc) from None
    device = resolve_device(args.device or cfg.device)  # again, now that train.log records its choice
    if world.is_writer:
        run.mark_started(message=f"device {device}" + (f", {world.size} processes" if world.distributed else ""))
        logger.info("run %s: %s students, mode %s, device %s", run.path, cfg.students.k, cfg.distill.mode, device)
        if device.type == "cpu" and not args.no_kernel_build:
            ssm.build_cpu_kernel(verbose=True)  # rank 0 builds it once; the others wait and load it
    barrier(world)
    if world.is_writer:
        logger.info("selective scan backend: %s", ssm.scan_backend(device.type))
        run.write_status(scan_backend=ssm.scan_backend(device.type))
    return device


def cmd_train(args: argparse.Namespace) -> int:
    from pkd.distributed import leave_world

    if args.nproc is not None:
        return _train_with_torchrun(args)
    world = _join_world(args)
    args.exit_rank = world.distributed  # a torchrun rank ends through distributed.exit_rank (main)
    try:
        return _train_in_world(args, world)
    finally:
        leave_world(world)  # on every exit: a rank refused with a one-line error must not abort at shutdown


def _train_in_world(args: argparse.Namespace, world) -> int:
    """Open the run, train it, record how it ended; returns the exit code (0 done, 3 stopped, 130 interrupted)."""
    from pkd import train
    from pkd.distributed import close_world
    from pkd.runs import State

    run, cfg = _open_run_in_world(args, world)
    device = _prepare_process(args, run, cfg, world)
    ended = run.mark_ended if world.is_writer else (lambda *a, **k: None)
    train.install_stop_handler()
    progress = _Progress(enabled=world.is_writer and not args.no_progress and sys.stderr.isatty())
    try:
        summary = train.train_run(run, device.type, progress, world)
    except train.StopRequested:
        progress.close()
        ended(State.STOPPED, "stopped on request; continue with --resume")
        logger.info("stopped; continue with: python -m pkd train --resume %s", run.path)
        return 3
    except KeyboardInterrupt:
        progress.close()
        ended(State.STOPPED, "interrupted; continue with --resume")
        return 130
    except Exception as exc:
        progress.close()
        ended(State.FAILED, f"{exc.__class__.__name__}: {exc}")
        raise
    progress.close()
    ended(State.DONE, "finished", progress=1.0)
    close_world(world)
    if world.is_writer:
        _print_table(summary)
        print(f"run directory: {run.path}")
    return 0


def _train_with_torchrun(args: argparse.Namespace) -> int:
    """`train --nproc N`: the same command under `torchrun --standalone --nproc-per-node N` (N processes on this
    machine, gloo on CPU / nccl on GPUs); returns torchrun's exit code."""
    import signal

    from pkd.procs import spawn, torchrun_command

    if args.nproc < 1:
        raise ValueError(f"--nproc {args.nproc}: give the number of training processes, 1 or more")
    argv, items = [], iter(args.raw_argv)
    for item in items:
        if item == "--nproc":
            next(items, None)  # and its value
        elif not item.startswith("--nproc="):
            argv.append(item)
    command = torchrun_command(args.nproc, argv)
    logger.info("starting %s", " ".join(command))
    child = spawn(command, stdin=None)  # torchrun's ranks share this process's console and stdin
    signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signal.SIGTERM))  # a Stop reaches it
    return child.wait()


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
    summary = evaluate_run(run, device=resolve_device(args.device))
    _print_table(summary)
    _print_budgets(summary)
    return 0


def _print_budgets(summary: dict) -> None:
    """`pkd eval`'s lines after the table: the early exit at the val-fitted budgets, the AUC, the reversal test and
    digit identity of clip runs, the drawn digits."""
    teacher_flops = summary["teacher"]["flops"]
    for point in summary.get("anytime_val_fitted", []):
        rule = "every student" if point["confidence"] is None else f"exit at confidence {point['confidence']:.4f}"
        print(f"early exit, budget {100 * point['budget'] / teacher_flops:5.2f}% of the teacher ({rule}, fitted on "
              f"val): test acc {point['acc']:.4f} at {100 * point['mean_flops'] / teacher_flops:.2f}% on average")
    auc = summary.get("anytime_auc", {})
    if auc.get("test") is not None:
        print(f"anytime AUC (1%..100% of the teacher's FLOPs, log scale): val {auc['val']:.4f}, test {auc['test']:.4f}")
    video = summary.get("video")
    if video:
        print(f"reversal test ({video['n']} {video['split']} clips played backwards; share whose class changes): "
              f"teacher {video['teacher_reversal_change']:.4f}, prefixes "
              + " ".join(f"{k}:{v:.4f}" for k, v in enumerate(video["prefix_reversal_change"], start=1)))
        print(f"digit identity (the digit of the predicted class): teacher {video['teacher_digit_acc']:.4f}, "
              "prefixes " + " ".join(f"{k}:{v:.4f}" for k, v in enumerate(video["prefix_digit_acc"], start=1)))
        if "teacher_hm" in video:
            print("base-to-novel (base / novel / harmonic mean): teacher " + "/".join(
                f"{video[f'teacher_{key}']:.4f}" for key in ("base_acc", "novel_acc", "hm")) + ", prefixes " +
                " ".join(f"{k}:{b:.4f}/{n:.4f}/{h:.4f}" for k, (b, n, h) in enumerate(
                    zip(video["prefix_base_acc"], video["prefix_novel_acc"], video["prefix_hm"]), start=1)))
    drawn = summary.get("drawn")
    if drawn:
        print(f"drawn digits ({drawn['n']}, pkd.drawn seed {drawn['seed']}): teacher {drawn['teacher_acc']:.4f}, "
              "prefixes " + " ".join(f"{k}:{acc:.4f}" for k, acc in enumerate(drawn["prefix_acc"], start=1)))


def cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from pkd import data as pkd_data
    from pkd import preprocess
    from pkd.artifacts import load_ensemble
    from pkd.runs import default_runs_dir, resolve_run

    _setup_logging(verbose=args.verbose)
    run = resolve_run(args.run, args.runs_dir or default_runs_dir())
    spec = pkd_data.get_dataset_spec(run.setting("data", "dataset"))
    if spec.kind == "clip":
        return _predict_clip(args, run, spec)
    if args.per_frame:
        raise ValueError(f"--per-frame is for clip runs; {run.name} classifies single images ({spec.name})")
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


def _predict_clip(args: argparse.Namespace, run, spec) -> int:
    """`pkd predict RUN clip.gif|clip.npy`: the answer for the whole clip and, with --per-frame, every prefix's
    answer after every frame (students read frames in order, so each frame's answer uses only the frames so far)."""
    import torch

    from pkd.artifacts import load_ensemble
    from pkd.inference import frame_flops, stream_prefix_probs
    from pkd.preprocess import read_clip

    clip = read_clip(args.image, spec)  # (T, C, S, S)
    ensemble = load_ensemble(run)
    x = spec.normalize(clip)
    pred = ensemble.predict(x[None], k=args.k, flop_budget=args.flop_budget, confidence=args.confidence)
    probs, names = pred.probs[0], spec.class_names
    top = torch.argsort(probs, descending=True)[:3]
    print(f"prediction: {names[int(pred.classes[0])]} (p={float(probs.max()):.3f}) using {int(pred.k_used[0])} of "
          f"{ensemble.k} students, {int(pred.flops[0]):,} FLOPs, all {clip.shape[0]} frames")
    print("top 3: " + ", ".join(f"{names[int(i)]} {float(probs[i]):.3f}" for i in top))
    if args.per_frame:
        shown = int(pred.k_used[0]) if args.confidence is None else ensemble.k
        per_frame, flops = stream_prefix_probs(ensemble, x), frame_flops(ensemble)  # (T, K, C), T x K
        print(f"{'frame':>5}  {'students':<8}  {'answer so far':<16}  {'p':>5}  {'FLOPs so far':>12}")
        for t in range(per_frame.shape[0]):
            for k in range(shown):
                p = per_frame[t, k]
                who = "1" if k == 0 else f"1-{k + 1}"
                print(f"{t + 1:>5}  {who:<8}  {names[int(p.argmax())]:<16}  {float(p.max()):5.3f}  "
                      f"{flops[t][k]:>12,}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from pkd.runs import default_runs_dir, list_runs, printable

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
              f"{printable(info['path'], 400)}" + (f"  problem: {info['problem']}" if info["problem"] else ""))
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


def cmd_export(args: argparse.Namespace) -> int:
    import json

    from pkd.export import card_paths, export_prefix
    from pkd.runs import default_runs_dir, printable, resolve_run

    _setup_logging(verbose=args.verbose)
    run = resolve_run(args.run, args.runs_dir or default_runs_dir())
    path = export_prefix(run, args.k, format=args.format, out=args.out, all_prefixes=args.all_prefixes,
                         force=args.force)
    card = json.loads(card_paths(path)[0].read_text())
    check, acc = card["check"], card["test_acc"]
    print(f"exported students 1..{card['k']} of {run.name} ({card['format']}): {printable(path, 400)}")
    print(f"  {card['flops_per_sample']:,} FLOPs per sample, test accuracy "
          f"{'n/a' if acc is None else f'{100 * acc:.2f}%'}; {check['runtime']} vs eager: max abs diff "
          f"{check['max_abs_diff']:.1e}, same predictions")
    print(f"  model card: {printable(card_paths(path)[1], 400)} (and .json); sha256 {card['sha256']}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from pkd import sweep
    from pkd.runs import default_runs_dir, new_run_dir
    from pkd.sweep.study import plan_sweep
    from pkd.sweep.worker import TrialOptions, run_sweep

    _setup_logging(verbose=args.verbose)
    if args.overrides and not args.config:
        raise ValueError("key=value overrides apply to a new sweep's --config BASE; a sweep continues with its own")
    if args.sweep_dir is None:
        if not (args.config and args.space):
            raise ValueError("a new sweep needs --config BASE and --space SPACE (or --sweep-dir of a sweep)")
        plan_sweep(Path("."), args.config, args.space, args.overrides)  # every check before any folder exists
        args.sweep_dir = new_run_dir(args.runs_dir or default_runs_dir(), f"sweep-{Path(args.config).stem}")
    options = TrialOptions(device=args.device, build_kernel=not args.no_kernel_build)
    code = run_sweep(args.sweep_dir, args.trials, args.config, args.space, args.overrides, args.workers, options)
    found = sweep.Sweep(Path(args.sweep_dir).resolve())
    counts = sweep.sweep_counts(found)
    print(f"sweep {found.path}: {counts['complete']} trials complete, {counts['training']} training, "
          f"{counts['fail']} failed" + ("" if code == 0 else "; run the same command again to continue"))
    _print_front(sweep.front(sweep.sweep_points(found), "val"), "val")
    return code


def _print_front(points: list[dict], split: str) -> None:
    from pkd.runs import printable

    print(f"Pareto front of (cumulative FLOPs, {split} accuracy) over every prefix k of every run:")
    print(f"{'cumulative FLOPs':>16} {'% teacher':>10} {'val acc':>8} {'test acc':>8} {'k':>3}  run")
    for p in points:
        share = f"{100 * p['share']:.2f}%" if isinstance(p.get("share"), (int, float)) else "-"
        accs = [f"{p[key]:.4f}" if isinstance(p.get(key), (int, float)) else "-" for key in ("val_acc", "test_acc")]
        print(f"{p['flops']:>16,} {share:>10} {accs[0]:>8} {accs[1]:>8} {p['k']:>3}  {printable(p['run'], 300)}")


def cmd_pareto(args: argparse.Namespace) -> int:
    import csv
    import io

    from pkd.runs import atomic_write_bytes, list_runs
    from pkd.sweep import front, prefix_points

    _setup_logging(verbose=args.verbose)
    runs = []
    for item in args.paths:
        path = Path(item).resolve()
        if not path.is_dir():
            raise FileNotFoundError(f"{item}: no such run or sweep folder")
        found = list_runs([path])  # a run, a sweep (its trials) or a folder of runs and sweeps
        if not found:
            raise ValueError(f"{item}: holds no pkd runs")
        runs += [run for run in found if run.path.resolve() not in {r.path.resolve() for r in runs}]
    points = front(prefix_points(runs), args.on)
    _print_front(points, args.on)
    if args.csv:
        out = Path(args.csv).resolve()
        if not out.parent.is_dir():
            raise FileNotFoundError(f"--csv {args.csv}: folder {out.parent} does not exist")
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["run", "k", "cumulative_flops", "share_of_teacher", "val_acc", "test_acc"])
        writer.writerows([p["run"], p["k"], p["flops"], p["share"], p["val_acc"], p["test_acc"]] for p in points)
        atomic_write_bytes(out, buf.getvalue().encode())
        print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pkd", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    _add_train_command(sub)
    _add_eval_command(sub)
    _add_predict_command(sub)
    _add_runs_command(sub)
    _add_backends_command(sub)
    _add_export_command(sub)
    _add_sweep_command(sub)
    _add_pareto_command(sub)
    return parser


def _add_train_command(sub: argparse._SubParsersAction) -> None:
    """`pkd train` and its options."""
    p = sub.add_parser("train", help="train a new run from a config, or resume one",
                       description="Train the teacher and K students; every file goes to one run directory.")
    p.add_argument("--config", help="YAML config (see configs/)")
    p.add_argument("--device", choices=DEVICES, help="overrides the config's device")
    p.add_argument("--run-dir", help="exact directory for the new run (must not exist or be empty)")
    p.add_argument("--runs-dir", help="folder for auto-named runs (default $PKD_RUNS_DIR or ./runs)")
    p.add_argument("--resume", metavar="RUN", help="continue a stopped/killed run (path or name)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-kernel-build", action="store_true", help="do not build the fused CPU scan kernel")
    p.add_argument("--nproc", type=int, help="train in N processes on this machine under torchrun (gloo on CPU, "
                   "one GPU each with nccl); for several machines run torchrun yourself (see README)")
    p.add_argument("--teacher-ref", action="store_true", help="share teacher.checkpoint (a pkd teacher file) "
                   "instead of copying it into the run: the run records its path and sha256 (a sweep's trials)")
    p.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. distill.alpha=0.5")
    p.set_defaults(func=cmd_train)


def _add_eval_command(sub: argparse._SubParsersAction) -> None:
    """`pkd eval` and its options."""
    p = sub.add_parser("eval", help="re-evaluate every prefix of a run on the test set from its saved weights")
    p.add_argument("run", help="run directory or name")
    p.add_argument("--runs-dir")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.set_defaults(func=cmd_eval)


def _add_predict_command(sub: argparse._SubParsersAction) -> None:
    """`pkd predict` and its options."""
    p = sub.add_parser("predict", help="classify an image (or, for a clip run, a clip) with the first k students")
    p.add_argument("run", help="run directory or name")
    p.add_argument("image", help="PNG/JPEG image (a digit: white on black or black on white); for a clip run an "
                   "animated GIF or a .npy array (T, H, W) with the run's number of frames")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--k", type=int, help="use the first k students (default: all)")
    group.add_argument("--flop-budget", type=float, help="largest prefix within this many FLOPs per sample")
    p.add_argument("--confidence", type=float, help="stop early once the ensemble is this confident")
    p.add_argument("--per-frame", action="store_true", help="clip runs: also print every prefix's answer after "
                   "each frame (the students read the frames in order)")
    p.add_argument("--runs-dir")
    p.set_defaults(func=cmd_predict)


def _add_runs_command(sub: argparse._SubParsersAction) -> None:
    """`pkd runs` and its options."""
    p = sub.add_parser("runs", help="list runs with their state and final figures")
    p.add_argument("dirs", nargs="*", help="folders to look in (default: the runs dir and pretrained/)")
    p.add_argument("--runs-dir")
    p.set_defaults(func=cmd_runs)


def _add_backends_command(sub: argparse._SubParsersAction) -> None:
    """`pkd backends` and its options."""
    p = sub.add_parser("backends", help="show the selective-scan backends and the GPU")
    p.add_argument("--build", action="store_true", help="build the fused CPU kernel now (about a minute, once)")
    p.set_defaults(func=cmd_backends)


def _add_export_command(sub: argparse._SubParsersAction) -> None:
    """`pkd export` and its options."""
    p = sub.add_parser("export", help="export students 1..k of a run as one ONNX or torch.export file + model card",
                       description="One file computing students 1..k from raw [0, 1] pixels (normalisation built "
                                   "in), checked against PyTorch when written; default <run>/export/.")
    p.add_argument("run", help="run directory or name")
    p.add_argument("--k", type=int, required=True, help="the prefix: students 1..k (1..saved students)")
    p.add_argument("--format", choices=["onnx", "pt2"], default="onnx", help="onnx (default) or pt2 (torch.export)")
    p.add_argument("--out", help="file or existing folder (default: <run>/export/prefix_kK.<format>)")
    p.add_argument("--all-prefixes", action="store_true", help="also output every prefix's probabilities "
                   "(batch, k, classes), for early exit")
    p.add_argument("--force", action="store_true", help="replace existing files at the destination")
    p.add_argument("--runs-dir")
    p.set_defaults(func=cmd_export)


def _add_sweep_command(sub: argparse._SubParsersAction) -> None:
    """`pkd sweep` and its options."""
    p = sub.add_parser("sweep", help="search settings with Optuna: every trial an ordinary run in one sweep folder",
                       description="Trials of BASE with settings from SPACE (multi-objective: validation accuracy "
                                   "vs FLOPs, or the anytime AUC), sharing one teacher; run the same command again "
                                   "to continue a stopped sweep, or on other machines to add workers.")
    p.add_argument("--config", help="BASE config (a new sweep)")
    p.add_argument("--space", help="search space YAML (a new sweep; see configs/sweep-*.yaml)")
    p.add_argument("--trials", type=int, required=True, help="trials the study should have (failed ones excluded)")
    p.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default 1)")
    p.add_argument("--sweep-dir", help="the sweep folder (default: a new sweep-<base>-<time> in the runs dir)")
    p.add_argument("--runs-dir", help="folder for a new sweep (default $PKD_RUNS_DIR or ./runs)")
    p.add_argument("--device", choices=DEVICES, help="--device of every trial")
    p.add_argument("--no-kernel-build", action="store_true", help="trials do not build the fused CPU scan kernel")
    p.add_argument("overrides", nargs="*", help="key=value overrides of BASE, e.g. students.optim.epochs=1")
    p.set_defaults(func=cmd_sweep)


def _add_pareto_command(sub: argparse._SubParsersAction) -> None:
    """`pkd pareto` and its options."""
    p = sub.add_parser("pareto", help="the Pareto front of (cumulative FLOPs, accuracy) over every prefix of runs",
                       description="Every prefix k of every given run (a sweep folder gives its trials) as a point; "
                                   "prints the points no other point beats (cheaper and at least as accurate).")
    p.add_argument("paths", nargs="+", metavar="RUN_OR_SWEEP", help="run directories, sweep folders or run folders")
    p.add_argument("--on", choices=["val", "test"], default="val", help="accuracy the front is chosen on "
                   "(default val; both are printed)")
    p.add_argument("--csv", help="also write the front to this CSV file")
    p.set_defaults(func=cmd_pareto)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.raw_argv = list(sys.argv[1:] if argv is None else argv)
    from pkd.config import ConfigError
    from pkd.runs import RunError, printable

    try:
        code = args.func(args)
    except (ConfigError, RunError, ValueError, FileNotFoundError, RuntimeError, OSError) as exc:
        if args.verbose:
            raise
        print(f"error: {printable(exc, 2000)}", file=sys.stderr)  # one line, whatever a hostile file holds
        code = 2
    if getattr(args, "exit_rank", False):
        from pkd.distributed import exit_rank

        exit_rank(code)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
