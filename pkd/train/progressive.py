"""Progressive distillation (B-DISTIL style): a teacher, then students k = 1..K trained one after another.

Read `train_run` top to bottom: data, the teacher stage (pkd.train.teacher: train or load it, cache its logits
once), the student
stages, the anytime curve. Each student is fit with the ones before it frozen; in `residual` mode it learns what
the ensemble before it still lacks, F_k = s_k * F_(k-1) + z_k. Safe to call again after a kill: saved models are
loaded, the interrupted stage resumes from its last epoch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from pkd.artifacts import load_ensemble, load_saved_weights
from pkd.config import DistillConfig, OptimConfig, RunConfig, config_from_dict
from pkd.data import Split
from pkd.devices import autocast_dtype, resolve_device
from pkd.distributed import SINGLE, World
from pkd.data.run_data import load_run_data
from pkd.evaluate import (REPORTED_SPLITS, accuracy, before_adding, end_of_run_figures, prefix_row, run_summary,
                          split_accuracies)
from pkd.models import build_model
from pkd.models.ensemble import PrefixSums, accumulate
from pkd.runs import Run
from pkd.runs.schema import Metric, MetricEvent, PrefixRow, SavedModel, TeacherFigures
from pkd.train.losses import boost_weights, kd_loss
from pkd.train.context import RunContext, weights_digest
from pkd.train.loop import Placement, Stage, fit, stage_seed
from pkd.train.recorder import NullRecorder, ProgressFn, Recorder
from pkd.train.specs import soft_target_groups, student_specs
from pkd.train.teacher import teacher_stage

logger = logging.getLogger(__name__)


def train_run(run: Run, device_name: str = "auto", progress: ProgressFn | None = None, world: World = SINGLE
              ) -> dict:
    """Train (or resume) everything a run's config asks for; returns the summary. Safe to call again after a kill.

    Under torchrun every rank calls this; rank 0 alone writes (the others get a NullRecorder).
    """
    cfg = config_from_dict(run.config())
    device = resolve_device(device_name if device_name != "config" else cfg.device)
    if device.type == "cuda" and world.distributed:
        device = torch.device("cuda", world.local_rank)
    place = Placement(device, world, autocast_dtype(cfg.precision, device))
    torch.manual_seed(stage_seed(cfg.seed, "init"))
    data_spec, splits = load_run_data(cfg)
    check_world_fits(cfg, splits, world)
    recorder = Recorder(run, progress) if world.is_writer else NullRecorder(run)
    ctx = RunContext(cfg, run, recorder, data_spec, splits, place)
    ctx.recorder.status(stage="teacher", student=0, progress=0.0, device=str(device), world_size=world.size,
                        precision=str(place.autocast or torch.float32).replace("torch.", ""))
    teacher, teacher_logits, teacher_figures = teacher_stage(ctx)
    so_far, k_planned = student_stages(ctx, teacher, teacher_logits["train"], teacher_figures)
    summary = run_summary(cfg, teacher_figures, so_far.rows, k_planned)
    if world.is_writer:  # the saved ensemble, judged by the config trained with, on its students' logits
        ensemble = load_ensemble(run, config=cfg.to_dict())
        summary.update(end_of_run_figures(summary, ensemble, teacher, data_spec, splits, so_far.logits,
                                          teacher_logits["test"]))
        ctx.recorder.summary(summary)
    del teacher
    return summary


def check_world_fits(cfg: RunConfig, splits: dict[str, Split], world: World) -> None:
    """Every rank needs samples of every global batch: refuse a world larger than a batch or the data."""
    sizes = {"teacher.optim.batch_size": cfg.teacher.optim.batch_size,
             "students.optim.batch_size": cfg.students.optim.batch_size, "the training split": len(splits["train"])}
    for where, n in sizes.items():
        if n < world.size:
            raise ValueError(f"{where} is {n}, smaller than the world size {world.size}: use fewer processes")


# ----------------------------------------------------------------------------------------------- the students

class WithPrevScale(nn.Module):
    """Student k and the scalar s_k of its residual ensemble E_k = s_k * E_(k-1) + z_k, trained together (one
    optimiser, one resume checkpoint) and saved apart: the student's weights and its prev_scale."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student
        self.prev_scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x)


