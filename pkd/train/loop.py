"""Fit one model (the teacher, or one student): epochs of seeded, shuffled batches, resumable at every epoch.

Read `fit` top to bottom; `train_epoch` is one pass over the data. Every epoch ends with an evaluation, an
atomic resume checkpoint and a metrics record, so a killed run loses at most one epoch, and a resumed epoch
replays exactly the randomness it had (seeds are a function of the run's seed, the stage and the epoch).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from pkd.config import OptimConfig
from pkd.data import DatasetSpec, Split, iterate_batches
from pkd.distributed import SINGLE, World, all_reduce_sums
from pkd.runs.schema import Metric
from pkd.train.recorder import FitState, Recorder

logger = logging.getLogger(__name__)

STATUS_EVERY_S = 1.0  # live status.json updates during an epoch
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], dict]  # (out (B, C), idx (B,), x) -> parts


def stage_seed(seed: int, stage: str, k: int = 0, epoch: int = 0) -> int:
    """A fixed seed per (stage, student, epoch): resuming at an epoch boundary replays the same randomness."""
    code = {"teacher": 1, "student": 2, "init": 3, "pretrain": 4, "prompt": 5}[stage]  # a video teacher's stages 1, 3
    return (seed * 1_000_003 + code * 10_007 + k * 101 + epoch) % (2**62)


@dataclass(frozen=True)
class Placement:
    """Where a stage trains: the device, the world of ranks, and the autocast dtype (None: plain fp32)."""

    device: torch.device
    world: World = SINGLE
    autocast: torch.dtype | None = None

    def precision_context(self):
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast)


@dataclass
class Trainer:
    """The optimiser side of one stage: what `train_epoch` steps (the DDP wrapper when distributed)."""

    model: nn.Module  # what the forward runs through (DDP(model) across ranks, else the model)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None = field(default=None)

    def step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:  # fp16: scale the loss so small gradients survive
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.scheduler.step()


@dataclass(frozen=True)
class Stage:
    """What is being fit: the teacher (k = 0) or student k, with its optimiser settings and the run's seed."""

    name: str  # "teacher" | "student"
    k: int
    optim: OptimConfig
    seed: int

    def info(self, epoch: int, progress: float) -> dict:
        """The status fields of this stage at (1-based) `epoch`, `progress` in [0, 1] of the whole stage."""
        return {"stage": self.name, "student": self.k, "epoch": epoch, "epochs": self.optim.epochs,
                "progress": progress}


def make_optimizer(model: nn.Module, optim: OptimConfig, steps_per_epoch: int):
    """AdamW with a one-cycle learning rate over all the stage's steps."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=optim.lr, total_steps=max(1, optim.epochs * steps_per_epoch), pct_start=0.15)
    return optimizer, scheduler


def fit(
    model: nn.Module,
    stage: Stage,
    train: Split,
    data_spec: DatasetSpec,
    loss_fn: LossFn,
    evaluate: Callable[[], dict],
    recorder: Recorder,
    place: Placement,
    resume: FitState | None = None,
) -> None:
    """Train `model` for the stage's epochs; loss_fn(out, idx, x) gets the batch's sample indices (for cached
    targets) and its (possibly augmented) inputs (for targets computed on the fly). Across ranks only `model` is
    wrapped in DDP (frozen students and the teacher stay outside it: they get no gradients)."""
    steps_per_epoch = math.ceil(len(train.labels) / stage.optim.batch_size)
    optimizer, scheduler = make_optimizer(model, stage.optim, steps_per_epoch)
    start_epoch = 0
    if resume is not None and resume.model is not None:
        model.load_state_dict(resume.model)
        optimizer.load_state_dict(resume.optimizer)
        scheduler.load_state_dict(resume.scheduler)
        start_epoch = resume.epoch
        logger.info("resuming %s %d at epoch %d", stage.name, stage.k, start_epoch + 1)
    wrapped = DistributedDataParallel(model) if place.world.distributed else model
    scaler = torch.amp.GradScaler(place.device.type) if place.autocast == torch.float16 else None
    trainer = Trainer(wrapped, optimizer, scheduler, scaler)
    for epoch in range(start_epoch, stage.optim.epochs):
        t0 = time.time()
        parts = train_epoch(trainer, stage, epoch, train, data_spec, loss_fn, recorder, place)
        results = evaluate()
        record = {**stage.info(epoch + 1, (epoch + 1) / stage.optim.epochs), "seconds": time.time() - t0,
                  "lr": scheduler.get_last_lr()[0], **{f"{Metric.TRAIN_PREFIX}{name}": v for name, v in parts.items()},
                  **results}
        del record["progress"]
        recorder.epoch_done({"stage": stage.name, "k": stage.k, "epoch": epoch + 1, "model": model.state_dict(),
                             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                             "rng": torch.get_rng_state(), "seed": stage.seed, "record": record}, record)
        logger.info("%s %d epoch %d/%d: %s", stage.name, stage.k, epoch + 1, stage.optim.epochs,
                    ", ".join(f"{key} {value:.4f}" for key, value in record.items() if isinstance(value, float)))
        recorder.progress(stage.info(epoch + 1, (epoch + 1) / stage.optim.epochs), done_epoch=True, **results)


def train_epoch(trainer: Trainer, stage: Stage, epoch: int, train: Split, data_spec: DatasetSpec, loss_fn: LossFn,
                recorder: Recorder, place: Placement) -> dict[str, float]:
    """One seeded pass over `train` (epoch is 0-based); returns the sample-weighted mean of each loss part (over
    every rank's samples)."""
    world, non_blocking = place.world, place.device.type == "cuda"
    torch.manual_seed(stage_seed(stage.seed, stage.name, stage.k, epoch) + world.rank)  # dropout: own masks per rank
    generator = torch.Generator().manual_seed(stage_seed(stage.seed, stage.name, stage.k, epoch))  # shared order
    steps_per_epoch = math.ceil(len(train.labels) / stage.optim.batch_size)
    trainer.model.train()
    count, sums, last_status = 0, {}, 0.0
    tail = len(train.labels) % stage.optim.batch_size  # a last global batch too small to give every rank a sample
    batches = iterate_batches(train, stage.optim.batch_size, data_spec, shuffle=True, generator=generator,
                              augment=stage.optim.augment, rank=world.rank, world_size=world.size,
                              drop_last=world.distributed and 0 < tail < world.size)
    for step, batch in enumerate(batches):
        x, y = batch.x.to(place.device, non_blocking=non_blocking), batch.y.to(place.device, non_blocking=non_blocking)
        with place.precision_context():
            out = loss_fn(trainer.model(x), batch.idx, x)
        loss = out["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{stage.name} {stage.k}: loss became {loss.item()} at epoch {epoch + 1} "
                                     f"step {step}; lower the learning rate (optim.lr)")
        trainer.step(loss)
        n = len(y)
        count += n
        for name, value in out.items():
            sums[name] = sums.get(name, 0.0) + float(value.detach()) * n
        if time.time() - last_status > STATUS_EVERY_S:
            last_status = time.time()
            info = stage.info(epoch + 1, (epoch + (step + 1) / steps_per_epoch) / stage.optim.epochs)
            recorder.progress({**info, "loss": sums["loss"] / count}, durable=False)  # a heartbeat: no fsync
    totals = all_reduce_sums({**sums, "__count": count}, world)  # the epoch's figures over every rank's samples
    return {name: value / max(totals["__count"], 1) for name, value in totals.items() if name != "__count"}
