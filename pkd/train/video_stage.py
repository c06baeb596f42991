"""The video teacher's stage inside a run: ViFi-CLIP's image-text pretraining, fine-tuning and bridge and prompt
(pkd.train.video_teacher's losses and loops) wired to the run's data, recorder and resume checkpoints, and
registered as the TeacherTraining of config.VIDEO_TEACHER (pkd.train.teacher), so the generic teacher stage and
the progressive run import none of it. pkd.train imports this module, which registers it.
"""

from __future__ import annotations

import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from pkd.config import VIDEO_TEACHER, RunConfig
from pkd.data import DatasetSpec
from pkd.data.moving_mnist import digit_of
from pkd.evaluate import accuracy, eval_batch
from pkd.runs.schema import Metric, MetricEvent
from pkd.models.clip import ViFiCLIP, load_clip_weights
from pkd.train.context import RunContext
from pkd.train.loop import Stage, fit, stage_seed
from pkd.train.recorder import FitState, Recorder, checkpoint_state
from pkd.train.teacher import TeacherTraining, register_teacher_training
from pkd.train.video_teacher import (CAPTION, LABEL_SMOOTHING, MAX_LOGIT_SCALE, FrameTextPretraining,
                                     bridge_and_prompt)

__all__ = ["VideoTeacherTraining", "TeacherPhase", "train_video_teacher", "prompt_stage"]


@register_teacher_training(VIDEO_TEACHER)
class VideoTeacherTraining(TeacherTraining):
    """The video teacher (ViFiCLIP) in a run: clip datasets only, `teacher.checkpoint` and `teacher.init` read
    with load_clip_weights, a loaded teacher may still learn prompts, training is ViFi-CLIP's stages."""

    check_device = "cpu"  # its constructor fills the prompt cache (pkd's tiny CLIP is 3.4 M params)

    def check_data(self, cfg: RunConfig, data_spec: DatasetSpec) -> None:
        if data_spec.kind != "clip":
            raise ValueError(f"teacher.arch: {cfg.teacher.arch} classifies clips but data.dataset "
                             f"{cfg.data.dataset!r} holds images; use a clip dataset such as moving_mnist")

    def load_file(self, path: str, teacher: nn.Module) -> dict:
        """A user's open_clip / ViFi-CLIP weights or a pkd run's teacher.pt (load_clip_weights)."""
        load_clip_weights(teacher, path)
        return {key: value.detach().cpu() for key, value in teacher.state_dict().items()}

    def after_load(self, ctx: RunContext, teacher: nn.Module) -> bool:
        """Bridge and prompt on a loaded (fine-tuned) video teacher, if `teacher.prompt` has epochs."""
        if not ctx.cfg.teacher.prompt.epochs:
            return False
        prompt_stage(ctx, teacher, TeacherPhase(ctx.recorder, "prompt", 0.0, 1.0))
        return True

    def train(self, ctx: RunContext, teacher: nn.Module, model_spec: dict) -> None:
        train_video_teacher(ctx, teacher, model_spec)


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
        if state and state.record and not self.recorder.has_event(MetricEvent.EPOCH, stage="teacher", phase=self.phase,
                                                                   epoch=state.epoch):
            self.recorder.log(MetricEvent.EPOCH, **state.record)
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
        ctx.recorder.log_once(MetricEvent.TEACHER_INIT, {}, source=cfg.teacher.init)

    def evaluate():
        with torch.no_grad():  # CLIP's cap on the temperature, once an epoch
            teacher.clip.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        return {f"val{Metric.ACC_SUFFIX}": accuracy(ctx.logits(teacher, val.inputs), val.labels)}

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
                                     for x in ctx.splits[name].inputs.split(eval_batch(device))])  # (N, E)

    def accuracies(names=("val", "test")) -> dict:
        with torch.no_grad():
            text = teacher.text_embeddings()  # (K, E)
            return {f"{name}{Metric.ACC_SUFFIX}": accuracy(
                teacher.head(video[name], text, teacher.clip.logit_scale).cpu(), ctx.splits[name].labels)
                for name in names}

    phase.log_once(MetricEvent.PROMPT_START, {}, **accuracies())
    start, epochs = time.time(), cfg.teacher.prompt.epochs

    def on_epoch(epoch: int, loss: float) -> None:
        record = {"stage": "teacher", "phase": "prompt", "student": 0, "epoch": epoch, "epochs": epochs,
                  "seconds": time.time() - start, f"{Metric.TRAIN_PREFIX}loss": loss, **accuracies(("val",))}
        phase.log_once(MetricEvent.EPOCH, {key: record[key] for key in ("stage", "phase", "epoch")},
                       **{key: v for key, v in record.items() if key not in ("stage", "phase", "epoch")})
        phase.progress({"stage": "teacher", "student": 0, "epoch": epoch, "epochs": epochs,
                        "progress": epoch / epochs}, done_epoch=True, val_acc=record[f"val{Metric.ACC_SUFFIX}"])

    bridge_and_prompt(teacher, spec.normalize(train.inputs), train.labels, cfg.teacher.prompt, n_ctx=teacher.n_ctx,
                      ctx_init=teacher.ctx_init, n_ctx_vision=teacher.prompt_params()["n_ctx_vision"],
                      label_smoothing=LABEL_SMOOTHING, seed=stage_seed(cfg.seed, "prompt"), on_epoch=on_epoch)
    teacher.to(device).eval()