@dataclass
class StudentObjective:
    """The KD loss of student k on the ensemble it completes, F_k = s_k * F_(k-1) + z_k (residual) or z_k alone;
    with `distill.solo_weight` w a residual student's loss is (1 - w) * L(F_k) + w * L(z_k), and with
    `distill.prefix_loss: mean` its ensemble term reads F_k / k.

    Without augmentation the targets are cached: the teacher's logits and F_(k-1) on the clean training set. With
    augmented batches (`fresh`) the teacher and the frozen students are run on the batch itself.
    """

    distill: DistillConfig
    labels: torch.Tensor  # (N,) of the training split
    teacher: nn.Module
    teacher_logits: torch.Tensor  # (N, C) cached
    prev_logits: torch.Tensor | None  # (N, C) cached F_(k-1); None unless residual with k > 1
    frozen: list[tuple[nn.Module, float]]  # students 1..k-1 and their s_j; empty unless residual
    prev_scale: torch.Tensor  # s_k: a trained parameter, or 1
    weights: torch.Tensor | None  # (N,) boosting weights
    fresh: bool = False
    groups: torch.Tensor | None = None  # (C,) class groups when only the teacher's group sums are distilled
    k: int = 1  # the student's place: F_k sums k students' logits

    def __call__(self, logits: torch.Tensor, idx: torch.Tensor, x: torch.Tensor) -> dict:
        dev = logits.device
        if self.fresh:  # augmented inputs: the cached logits of the clean images do not apply
            with torch.no_grad():
                target, before = self.teacher(x), None
                for student, scale in self.frozen:
                    before = accumulate(before, student(x), scale)
        else:
            target = self.teacher_logits[idx].to(dev)
            before = self.prev_logits[idx].to(dev) if self.prev_logits is not None else None
        labels = self.labels[idx].to(dev)
        w = self.weights[idx].to(dev) if self.weights is not None else None

        def loss_of(out: torch.Tensor) -> dict:
            return kd_loss(out, target, labels, self.distill.alpha, self.distill.temperature, w, self.groups)

        prefix = accumulate(before, logits, self.prev_scale)  # F_k (B, C)
        ensemble = loss_of(prefix / self.k if self.distill.prefix_loss == "mean" and before is not None else prefix)
        solo_weight = self.distill.solo_weight if before is not None else 0.0
        if not solo_weight:
            return ensemble
        solo = loss_of(logits)  # on z_k alone
        return {"loss": (1 - solo_weight) * ensemble["loss"] + solo_weight * solo["loss"],
                "hard": ensemble["hard"], "soft": ensemble["soft"], "solo": solo["loss"]}


@dataclass
class StudentsSoFar:
    """The frozen students 1..k-1 and the running sums of their outputs on every split."""

    sums: dict[str, PrefixSums]
    frozen: list[tuple[nn.Module, float]] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    logits: dict[str, list[torch.Tensor]] = field(
        default_factory=lambda: {name: [] for name in REPORTED_SPLITS})  # every student's (N, C) on val and test


def student_stages(ctx: RunContext, teacher: nn.Module, teacher_train_logits: torch.Tensor, teacher_figures: dict
                   ) -> tuple[StudentsSoFar, int]:
    """Train (or load) students 1..K in order; after each, write its prefix row. Returns them all and K."""
    cfg, run, recorder = ctx.cfg, ctx.run, ctx.recorder
    specs = student_specs(cfg, ctx.data_spec)
    so_far = StudentsSoFar({name: PrefixSums(cfg.distill.mode) for name in ctx.splits})
    for k, model_spec in enumerate(specs, start=1):
        torch.manual_seed(stage_seed(cfg.seed, "init", k))
        student = build_model(model_spec).to(ctx.device)
        if k <= run.students_saved():
            saved = run.load_student(k)
            load_saved_weights(student, cfg.to_dict(), saved, "students", run.student_path(k))
            scale = saved[SavedModel.PREV_SCALE]
        else:
            scale = train_student(ctx, k, student, model_spec, teacher, teacher_train_logits, so_far)
        row = add_student(ctx, so_far, k, student, model_spec, scale, teacher_figures[TeacherFigures.FLOPS],
                          last=k == len(specs))
        recorder.prefix_table(so_far.rows)
        recorder.log_once(MetricEvent.STUDENT_DONE, {PrefixRow.K: k}, spec=model_spec,
                          **{key: v for key, v in row.items() if key != PrefixRow.K})
        recorder.summary(run_summary(cfg, teacher_figures, so_far.rows, len(specs)))
    return so_far, len(specs)


