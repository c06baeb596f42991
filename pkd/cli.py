"""Command line: `python -m pkd train | eval | predict | runs | backends | export | sweep | pareto | group | compare`
(each has --help). This module is the arguments and the one-line error; the commands live in pkd/commands/."""

from __future__ import annotations

import argparse
import sys

from pkd.commands.compare import cmd_compare, cmd_group, cmd_pareto, cmd_sweep
from pkd.commands.run import cmd_backends, cmd_eval, cmd_export, cmd_predict, cmd_runs, cmd_train
from pkd.devices import DEVICES


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
                   "answer drawings (digit runs) or clips and drawings made into clips (video runs) in the browser "
                   "(onnxruntime-web); --out: a new or empty folder (docs/web.md)")
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
