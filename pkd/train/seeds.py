"""`pkd train --config C --seeds 0,1,2`: a seed group, one run of one config per seed, all sharing one teacher.

The group's folder (pkd.groups) gets group.json and config.yaml (the resolved config, with the command line's
overrides) first; then each member `seed-<s>` is trained in its own `python -m pkd train` process, one after the
other, with `seed=<s>`. The first member trains the teacher (or loads the config's teacher.checkpoint); every later
member shares that teacher file by reference (`--teacher-ref`), so the members differ only in their seed and what
it draws: student initialisation, batch order, augmentation. `pkd train --resume GROUP` continues a group: done
members are kept, a stopped one resumes, missing ones are started.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path

import yaml

from pkd.config import RunConfig, load_config
from pkd.groups import SeedGroup, member_name, parse_seeds
from pkd.procs import child_env, pkd_command, spawn
from pkd.runs import (CONFIG_FILE, GROUP_FILE, Run, RunError, State, atomic_write_bytes, atomic_write_json,
                      check_teacher_file, default_runs_dir, new_run_dir)
from pkd.runs.schema import GroupRecord
from pkd.train.specs import check_models

logger = logging.getLogger("pkd")


def create_group(args: argparse.Namespace) -> SeedGroup:
    """Check the config, make the group folder (--run-dir exactly, else <runs dir>/<name>-seeds-<time>-<hex>),
    write group.json and config.yaml. Nothing is created when a check fails."""
    seeds = parse_seeds(args.seeds)
    if not args.config:
        raise ValueError("--seeds makes a new seed group from --config CONFIG (continue one with --resume GROUP)")
    cfg = load_config(args.config, args.overrides)
    check_models(cfg)
    teacher = str(Path(cfg.teacher.checkpoint).resolve()) if cfg.teacher.checkpoint else None
    if args.run_dir:
        path = Path(args.run_dir).resolve()
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise RunError(f"{path} already exists and is not empty; choose another --run-dir or delete it")
        path.mkdir(parents=True, exist_ok=True)
    else:
        path = new_run_dir(args.runs_dir or default_runs_dir(), f"{cfg.name}-seeds")
    atomic_write_bytes(path / CONFIG_FILE, yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode())
    atomic_write_json(path / GROUP_FILE, {GroupRecord.CONFIG: cfg.to_dict(), GroupRecord.SEEDS: seeds,
                                          GroupRecord.TEACHER: teacher, GroupRecord.CREATED: time.time(),
                                          GroupRecord.COMMAND: list(sys.argv)})
    return SeedGroup(path)


def shared_teacher_overrides(cfg: RunConfig, teacher: Path) -> list[str]:
    """What a later member adds to the group's config to load the shared teacher and train no teacher stage."""
    out = [f"teacher.checkpoint={teacher}"]
    if cfg.teacher.init:
        out.append("teacher.init=null")
    out += [f"teacher.{stage}.epochs=0" for stage in ("pretrain", "prompt") if getattr(cfg.teacher, stage).epochs]
    return out


def member_command(group: SeedGroup, seed: int, teacher: Path | None, args: argparse.Namespace) -> list[str]:
    """The `python -m pkd train` command of member `seed`: resume it when it exists, else create it."""
    member = group.member_path(seed)
    flags = ["--no-progress"] if args.no_progress else []
    if member.is_dir():
        return pkd_command("train", "--resume", str(member), *flags, device=args.device,
                           build_kernel=not args.no_kernel_build)
    cfg = load_config(group.path / CONFIG_FILE)
    share = []
    if teacher is not None:
        share = shared_teacher_overrides(cfg, teacher)
        try:
            check_teacher_file(teacher)
            flags.append("--teacher-ref")  # a pkd teacher file: shared by reference, not copied
        except RunError as exc:
            logger.warning("%s; member %s gets its own copy of the teacher", exc, member_name(seed))
    return pkd_command("train", "--config", str(group.path / CONFIG_FILE), "--run-dir", str(member), *flags,
                       device=args.device, build_kernel=not args.no_kernel_build, after=[f"seed={seed}", *share])


def group_teacher(group: SeedGroup) -> Path | None:
    """The teacher every member shares: the first member's own (its teacher.pt, or the file its teacher-ref.json
    leads to, relative to the group, so a copied or cloned group finds it), else the teacher file group.json
    recorded at creation (an absolute path on the machine that made the group), else None (the first member
    trains one)."""
    first = group.member_path(group.seeds()[0])
    if first.is_dir() and Run(first).has_teacher():
        return Run(first).teacher_path()
    recorded = group.record().get(GroupRecord.TEACHER)
    return Path(recorded) if recorded else None


def train_group(group: SeedGroup, args: argparse.Namespace) -> int:
    """Train (or continue) every member in seed order; returns 0 when all are done, else the first failing
    member's exit code (the members before it are kept; `--resume GROUP` continues)."""
    teacher = group_teacher(group)
    for seed in group.seeds():
        member = group.member_path(seed)
        if member.is_dir() and Run(member).state() == State.DONE:
            logger.info("member %s is done; kept", member_name(seed))
        else:
            command = member_command(group, seed, teacher, args)
            logger.info("seed group %s: training %s", group.path, member_name(seed))
            child = spawn(command, env=child_env(), stdin=None, die_with_parent=True)
            signal.signal(signal.SIGTERM, lambda signum, frame, c=child: c.send_signal(signal.SIGTERM))
            code = child.wait()
            if code != 0:
                print(f"member {member_name(seed)} ended with exit code {code}; continue the group with: "
                      f"python -m pkd train --resume {group.path}", file=sys.stderr)
                return code
        if teacher is None:
            teacher = Run(member).teacher_path()  # the first member's own teacher: every later member shares it
    return 0
