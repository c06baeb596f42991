"""Commands on one run: `pkd train` (one run, a seed group, or under torchrun), `eval`, `predict`, `runs`,
`backends` and `export` (ONNX / TorchScript, or a static web page). Each takes the parsed arguments and returns
the exit code; heavy modules are imported inside, so `--help` stays fast."""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path

from pkd.console import print_budgets, print_per_frame, print_prediction, print_runs, print_summary, setup_logging
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
