"""The teacher stage of a run: load the run's own teacher, or load `teacher.checkpoint`, or train one; then its
logits on every split (cached) and its figures.

What differs between teacher archs is a TeacherTraining, chosen through a registry keyed by teacher.arch: the
default trains an image teacher with cross-entropy and loads pkd state dicts; the video teacher's
(pkd.train.video_stage, registered under config.VIDEO_TEACHER) runs ViFi-CLIP's stages. So this module, and the
progressive run that calls it, import no video code.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Callable, TypeVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from pkd.artifacts import load_saved_weights, load_teacher_weights
from pkd.config import RunConfig
from pkd.data import DatasetSpec, get_dataset_spec
from pkd.evaluate import accuracy, teacher_row
from pkd.models import build_model, teacher_data_params
from pkd.runs import read_teacher_logits, teacher_logits_beside
from pkd.runs.schema import Metric, MetricEvent
from pkd.train.context import RunContext, weights_digest
from pkd.train.loop import Stage, fit, stage_seed

logger = logging.getLogger(__name__)

__all__ = ["TeacherTraining", "register_teacher_training", "teacher_training", "teacher_spec", "teacher_stage",
           "teacher_logits", "logits_key"]


class TeacherTraining:
    """How a run checks, loads and trains a teacher of one arch. This default serves every image teacher: any
    dataset, a `teacher.checkpoint` is a pkd state dict, nothing follows loading it, training is `fit` on the
    labels (cross-entropy). An arch that differs registers a subclass (`register_teacher_training`)."""

    # pkd.train.specs.check_models builds the teacher on this device: "meta" allocates nothing, so a huge model
    # cannot exhaust memory; a teacher whose constructor computes (the video teacher's prompt cache) needs "cpu"
    check_device = "meta"

    def check_data(self, cfg: RunConfig, data_spec: DatasetSpec) -> None:
        """Refuse a dataset this teacher cannot read (ValueError naming the fields), before anything trains."""

    def load_file(self, path: str, teacher: nn.Module) -> dict:
        """Load `teacher.checkpoint` into the teacher and return its state dict (a pkd state dict)."""
        return load_teacher_weights(path, teacher)

    def after_load(self, ctx: RunContext, teacher: nn.Module) -> bool:
        """Train what a loaded teacher still learns in this run; returns whether its weights changed."""
        return False

    def train(self, ctx: RunContext, teacher: nn.Module, model_spec: dict) -> None:
        """Fit the teacher on the labels (cross-entropy) and save it."""
        train, val = ctx.splits["train"], ctx.splits["val"]

        def loss(logits, idx, x):  # noqa: ARG001
            return {"loss": F.cross_entropy(logits, train.labels[idx].to(logits.device))}

        def evaluate():
            return {f"val{Metric.ACC_SUFFIX}": accuracy(ctx.logits(teacher, val.inputs), val.labels)}

        stage = Stage("teacher", 0, ctx.cfg.teacher.optim, ctx.cfg.seed)
        fit(teacher, stage, train, ctx.data_spec, loss, evaluate, ctx.recorder, ctx.place,
            ctx.recorder.resume_state("teacher", 0))
        ctx.recorder.save_teacher({k: v.cpu() for k, v in teacher.state_dict().items()}, model_spec)
        ctx.recorder.stage_done()


TrainingT = TypeVar("TrainingT", bound=type[TeacherTraining])
TEACHER_TRAININGS: dict[str, TeacherTraining] = {}
_DEFAULT = TeacherTraining()


def register_teacher_training(arch: str) -> Callable[[TrainingT], TrainingT]:
    """Class decorator: the teacher stage checks, loads and trains teachers of this arch with (an instance of)
    the decorated TeacherTraining subclass."""
    def decorator(cls: TrainingT) -> TrainingT:
        if arch in TEACHER_TRAININGS:
            raise ValueError(f"teacher arch '{arch}' already has a training ({type(TEACHER_TRAININGS[arch]).__name__})")
        TEACHER_TRAININGS[arch] = cls()
        return cls

    return decorator


def teacher_training(arch: str) -> TeacherTraining:
    """The TeacherTraining of a teacher arch (the default unless one is registered)."""
    return TEACHER_TRAININGS.get(arch, _DEFAULT)


def teacher_spec(cfg: RunConfig, data_spec: DatasetSpec | None = None) -> dict:
    """Spec {kind, arch, params} of the teacher: the config's params over what it takes from the dataset (a video
    teacher's class names, channels, normalisation and side: pkd.models.teacher_data_params), so that
    build_model(spec) alone rebuilds it."""
    data_spec = data_spec or get_dataset_spec(cfg.data.dataset)
    params = {**teacher_data_params(cfg.teacher.arch, data_spec), **cfg.teacher.params}
    return {"kind": "teacher", "arch": cfg.teacher.arch, "params": params}


def teacher_stage(ctx: RunContext) -> tuple[nn.Module, dict[str, torch.Tensor], dict]:
    """Load, copy or train the teacher; returns it (eval mode), its logits per split (N, C) and its figures."""
    cfg, run = ctx.cfg, ctx.run
    training = teacher_training(cfg.teacher.arch)
    model_spec = teacher_spec(cfg, ctx.data_spec)
    torch.manual_seed(stage_seed(cfg.seed, "init", 0))
    teacher = build_model(model_spec).to(ctx.device)
    if run.has_teacher():
        load_saved_weights(teacher, cfg.to_dict(), run.load_teacher(), "teacher", run.teacher_path())
    elif cfg.teacher.checkpoint:
        state = training.load_file(cfg.teacher.checkpoint, teacher)
        ctx.recorder.log(MetricEvent.TEACHER_LOADED, source=cfg.teacher.checkpoint)
        if training.after_load(ctx, teacher):  # e.g. bridge and prompt on a loaded (fine-tuned) video teacher
            state = {k: v.cpu() for k, v in teacher.state_dict().items()}
        ctx.recorder.save_teacher(state, model_spec)
    else:
        training.train(ctx, teacher, model_spec)
    logits = teacher_logits(ctx, teacher)  # (N, C) per split
    figures = teacher_row(cfg.teacher.arch, teacher.cpu(), ctx.data_spec, logits, ctx.splits)
    teacher.to(ctx.device)
    ctx.recorder.log_once(MetricEvent.TEACHER_DONE, {}, **figures)
    return teacher.eval(), logits, figures


def teacher_logits(ctx: RunContext, teacher: nn.Module) -> dict[str, torch.Tensor]:
    """The teacher's logits (N, C) on every split. Computing them is most of a short run's time on a CPU (a forward
    pass over 70,000 images), so they are cached with a key (this teacher's weights, the splits, device type,
    precision): read from this run's cache or the one beside `teacher.checkpoint` when the key matches, else
    computed (identical figures either way on the same machine) and cached in this run."""
    key = logits_key(ctx, teacher)
    candidates = [ctx.run.teacher_logits_path()]
    if ctx.cfg.teacher.checkpoint:
        candidates.append(teacher_logits_beside(ctx.cfg.teacher.checkpoint))
    for path in candidates:
        cached = read_teacher_logits(path, key)
        if cached is not None:
            logger.info("teacher logits read from %s (made with this teacher, data, device and precision)", path)
            return cached
    logits = {name: ctx.logits(teacher, split.inputs) for name, split in ctx.splits.items()}  # (N, C) each
    ctx.recorder.save_teacher_logits(key, logits)
    return logits


def logits_key(ctx: RunContext, teacher: nn.Module) -> dict:
    """What cached teacher logits must have been made with: the teacher's weights, each split's exact inputs and
    labels, the device type and the precision."""
    splits = {}
    for name, split in ctx.splits.items():
        h = hashlib.sha256(split.inputs.contiguous().numpy())
        h.update(split.labels.contiguous().numpy())
        splits[name] = {"n": len(split.labels), "sha256": h.hexdigest()}
    return {"teacher": weights_digest(teacher.state_dict(), full=True), "device": ctx.device.type,
            "precision": str(ctx.place.autocast or torch.float32).replace("torch.", ""), "splits": splits}