def add_student(ctx: RunContext, so_far: StudentsSoFar, k: int, student: nn.Module, model_spec: dict,
                scale: float, teacher_flops: int, last: bool = False) -> dict:
    """Freeze student k into the ensemble: its logits join the sums; its prefix row is measured and kept. The
    training split's sum serves only the students after it, so the `last` student is not run over it."""
    accuracies = {}
    for name, split in ctx.splits.items():
        if last and name not in REPORTED_SPLITS:
            continue
        logits = ctx.logits(student, split.inputs)  # (N, C)
        before = before_adding(so_far.sums[name]) if name in REPORTED_SPLITS else None
        so_far.sums[name].add(logits, scale)
        if name in REPORTED_SPLITS:
            so_far.logits[name].append(logits)
            accuracies.update(split_accuracies(name, so_far.sums[name], logits, split.labels, before))
    row = prefix_row(k, model_spec["arch"], student.cpu(), ctx.data_spec, so_far.rows, teacher_flops, scale,
                     accuracies)
    student.to(ctx.device)
    so_far.rows.append(row)
    so_far.frozen.append((student.eval(), scale))
    return row


def train_student(ctx: RunContext, k: int, student: nn.Module, model_spec: dict, teacher: nn.Module,
                  teacher_train_logits: torch.Tensor, so_far: StudentsSoFar) -> float:
    """Fit student k with students 1..k-1 frozen and save it; returns its learned prev_scale s_k (1 if none)."""
    cfg, train, val = ctx.cfg, ctx.splits["train"], ctx.splits["val"]
    ctx.recorder.status(stage="student", phase=None, student=k, epoch=0, progress=0.0)  # no teacher phase left
    optim = OptimConfig(**model_spec["optim"])
    residual = cfg.distill.mode == "residual" and k > 1  # student 1 has no ensemble before it
    learned = residual and cfg.distill.learn_prev_scale
    trained = WithPrevScale(student).to(ctx.device) if learned else student
    prev_scale = trained.prev_scale if learned else torch.ones(())
    weights = None
    if cfg.distill.reweight == "boost" and k > 1:
        weights = boost_weights(so_far.sums["train"].log_probs(), train.labels, cfg.distill.reweight_beta)
    objective = StudentObjective(cfg.distill, train.labels, teacher, teacher_train_logits,
                                 so_far.sums["train"].logits if residual else None,
                                 so_far.frozen if residual else [], prev_scale, weights, fresh=optim.augment,
                                 groups=soft_target_groups(cfg, ctx.data_spec), k=k)

    def evaluate():
        logits = ctx.logits(student, val.inputs)
        scale = float(prev_scale.detach())
        return {f"val{Metric.ACC_SUFFIX}": accuracy(so_far.sums["val"].log_probs_with(logits, scale), val.labels),
                PrefixRow.SOLO_VAL_ACC: accuracy(logits, val.labels),
                **({PrefixRow.PREV_SCALE: scale} if learned else {})}

    fit(trained, Stage("student", k, optim, cfg.seed), train, ctx.data_spec, objective, evaluate, ctx.recorder,
        ctx.place, ctx.recorder.resume_state("student", k))
    scale = float(prev_scale.detach())
    weights = {name: v.cpu() for name, v in student.state_dict().items()}
    logger.info("student %d weights sha256 %s (rank %d of %d)", k, weights_digest(weights), ctx.place.world.rank,
                ctx.place.world.size)
    ctx.recorder.save_student(k, weights, model_spec, scale)
    ctx.recorder.stage_done()
    return scale
