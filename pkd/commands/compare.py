"""Commands over many runs: `pkd sweep` (an Optuna study of runs), `pareto` (the cost/accuracy front of runs),
`group` (a seed group per k) and `compare` (two runs or groups, with each difference's test). Each takes the
parsed arguments and returns the exit code."""

from __future__ import annotations

import argparse
from pathlib import Path

from pkd.console import print_front, setup_logging


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
    from pkd.runs import is_group_dir

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
