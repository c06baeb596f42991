"""Command line: `python -m pkd train | eval | predict | runs | backends | export` (each has --help)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from pkd.console import (print_budgets, print_front, print_per_frame, print_prediction, print_runs, print_summary,
                         setup_logging)
from pkd.devices import DEVICES
from pkd.procs import spawn, torchrun_command

logger = logging.getLogger("pkd")


def cmd_train(args: argparse.Namespace) -> int:
    from pkd.runs.files import GROUP_FILE  # names only: no torch

    if args.seeds is not None or (args.resume and (Path(args.resume) / GROUP_FILE).is_file()):
        return train_seed_group(args)
    if args.nproc is not None:
        return train_with_torchrun(args)  # this process only starts torchrun: no torch, no trainer
    from pkd.train.job import run_job

    return run_job(args)


def train_with_torchrun(args: argparse.Namespace) -> int:
    """`train --nproc N`: the same command under `torchrun --standalone --nproc-per-node N` (N processes on this
    machine, gloo on CPU / nccl on GPUs); returns torchrun's exit code."""
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


def train_seed_group(args: argparse.Namespace) -> int:
    """`train --config C --seeds 0,1,2` (a new seed group) or `train --resume GROUP`: every member in its own
    training process (pkd.train.seeds), then the group's accuracy per k over the seeds."""
    from pkd.groups import SeedGroup, group_prefixes
    from pkd.report import print_group
    from pkd.train.seeds import create_group, train_group

    setup_logging(verbose=args.verbose)
    if args.nproc is not None:
        raise ValueError("--seeds trains its members one after the other in one process each; drop --nproc")
    if args.resume:
        if args.seeds is not None or args.config or args.overrides:
            raise ValueError("--resume GROUP continues a seed group with its own config and seeds; drop --seeds, "
                             "--config and overrides")
        group = SeedGroup(Path(args.resume).resolve())
    else:
        group = create_group(args)
    code = train_group(group, args)
    print_group(str(group.path), group_prefixes(group.members()))
    return code


