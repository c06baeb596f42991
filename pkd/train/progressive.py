"""Progressive distillation (B-DISTIL style): a teacher, then students k = 1..K trained one after another.

Read `train_run` top to bottom: data, the teacher stage (train or load it, cache its logits once), the student
stages, the anytime curve. Each student is fit with the ones before it frozen; in `residual` mode it learns what
the ensemble before it still lacks, F_k = s_k * F_(k-1) + z_k. Safe to call again after a kill: saved models are
loaded, the interrupted stage resumes from its last epoch.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from pkd.artifacts import load_ensemble, load_saved_weights
from pkd.config import DistillConfig, OptimConfig, RunConfig, config_from_dict
from pkd.data import DatasetSpec, Split
from pkd.data.moving_mnist import digit_of
from pkd.devices import autocast_dtype, resolve_device
from pkd.distributed import SINGLE, World
from pkd.data.run_data import load_run_data
from pkd.evaluate import (EVAL_BATCH, REPORTED_SPLITS, accuracy, end_of_run_figures, predict_logits, prefix_row,
                          run_summary, split_accuracies, teacher_row)
from pkd.models import build_model
from pkd.models.clip import ViFiCLIP, load_clip_weights
from pkd.models.ensemble import PrefixSums, accumulate
from pkd.runs import Run, read_teacher_logits, teacher_logits_beside
from pkd.train.losses import boost_weights, kd_loss
from pkd.train.loop import Placement, Stage, fit, stage_seed
from pkd.train.recorder import FitState, NullRecorder, ProgressFn, Recorder, checkpoint_state
from pkd.train.specs import load_teacher_file, soft_target_groups, student_specs, teacher_spec
from pkd.train.video_teacher import (CAPTION, LABEL_SMOOTHING, MAX_LOGIT_SCALE, FrameTextPretraining,
                                     bridge_and_prompt)

logger = logging.getLogger(__name__)


@dataclass
class RunContext:
    """What every stage of one training run shares."""

    cfg: RunConfig
    run: Run
    recorder: Recorder
    data_spec: DatasetSpec
    splits: dict[str, Split]
    place: Placement

    @property
    def device(self) -> torch.device:
        return self.place.device

    def logits(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """(N, C) logits of `model` on raw inputs, computed in shards across ranks, whole on every rank."""
        return predict_logits(model, self.data_spec, inputs, self.device, self.place.world)


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
        summary.update(end_of_run_figures(summary, ensemble, teacher, data_spec, splits, so_far.logits))
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


# ----------------------------------------------------------------------------------------------- the teacher

def teacher_stage(ctx: RunContext) -> tuple[nn.Module, dict[str, torch.Tensor], dict]:
    """Load, copy or train the teacher; returns it (eval mode), its logits per split (N, C) and its figures."""
    cfg, run = ctx.cfg, ctx.run
    model_spec = teacher_spec(cfg, ctx.data_spec)
    torch.manual_seed(stage_seed(cfg.seed, "init", 0))
    teacher = build_model(model_spec).to(ctx.device)
    if run.has_teacher():
        load_saved_weights(teacher, cfg.to_dict(), run.load_teacher(), "teacher", run.teacher_path())
    elif cfg.teacher.checkpoint:
        state = load_teacher_file(cfg.teacher.checkpoint, teacher)
        ctx.recorder.log("teacher_loaded", source=cfg.teacher.checkpoint)
        if cfg.teacher.prompt.epochs:  # bridge and prompt on a loaded (fine-tuned) video teacher
            prompt_stage(ctx, teacher, TeacherPhase(ctx.recorder, "prompt", 0.0, 1.0))
            state = {k: v.cpu() for k, v in teacher.state_dict().items()}
        ctx.recorder.save_teacher(state, model_spec)
    else:
        train_teacher(ctx, teacher, model_spec)
    logits = teacher_logits(ctx, teacher)  # (N, C) per split
    figures = teacher_row(cfg.teacher.arch, teacher.cpu(), ctx.data_spec, logits, ctx.splits)
    teacher.to(ctx.device)
    ctx.recorder.log_once("teacher_done", {}, **figures)
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


def train_teacher(ctx: RunContext, teacher: nn.Module, model_spec: dict) -> None:
    """Fit the teacher on the labels (cross-entropy) and save it."""
    if isinstance(teacher, ViFiCLIP):
        return train_video_teacher(ctx, teacher, model_spec)
    train, val = ctx.splits["train"], ctx.splits["val"]

    def loss(logits, idx, x):  # noqa: ARG001
        return {"loss": F.cross_entropy(logits, train.labels[idx].to(logits.device))}

    def evaluate():
        return {"val_acc": accuracy(ctx.logits(teacher, val.inputs), val.labels)}

    stage = Stage("teacher", 0, ctx.cfg.teacher.optim, ctx.cfg.seed)
    fit(teacher, stage, train, ctx.data_spec, loss, evaluate, ctx.recorder, ctx.place,
        ctx.recorder.resume_state("teacher", 0))
    ctx.recorder.save_teacher({k: v.cpu() for k, v in teacher.state_dict().items()}, model_spec)
    ctx.recorder.stage_done()


class TeacherPhase:
    """What a video teacher's phase writes through (the loop calls progress and epoch_done; the rest goes to the
    run's recorder): status and metrics say stage "teacher" with the phase ("pretrain" or "finetune") and progress
    runs over the whole teacher stage, so readers see one teacher; the checkpoint keeps the phase's own stage name,
    so a resume tells the phases apart."""

    def __init__(self, recorder: Recorder, phase: str, start: float, share: float) -> None:
        self.recorder, self.phase, self.start, self.share = recorder, phase, start, share

    def __getattr__(self, name: str):
        return getattr(self.recorder, name)

    def progress(self, info: dict, **extra) -> None:
        self.recorder.progress({**info, "stage": "teacher", "phase": self.phase,
                                "progress": self.start + self.share * info["progress"]}, **extra)

    def epoch_done(self, checkpoint: dict, record: dict) -> None:
        record = {**record, "stage": "teacher", "phase": self.phase}
        self.recorder.epoch_done({**checkpoint, "record": record}, record)

    def resume_state(self, stage: str, k: int) -> FitState | None:
        """The phase's checkpoint (stage "pretrain" or "teacher"); re-logs its epoch record if a kill lost it."""
        state = checkpoint_state(self.recorder.run, stage, k)
        if state and state.record and not self.recorder.has_event("epoch", stage="teacher", phase=self.phase,
                                                                   epoch=state.epoch):
            self.recorder.log("epoch", **state.record)
        return state


