"""One training process: `python -m pkd train`, from its arguments to its exit code.

Opens the run (a new one, created only once its config has passed every check, or one to resume), joins the
torchrun world when started under torchrun (rank 0 is the run's one writer; the other ranks only read it), sets up
logging and the scan kernel, turns SIGTERM into a clean stop, trains, and records how the run ended in its status.
Exit codes: 0 done, 3 stopped (resumable), 130 interrupted; a failure is recorded, then raised for the CLI to print
in one line. (`train --nproc N` never loads this module: pkd.cli hands the same command to torchrun.)

`args` is the `train` command's namespace (pkd.cli): config, overrides, run_dir, runs_dir, resume, device,
no_progress, no_kernel_build, nproc, teacher_ref, verbose and raw_argv; run_job sets `exit_rank` for the CLI, which
ends a torchrun rank through pkd.distributed.exit_rank.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from pathlib import Path

import torch

from pkd import ssm
from pkd.config import RunConfig, config_from_dict, load_config
from pkd.console import Progress, print_summary, setup_logging
from pkd.devices import resolve_device
from pkd.distributed import (SINGLE, World, barrier, broadcast_object, close_world, init_world, leave_world,
                             world_from_env)
from pkd.runs import Run, State, check_teacher_file, default_runs_dir, resolve_run, write_error
from pkd.train.progressive import train_run
from pkd.train.signals import StopRequested, install_stop_handler
from pkd.train.specs import check_models

logger = logging.getLogger("pkd")


def run_job(args: argparse.Namespace) -> int:
    """`pkd train` in this process (a torchrun rank included: `--nproc` is handled by pkd.cli before this module,
    with its torch and trainer imports, is loaded); returns the exit code."""
    world = _join_world(args)
    args.exit_rank = world.distributed  # a torchrun rank ends through distributed.exit_rank (main)
    try:
        return _train_in_world(args, world)
    finally:
        leave_world(world)  # on every exit: a rank refused with a one-line error must not abort at shutdown


def _open_run(args: argparse.Namespace) -> tuple[Run, RunConfig]:
    """The run `train` works on: the one to resume, or a new one, created only once its config has passed every
    check (models, device, scan backend). Returns (run, config)."""
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
    check_models(cfg)
    _check_scan_backend(resolve_device(args.device or cfg.device))  # fail before creating anything
    shared = _shared_teacher(cfg) if getattr(args, "teacher_ref", False) else None
    if args.run_dir:
        run = Run.create_at(Path(args.run_dir), cfg.to_dict(), command=sys.argv)
    else:
        run = Run.create(args.runs_dir or default_runs_dir(), cfg.name, cfg.to_dict(), command=sys.argv)
    if shared is not None:
        run.reference_teacher(shared)  # the run shares this file (a sweep's teacher) instead of copying it
    return run, cfg


def _shared_teacher(cfg: RunConfig) -> Path:
    """`train --teacher-ref`: the config's teacher.checkpoint, checked to be a pkd teacher file the run can share."""
    if not cfg.teacher.checkpoint:
        raise ValueError("--teacher-ref: the config has no teacher.checkpoint to share; set one or drop --teacher-ref")
    return check_teacher_file(cfg.teacher.checkpoint)


def _open_run_in_world(args: argparse.Namespace, world: World) -> tuple[Run, RunConfig]:
    """Rank 0 opens (creates or resumes) the run and takes its writer lock; the other ranks get its path from
    rank 0 and only read it. Returns (run, config)."""
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


def _join_world(args: argparse.Namespace) -> World:
    """The torchrun world of this process (one process outside torchrun), joined on the run's device."""
    if not world_from_env().distributed:
        return SINGLE
    if args.resume:
        cfg = config_from_dict(resolve_run(args.resume, args.runs_dir or default_runs_dir()).config())
    else:
        cfg = load_config(args.config, args.overrides)
    return init_world(resolve_device(args.device or cfg.device))


def _prepare_process(args: argparse.Namespace, run: Run, cfg: RunConfig, world: World) -> torch.device:
    """Logging (rank 0 also into train.log), the writer's start record, the scan kernel; returns the device."""
    try:
        setup_logging(run.log_path() if world.is_writer else None, args.verbose, rank=world.rank)
    except OSError as exc:  # a link or a FIFO in train.log's place is named as such (pkd.procs.open_console)
        raise (exc if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EINVAL) else write_error(run.log_path(), exc)) \
            from None
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


def _train_in_world(args: argparse.Namespace, world: World) -> int:
    """Open the run, train it, record how it ended; returns the exit code (0 done, 3 stopped, 130 interrupted)."""
    run, cfg = _open_run_in_world(args, world)
    device = _prepare_process(args, run, cfg, world)
    ended = run.mark_ended if world.is_writer else (lambda *a, **k: None)
    install_stop_handler()
    progress = Progress(enabled=world.is_writer and not args.no_progress and sys.stderr.isatty())
    try:
        summary = train_run(run, device.type, progress, world)
    except StopRequested:
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
        print_summary(summary)
        print(f"run directory: {run.path}")
    return 0



def _check_scan_backend(device: torch.device) -> None:
    """Refuse a forced PKD_SCAN_BACKEND that cannot run on `device` before anything is created or trained."""
    if not hasattr(ssm, "scan_backend"):
        return
    backend = ssm.scan_backend(device.type)  # ValueError naming the choices for an unknown value
    if backend == "cuda" and device.type != "cuda":
        raise ValueError(f"{ssm.BACKEND_ENV}=cuda needs a CUDA GPU with a working mamba-ssm, but training runs on "
                         f"{device}; unset {ssm.BACKEND_ENV} (auto picks the fastest CPU scan) or set it to torch")
    if backend == "cpp" and device.type != "cpu":
        raise ValueError(f"{ssm.BACKEND_ENV}=cpp is the CPU kernel, but training runs on {device}; "
                         f"unset {ssm.BACKEND_ENV} or set it to torch")