def cmd_eval(args: argparse.Namespace) -> int:
    from pkd.devices import resolve_device
    from pkd.evaluate import evaluate_run
    from pkd.runs import default_runs_dir, resolve_run

    setup_logging(verbose=args.verbose)
    run = resolve_run(args.run, args.runs_dir or default_runs_dir())
    summary = evaluate_run(run, device=resolve_device(args.device))
    print_summary(summary)
    print_budgets(summary)
    from pkd.combiners import native_combiner
    from pkd.report import print_combiner

    print_combiner(summary, args.combiner or native_combiner(run.setting("distill", "mode")))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from pkd import data as pkd_data
    from pkd import preprocess
    from pkd.artifacts import load_ensemble
    from pkd.runs import default_runs_dir, resolve_run

    setup_logging(verbose=args.verbose)
    run = resolve_run(args.run, args.runs_dir or default_runs_dir())
    spec = pkd_data.get_dataset_spec(run.setting("data", "dataset"))
    if spec.kind == "clip":
        return _predict_clip(args, run, spec)
    if args.per_frame:
        raise ValueError(f"--per-frame is for clip runs; {run.name} classifies single images ({spec.name})")
    image = preprocess.load_image_file(args.image)
    x = preprocess.prepare_image(spec, image)
    if x is None:
        print(f"no {'object' if spec.photos else 'digit'} found in the image (it is blank): nothing to classify")
        return 2
    if spec.sample_shape == (1, 28, 28) and not spec.photos and preprocess.ink_extent(image) < preprocess.MIN_INK_EXTENT:
        print("too little ink in the image (a dot or a speck, not a digit): nothing to classify; draw the whole digit")
        return 2
    ensemble = load_ensemble(run)
    pred = ensemble.predict(spec.normalize(x[None]), k=args.k, flop_budget=args.flop_budget,
                            confidence=args.confidence)
    top = torch.argsort(pred.probs[0], descending=True)[:3]
    print_prediction(pred, spec.class_names, ensemble.k, top)
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
    top = torch.argsort(pred.probs[0], descending=True)[:3]
    print_prediction(pred, spec.class_names, ensemble.k, top, detail=f", all {clip.shape[0]} frames")
    if args.per_frame:
        shown = int(pred.k_used[0]) if args.confidence is None else ensemble.k
        per_frame, flops = stream_prefix_probs(ensemble, x), frame_flops(ensemble)  # (T, K, C), T x K
        print_per_frame(per_frame, flops, spec.class_names, shown)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from pkd.runs import default_runs_dir, list_runs

    folders = args.dirs or [str(args.runs_dir or default_runs_dir()), "pretrained"]
    runs = list_runs(folders)
    if not runs:
        print(f"no runs in {', '.join(folders)}")
        return 0
    print_runs(runs)
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
        from pkd.ssm.cpu_kernel import describe_kernel

        print(f"CPU: {describe_kernel()}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import json

    from pkd.export import card_paths, export_prefix
    from pkd.runs import default_runs_dir, printable, resolve_run

    setup_logging(verbose=args.verbose)
    run = resolve_run(args.run, args.runs_dir or default_runs_dir())
    if args.web:
        return export_web_page(run, args)
    if args.k is None:
        raise ValueError("pkd export needs --k K (students 1..K), or --web for a web page of the run")
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


def export_web_page(run, args: argparse.Namespace) -> int:
    """`pkd export RUN --web`: the run's students as a static page (pkd.web.build)."""
    from pkd.runs import printable
    from pkd.web.build import export_web, folder_bytes

    folder = export_web(run, args.k, out=args.out)
    print(f"web page of {run.name}: {printable(folder / 'index.html', 400)} ({folder_bytes(folder) / 1e6:.1f} MB; "
          "open it in a browser, or put the folder on any static host)")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    if args.storage:  # a wrong URL, an unreachable server, a foreign study: one line, before any check or folder
        from pkd.sweep.storage import connect, plan_of

        plan_of(connect(args.storage), args.study or "pkd")
    from pkd import sweep
    from pkd.runs import default_runs_dir, new_run_dir
    from pkd.sweep.database import DatabaseOptions
    from pkd.sweep.storage import masked
    from pkd.sweep.study import plan_sweep
    from pkd.sweep.worker import TrialOptions, run_sweep

    setup_logging(verbose=args.verbose)
    if args.overrides and not args.config:
        raise ValueError("key=value overrides apply to a new sweep's --config BASE; a sweep continues with its own")
    database = DatabaseOptions(args.storage, args.study, args.heartbeat)
    if args.sweep_dir is None and args.storage and not args.config:  # join a database sweep: a folder here
        args.sweep_dir = new_run_dir(args.runs_dir or default_runs_dir(), f"sweep-{args.study or 'pkd'}")
    if args.sweep_dir is None:
        if not (args.config and args.space):
            raise ValueError("a new sweep needs --config BASE and --space SPACE (or --sweep-dir of a sweep)")
        plan_sweep(Path("."), args.config, args.space, args.overrides)  # every check before any folder exists
        args.sweep_dir = new_run_dir(args.runs_dir or default_runs_dir(), f"sweep-{Path(args.config).stem}")
    options = TrialOptions(device=args.device, build_kernel=not args.no_kernel_build)
    code = run_sweep(args.sweep_dir, args.trials, args.config, args.space, args.overrides, args.workers, options,
                     database)
    found = sweep.Sweep(Path(args.sweep_dir).resolve())
    counts = sweep.sweep_counts(found)
    where = f" (study {found.study_name()} in {masked(found.database())})" if found.database() else ""
    print(f"sweep {found.path}{where}: {counts['complete']} trials complete, {counts['training']} training, "
          f"{counts['fail']} failed" + ("" if code == 0 else "; run the same command again to continue"))
    print_front(sweep.front(sweep.sweep_points(found), "val"), "val")
    return code


def cmd_pareto(args: argparse.Namespace) -> int:
    import csv
    import io

    from pkd.runs import list_runs
    from pkd.runs.place import output_file, write_output
    from pkd.runs.schema import PrefixRow
    from pkd.sweep import front, prefix_points
    setup_logging(verbose=args.verbose)
    from pkd.sweep import Sweep, study_points, sweep_points

    if not args.paths and not args.storage:
        raise ValueError("give run or sweep folders, or --storage URL of a sweep's database")
    runs, points = [], []
    if args.storage:  # a database sweep: every machine's trials from the study alone
        import optuna

        from pkd.sweep.storage import connect, plan_of

        storage, name = connect(args.storage), args.study or "pkd"
        if plan_of(storage, name) is None:
            raise ValueError(f"the database holds no sweep named {name}; give its --study NAME")
        points += study_points(optuna.load_study(study_name=name, storage=storage))
    for item in args.paths:
        path = Path(item).resolve()
        if not path.is_dir():
            raise FileNotFoundError(f"{item}: no such run or sweep folder")
        if Sweep(path).exists() and Sweep(path).database():
            points += sweep_points(Sweep(path))  # its study: every machine's trials
            continue
        found = list_runs([path])  # a run, a sweep (its trials) or a folder of runs and sweeps
        if not found:
            raise ValueError(f"{item}: holds no pkd runs")
        runs += [run for run in found if run.path.resolve() not in {r.path.resolve() for r in runs}]
    points = front(prefix_points(runs) + points, args.on)
    out = output_file(args.csv, "--csv", args.force) if args.csv else None  # checked before anything is printed
    print_front(points, args.on)
    if out is not None:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["run", PrefixRow.K, PrefixRow.CUMULATIVE_FLOPS, PrefixRow.SHARE_OF_TEACHER, "val_acc",
                          "test_acc"])
        writer.writerows([p["run"], p["k"], p["flops"], p["share"], p["val_acc"], p["test_acc"]] for p in points)
        write_output(out, buf.getvalue().encode(), "--csv")
        print(f"wrote {out}")
    return 0