def train_video_teacher(ctx: RunContext, teacher: ViFiCLIP, model_spec: dict) -> None:
    """ViFi-CLIP's stages, from `teacher.init`'s weights if given (else a random init):
    1. `teacher.pretrain`: CLIP's image-text pretraining on every frame of the training clips, each captioned
       "a photo of a <digit>." (its clip's digit), contrastive against the 10 captions (FrameTextPretraining);
    2. `teacher.optim`: ViFi fine-tuning of both towers on the clips against the class prompts, cross-entropy with
       ViFi-CLIP's label smoothing 0.1 (a prompt context, if the teacher has one, stays frozen here);
    3. `teacher.prompt`: bridge and prompt, only the context vectors learnt (`prompt_stage`).
    Stages 1 and 2 are ordinary pkd fits (seeded epochs, a resume checkpoint after every epoch) that validate the
    clip classifier (val_acc: zero-shot through the class prompts after stage 1); a run killed in either resumes at
    its last epoch, stage 1's last checkpoint staying until stage 2's first replaces it. Stage 3 is short and
    seeded: a run killed in it runs it again from stage 2's end (same result)."""
    cfg, train, val = ctx.cfg, ctx.splits["train"], ctx.splits["val"]
    if cfg.teacher.init:
        load_clip_weights(teacher, cfg.teacher.init)
        ctx.recorder.log_once("teacher_init", {}, source=cfg.teacher.init)

    def evaluate():
        with torch.no_grad():  # CLIP's cap on the temperature, once an epoch
            teacher.clip.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        return {"val_acc": accuracy(ctx.logits(teacher, val.inputs), val.labels)}

    pretrain, prompt = cfg.teacher.pretrain, cfg.teacher.prompt
    epochs = pretrain.epochs + cfg.teacher.optim.epochs + prompt.epochs
    share, prompt_share = pretrain.epochs / epochs, prompt.epochs / epochs
    finetune = TeacherPhase(ctx.recorder, "finetune", share, 1 - share - prompt_share)
    resume = finetune.resume_state("teacher", 0)
    if pretrain.epochs and resume is None:  # fine-tuning has not begun
        phase = TeacherPhase(ctx.recorder, "pretrain", 0.0, share)
        model = FrameTextPretraining(teacher, [CAPTION.format(d) for d in range(10)]).to(ctx.device)
        digits = digit_of(train.labels)  # (N,) caption of each training clip

        def image_text_loss(image, idx, x):  # noqa: ARG001
            return {"loss": model.loss(image, digits[idx])}

        fit(model, Stage("pretrain", 0, pretrain, cfg.seed), train, ctx.data_spec, image_text_loss, evaluate, phase,
            ctx.place, phase.resume_state("pretrain", 0))

    def loss(logits, idx, x):  # noqa: ARG001
        labels = train.labels[idx].to(logits.device)
        return {"loss": F.cross_entropy(logits, labels, label_smoothing=LABEL_SMOOTHING)}

    if pretrain.epochs:  # the text tower trained: the context reads as ctx_init through it again
        teacher.reset_prompt_context()
    if teacher.prompt_ctx is not None:
        teacher.prompt_ctx.requires_grad_(False)  # learnt in stage 3 only, as ViFi-CLIP's bridge and prompt
    fit(teacher, Stage("teacher", 0, cfg.teacher.optim, cfg.seed), train, ctx.data_spec, loss, evaluate, finetune,
        ctx.place, resume)
    if teacher.prompt_ctx is not None:
        teacher.prompt_ctx.requires_grad_(True)
    teacher.eval()
    teacher.refresh_text_cache()  # the text tower trained: the class prompts' cache (saved with it) follows
    if prompt.epochs:
        prompt_stage(ctx, teacher, TeacherPhase(ctx.recorder, "prompt", 1 - prompt_share, prompt_share))
    ctx.recorder.save_teacher({k: v.cpu() for k, v in teacher.state_dict().items()}, model_spec)
    ctx.recorder.stage_done()