def cmd_group(args: argparse.Namespace) -> int:
    from pkd.groups import group_prefixes, runs_of
    from pkd.report import print_group

    for item in args.paths:
        print_group(item, group_prefixes(runs_of(item)))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Two runs: McNemar per k (their models answer the test set again); two groups: the paired-seed difference;
    one run: McNemar of each prefix against its teacher."""
    from pkd.groups import compare_groups, runs_of
    from pkd.report import print_group_comparison, print_run_comparison
    from pkd.runs import Run, is_group_dir

    setup_logging(verbose=args.verbose)
    if args.b is None:
        from pkd.compare import compare_to_teacher
        from pkd.runs import resolve_run

        run = resolve_run(args.a, args.runs_dir)
        print_run_comparison(f"{run.path} (each prefix k)", "its teacher", compare_to_teacher(run, args.combiner))
        return 0
    groups = [is_group_dir(Path(p)) for p in (args.a, args.b)]
    if all(groups):
        print_group_comparison(args.a, args.b, compare_groups(runs_of(args.a), runs_of(args.b)))
        return 0
    if any(groups):
        raise ValueError("compare two runs (McNemar per sample) or two seed groups (paired by seed), not one of each")
    from pkd.compare import compare_runs
    from pkd.runs import resolve_run

    run_a, run_b = (resolve_run(p, args.runs_dir) for p in (args.a, args.b))
    print_run_comparison(str(run_a.path), str(run_b.path), compare_runs(run_a, run_b, args.combiner))
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
    _add_group_command(sub)
    _add_compare_command(sub)
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
                   "one GPU each with nccl); for several machines run torchrun yourself (see docs/scaling.md)")
    p.add_argument("--teacher-ref", action="store_true", help="share teacher.checkpoint (a pkd teacher file) "
                   "instead of copying it into the run: the run records its path and sha256 (a sweep's trials)")
    p.add_argument("--seeds", help="a seed group: one run per seed (e.g. 0,1,2) of the config, sharing one teacher, "
                   "in one folder (--run-dir, or auto-named); `--resume GROUP` continues it (docs/comparisons.md)")
    p.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. distill.alpha=0.5")
    p.set_defaults(func=cmd_train)


def _add_eval_command(sub: argparse._SubParsersAction) -> None:
    """`pkd eval` and its options."""
    p = sub.add_parser("eval", help="re-evaluate every prefix of a run on the test set from its saved weights")
    p.add_argument("run", help="run directory or name")
    p.add_argument("--runs-dir")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--combiner", choices=["sum", "mean-prob", "product"], help="also print the anytime figures of "
                   "this way of combining the students (default: the run's own: sum for residual, mean-prob for "
                   "independent; product: Jazbec et al.'s product of experts)")
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
    p.add_argument("--k", type=int, help="the prefix: students 1..k (1..saved students; --web: default all)")
    p.add_argument("--format", choices=["onnx", "pt2"], default="onnx", help="onnx (default) or pt2 (torch.export)")
    p.add_argument("--out", help="file or existing folder (default: <run>/export/prefix_kK.<format>)")
    p.add_argument("--all-prefixes", action="store_true", help="also output every prefix's probabilities "
                   "(batch, k, classes), for early exit")
    p.add_argument("--force", action="store_true", help="replace existing files at the destination")
    p.add_argument("--web", action="store_true", help="a static web page (index.html + assets) where the students "
                   "answer drawings in the browser (onnxruntime-web); --out: a new or empty folder (docs/web.md)")
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
    p.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default 1; 0: only "
                   "open or join the sweep, e.g. to watch a database sweep in this machine's app)")
    p.add_argument("--sweep-dir", help="the sweep folder (default: a new sweep-<base>-<time> in the runs dir)")
    p.add_argument("--runs-dir", help="folder for a new sweep (default $PKD_RUNS_DIR or ./runs)")
    p.add_argument("--device", choices=DEVICES, help="--device of every trial")
    p.add_argument("--no-kernel-build", action="store_true", help="trials do not build the fused CPU scan kernel")
    p.add_argument("--storage", metavar="URL", help="keep the study in this database, for workers on several "
                   "machines: postgresql+psycopg://USER@HOST:PORT/DB (password: $PKD_DB_PASSWORD, a .pgpass-style "
                   "file in $PKD_DB_PASSFILE, or in the URL; never stored). Default: journal.log in the sweep folder")
    p.add_argument("--study", help="the study's name in the --storage database (default pkd)")
    p.add_argument("--heartbeat", type=int, help="seconds between a worker's heartbeats on a database (a new "
                   "study; default 60): a trial silent for twice that is failed and retried once")
    p.add_argument("overrides", nargs="*", help="key=value overrides of BASE, e.g. students.optim.epochs=1")
    p.set_defaults(func=cmd_sweep)


def _add_pareto_command(sub: argparse._SubParsersAction) -> None:
    """`pkd pareto` and its options."""
    p = sub.add_parser("pareto", help="the Pareto front of (cumulative FLOPs, accuracy) over every prefix of runs",
                       description="Every prefix k of every given run (a sweep folder gives its trials) as a point; "
                                   "prints the points no other point beats (cheaper and at least as accurate).")
    p.add_argument("paths", nargs="*", metavar="RUN_OR_SWEEP", help="run directories, sweep folders or run folders")
    p.add_argument("--storage", metavar="URL", help="also every trial of the sweep in this database (see `sweep`)")
    p.add_argument("--study", help="the sweep's study name in --storage (default pkd)")
    p.add_argument("--on", choices=["val", "test"], default="val", help="accuracy the front is chosen on "
                   "(default val; both are printed)")
    p.add_argument("--csv", help="also write the front to this CSV file")
    p.add_argument("--force", action="store_true", help="replace the --csv file if it exists (never a file of a run "
                   "or a sweep)")
    p.set_defaults(func=cmd_pareto)


def _add_group_command(sub: argparse._SubParsersAction) -> None:
    """`pkd group` and its options."""
    p = sub.add_parser("group", help="a seed group's (or any runs') accuracy per prefix k: mean ± SE over seeds")
    p.add_argument("paths", nargs="+", metavar="GROUP", help="seed group folders (pkd train --seeds), or folders "
                   "of runs")
    p.set_defaults(func=cmd_group)


def _add_compare_command(sub: argparse._SubParsersAction) -> None:
    """`pkd compare` and its options."""
    p = sub.add_parser("compare", help="is A ahead of B? two runs: McNemar per k; two seed groups: paired seeds",
                       description="Per prefix k: for two runs, McNemar's exact test on the test samples one gets "
                                   "right and the other wrong (their students answer the test set again); for two "
                                   "seed groups, the test accuracy difference paired by seed (mean ± SE, wins, "
                                   "paired t-test). Says 'within noise' when the test does not separate them.")
    p.add_argument("a", metavar="A", help="run or seed group")
    p.add_argument("b", metavar="B", nargs="?", help="run or seed group (the same kind as A); without B, every "
                   "prefix of run A against A's own teacher (McNemar per k)")
    p.add_argument("--combiner", choices=["sum", "mean-prob", "product"], help="runs: combine each run's students "
                   "this way (default: each run's own)")
    p.add_argument("--runs-dir")
    p.set_defaults(func=cmd_compare)


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