def prompt_stage(ctx: RunContext, teacher: ViFiCLIP, phase: TeacherPhase) -> None:
    """ViFi-CLIP's "bridge and prompt" (`teacher.prompt`): both towers frozen, only the prompt context learnt on
    the training clips. Logs the teacher's val/test accuracy before it (event prompt_start) and val_acc after
    every epoch (the frozen image tower's clip embeddings are computed once, so an epoch costs K text passes)."""
    cfg, spec, device = ctx.cfg, ctx.data_spec, ctx.device
    train = ctx.splits["train"]
    video = {}
    with torch.no_grad():
        for name in ("val", "test"):
            video[name] = torch.cat([teacher.video_embedding(spec.normalize(x).to(device))
                                     for x in ctx.splits[name].inputs.split(EVAL_BATCH)])  # (N, E)

    def accuracies(names=("val", "test")) -> dict:
        with torch.no_grad():
            text = teacher.text_embeddings()  # (K, E)
            return {f"{name}_acc": accuracy(teacher.head(video[name], text, teacher.clip.logit_scale).cpu(),
                                            ctx.splits[name].labels) for name in names}

    phase.log_once("prompt_start", {}, **accuracies())
    start, epochs = time.time(), cfg.teacher.prompt.epochs

    def on_epoch(epoch: int, loss: float) -> None:
        record = {"stage": "teacher", "phase": "prompt", "student": 0, "epoch": epoch, "epochs": epochs,
                  "seconds": time.time() - start, "train_loss": loss, **accuracies(("val",))}
        phase.log_once("epoch", {key: record[key] for key in ("stage", "phase", "epoch")},
                       **{key: v for key, v in record.items() if key not in ("stage", "phase", "epoch")})
        phase.progress({"stage": "teacher", "student": 0, "epoch": epoch, "epochs": epochs,
                        "progress": epoch / epochs}, done_epoch=True, val_acc=record["val_acc"])

    bridge_and_prompt(teacher, spec.normalize(train.inputs), train.labels, cfg.teacher.prompt, n_ctx=teacher.n_ctx,
                      ctx_init=teacher.ctx_init, n_ctx_vision=teacher.prompt_params()["n_ctx_vision"],
                      label_smoothing=LABEL_SMOOTHING, seed=stage_seed(cfg.seed, "prompt"), on_epoch=on_epoch)
    teacher.to(device).eval()


# ----------------------------------------------------------------------------------------------- the students

def weights_digest(state_dict: dict[str, torch.Tensor], full: bool = False) -> str:
    """sha256 of a state dict's names and values (ranks that trained together log the same digest); 16 hex
    digits unless `full`."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        h.update(name.encode() + state_dict[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest() if full else h.hexdigest()[:16]


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
            scale = saved["prev_scale"]
        else:
            scale = train_student(ctx, k, student, model_spec, teacher, teacher_train_logits, so_far)
        row = add_student(ctx, so_far, k, student, model_spec, scale, teacher_figures["flops"], last=k == len(specs))
        recorder.prefix_table(so_far.rows)
        recorder.log_once("student_done", {"k": k}, spec=model_spec, **{key: v for key, v in row.items() if key != "k"})
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
        so_far.sums[name].add(logits, scale)
        if name in REPORTED_SPLITS:
            so_far.logits[name].append(logits)
            accuracies.update(split_accuracies(name, so_far.sums[name], logits, split.labels))
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
        return {"val_acc": accuracy(so_far.sums["val"].log_probs_with(logits, scale), val.labels),
                "solo_val_acc": accuracy(logits, val.labels), **({"prev_scale": scale} if learned else {})}

    fit(trained, Stage("student", k, optim, cfg.seed), train, ctx.data_spec, objective, evaluate, ctx.recorder,
        ctx.place, ctx.recorder.resume_state("student", k))
    scale = float(prev_scale.detach())
    weights = {name: v.cpu() for name, v in student.state_dict().items()}
    logger.info("student %d weights sha256 %s (rank %d of %d)", k, weights_digest(weights), ctx.place.world.rank,
                ctx.place.world.size)
    ctx.recorder.save_student(k, weights, model_spec, scale)
    ctx.recorder.stage_done()
    return scale
