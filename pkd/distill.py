"""Progressive distillation (B-DISTIL style): a teacher, then students k = 1..K trained one after another.

Read `train_run` top to bottom: data, teacher, cached teacher logits, then the student loop. Each student is
fit with the others frozen; in `residual` mode it learns what the sum of the students before it still lacks.
Every epoch ends in an atomic resume checkpoint, so a killed run loses at most one epoch.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import signal
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from pkd import data as pkd_data
from pkd.config import OptimConfig, RunConfig, config_from_dict, student_optim
from pkd.flops import count_flops
from pkd.models import build_student, build_teacher
from pkd.models.ensemble import Ensemble, accumulate, combine
from pkd.runs import TEACHER_FILE, Run, RunError

logger = logging.getLogger(__name__)

EVAL_BATCH = 1000
MAX_MODEL_PARAMS = 50_000_000  # teacher or student; the largest shipped model has about 1.2 M
CONFIDENCE_LEVELS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
ProgressFn = Callable[[dict], None]


class StopRequested(BaseException):
    """Raised anywhere in the process on SIGTERM: the run stops cleanly (a BaseException, so that no broad
    `except Exception` on the way, e.g. while reading data, can mistake it for a failure)."""


# ----------------------------------------------------------------------------------------------- the loss

def kd_loss(
    logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    temperature: float,
    weights: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """L = alpha * CE(logits, y) + (1 - alpha) * T^2 * KL(softmax(t / T) || softmax(logits / T)).

    Hinton et al. 2015 (arXiv 1503.02531); the paper's loss (arXiv 2503.01727). Per-sample `weights` (B,)
    re-weight both terms (mean 1 keeps the scale).

    Args:
        logits, teacher_logits: (B, C). labels: (B,).
    Returns:
        dict with loss, hard, soft (scalars).
    """
    hard = F.cross_entropy(logits, labels, reduction="none")  # (B,)
    log_p = F.log_softmax(logits / temperature, dim=-1)
    log_q = F.log_softmax(teacher_logits / temperature, dim=-1)
    soft = (log_q.exp() * (log_q - log_p)).sum(dim=-1) * temperature**2  # (B,)
    if weights is not None:
        hard, soft = hard * weights, soft * weights
    hard, soft = hard.mean(), soft.mean()
    return {"loss": alpha * hard + (1 - alpha) * soft, "hard": hard, "soft": soft}


def boost_weights(prev_log_probs: torch.Tensor, labels: torch.Tensor, beta: float) -> torch.Tensor:
    """Sample weights w_i ∝ exp(beta * CE_i) of the ensemble so far, normalised to mean 1 and clipped at 10.

    Args:
        prev_log_probs: (N, C) log-probabilities of the students before this one. labels: (N,).
    Returns:
        (N,) weights.
    """
    ce = F.nll_loss(prev_log_probs, labels, reduction="none")  # (N,)
    w = torch.exp(beta * (ce - ce.max()))
    w = w / w.mean()
    w = w.clamp(max=10.0)
    return w / w.mean()


# ----------------------------------------------------------------------------------------------- helpers

def resolve_device(requested: str) -> torch.device:
    """'auto' -> cuda when a GPU is visible else cpu; 'cuda' without a GPU is an error that says what to do."""
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda: no CUDA GPU is visible to torch; use --device cpu or --device auto")
        return torch.device("cuda")
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        logger.info("device auto: no CUDA GPU visible, training on the CPU")
        return torch.device("cpu")
    return torch.device("cpu")


def stage_seed(seed: int, stage: str, k: int = 0, epoch: int = 0) -> int:
    """A fixed seed per (stage, student, epoch): resuming at an epoch boundary replays the same randomness."""
    code = {"teacher": 1, "student": 2, "init": 3}[stage]
    return (seed * 1_000_003 + code * 10_007 + k * 101 + epoch) % (2**62)


def _limit(split: pkd_data.ImageSplit, n: int | None) -> pkd_data.ImageSplit:
    if n is None or n >= len(split.labels):
        return split
    return pkd_data.ImageSplit(images=split.images[:n], labels=split.labels[:n])


def load_data(cfg: RunConfig) -> tuple[pkd_data.DatasetSpec, dict[str, pkd_data.ImageSplit]]:
    spec = pkd_data.get_dataset_spec(cfg.data.dataset)
    limits = {"train": cfg.data.train_limit, "val": cfg.data.val_limit, "test": cfg.data.test_limit}
    splits = {s: _limit(pkd_data.load_split(cfg.data.dataset, s, root=cfg.data.root), n) for s, n in limits.items()}
    return spec, splits


@torch.no_grad()
def predict_logits(model: nn.Module, spec: pkd_data.DatasetSpec, images: torch.Tensor, device: torch.device
                   ) -> torch.Tensor:
    """Logits of `model` on raw images in [0, 1], evaluated in eval mode and batches. Returns (N, C) on CPU."""
    model.eval()
    out = []
    for i in range(0, len(images), EVAL_BATCH):
        x = spec.normalize(images[i:i + EVAL_BATCH]).to(device)
        out.append(model(x).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, spec.num_classes)


def accuracy(log_probs_or_logits: torch.Tensor, labels: torch.Tensor) -> float:
    if not len(labels):
        return float("nan")
    return int((log_probs_or_logits.argmax(dim=-1) == labels).sum()) / len(labels)  # exact: correct / total


def model_cost(model: nn.Module, image_shape: tuple) -> tuple[int, int]:
    """(FLOPs per sample, parameters) of a model."""
    report = count_flops(model, image_shape)
    return int(report.flops), int(report.params)


def shuffled_batches(split: pkd_data.ImageSplit, batch_size: int, generator: torch.Generator,
                     spec: pkd_data.DatasetSpec, augment: bool):
    """Yield (x normalised (B, C, H, W), y (B,), idx (B,)): a seeded shuffle; idx finds cached targets."""
    order = torch.randperm(len(split.labels), generator=generator)
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        x = split.images[idx]  # (B, C, H, W) in [0, 1]
        if augment:
            x = spec.augment(x, generator)
        yield spec.normalize(x), split.labels[idx], idx


class WithPrevScale(nn.Module):
    """Student k and the scalar s_k of its residual ensemble E_k = s_k * E_(k-1) + z_k, trained together (one
    optimiser, one resume checkpoint) and saved apart: the student's weights and its prev_scale."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student
        self.prev_scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x)


# ----------------------------------------------------------------------------------------------- one model

@dataclass
class FitState:
    """What a resume checkpoint restores for the model being trained."""

    epoch: int = 0  # epochs completed
    model: dict | None = None
    optimizer: dict | None = None
    scheduler: dict | None = None
    record: dict | None = None  # the metrics record of that epoch (re-logged if a kill lost it)


def fit(
    model: nn.Module,
    run: Run,
    cfg: RunConfig,
    stage: str,
    k: int,
    loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], dict],
    spec: pkd_data.DatasetSpec,
    train: pkd_data.ImageSplit,
    device: torch.device,
    evaluate: Callable[[], dict],
    resume: FitState | None = None,
    progress: ProgressFn | None = None,
    optim_cfg: OptimConfig | None = None,
) -> None:
    """Train `model` for the stage's epochs; loss_fn(out, idx, x) gets the batch's sample indices (for cached
    targets) and its (possibly augmented) inputs (for targets computed on the fly).

    After every epoch: evaluate, append an epoch record to metrics.jsonl and write an atomic resume checkpoint.
    """
    if optim_cfg is None:
        optim_cfg = cfg.teacher.optim if stage == "teacher" else cfg.students.optim
    steps_per_epoch = math.ceil(len(train.labels) / optim_cfg.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=optim_cfg.lr, weight_decay=optim_cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=optim_cfg.lr, total_steps=max(1, optim_cfg.epochs * steps_per_epoch), pct_start=0.15)
    start_epoch = 0
    if resume is not None and resume.model is not None:
        model.load_state_dict(resume.model)
        optimizer.load_state_dict(resume.optimizer)
        scheduler.load_state_dict(resume.scheduler)
        start_epoch = resume.epoch
        logger.info("resuming %s %d at epoch %d", stage, k, start_epoch + 1)
        if resume.record and not any(r.get("event") == "epoch" and r.get("stage") == stage and r.get("student") == k
                                     and r.get("epoch") == resume.epoch for r in run.metrics()):
            run.log_metrics("epoch", **resume.record)  # killed between the checkpoint and its metrics line
    augment = optim_cfg.augment
    for epoch in range(start_epoch, optim_cfg.epochs):
        torch.manual_seed(stage_seed(cfg.seed, stage, k, epoch))  # dropout etc.
        generator = torch.Generator().manual_seed(stage_seed(cfg.seed, stage, k, epoch))
        model.train()
        total = count = 0.0
        parts: dict[str, float] = {}
        last_status = 0.0
        t0 = time.time()
        for step, (x, y, idx) in enumerate(shuffled_batches(train, optim_cfg.batch_size, generator, spec, augment)):
            x, y = x.to(device), y.to(device)
            out = loss_fn(model(x), idx, x)
            loss = out["loss"]
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{stage} {k}: loss became {loss.item()} at epoch {epoch + 1} step {step}; "
                                         "lower the learning rate (optim.lr)")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            n = len(y)
            total += loss.item() * n
            count += n
            for name, value in out.items():
                parts[name] = parts.get(name, 0.0) + float(value.detach()) * n
            now = time.time()
            if now - last_status > 1.0:
                last_status = now
                frac = (step + 1) / steps_per_epoch
                info = {"stage": stage, "student": k, "epoch": epoch + 1, "epochs": optim_cfg.epochs,
                        "progress": (epoch + frac) / optim_cfg.epochs, "loss": total / count}
                run.write_status(**info)
                if progress:
                    progress(info)
        results = evaluate()
        record = {"stage": stage, "student": k, "epoch": epoch + 1, "epochs": optim_cfg.epochs,
                  "seconds": time.time() - t0, "lr": scheduler.get_last_lr()[0],
                  **{f"train_{name}": value / max(count, 1) for name, value in parts.items()}, **results}
        run.save_checkpoint({"stage": stage, "k": k, "epoch": epoch + 1, "model": model.state_dict(),
                             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                             "rng": torch.get_rng_state(), "seed": cfg.seed, "record": record})
        run.log_metrics("epoch", **record)
        logger.info("%s %d epoch %d/%d: %s", stage, k, epoch + 1, optim_cfg.epochs,
                    ", ".join(f"{key} {value:.4f}" for key, value in record.items() if isinstance(value, float)))
        run.write_status(stage=stage, student=k, epoch=epoch + 1, epochs=optim_cfg.epochs,
                         progress=(epoch + 1) / optim_cfg.epochs)
        if progress:
            progress({"stage": stage, "student": k, "epoch": epoch + 1, "epochs": optim_cfg.epochs,
                      "progress": (epoch + 1) / optim_cfg.epochs, "done_epoch": True, **results})


def _resume_state(run: Run, stage: str, k: int) -> FitState | None:
    checkpoint = run.load_checkpoint()
    if checkpoint and checkpoint.get("stage") == stage and checkpoint.get("k") == k:
        record = checkpoint.get("record")
        return FitState(epoch=int(checkpoint["epoch"]), model=checkpoint["model"],
                        optimizer=checkpoint["optimizer"], scheduler=checkpoint["scheduler"],
                        record=record if isinstance(record, dict) else None)
    return None


# ----------------------------------------------------------------------------------------------- the run

def student_specs(cfg: RunConfig, spec: pkd_data.DatasetSpec) -> list[dict]:
    """Build specs ({arch, params}) for the K students, ordered as the config asks (by FLOPs if growing/shrinking)."""
    specs = [student_spec(cfg, spec, i) for i in range(cfg.students.k)]
    if cfg.students.order != "as_listed":
        costs = [model_cost(build_model(s), spec.image_shape)[0] for s in specs]
        order = sorted(range(len(specs)), key=lambda i: costs[i], reverse=cfg.students.order == "shrinking")
        specs = [specs[i] for i in order]
    return specs


def student_spec(cfg: RunConfig, spec: pkd_data.DatasetSpec, i: int) -> dict:
    """Spec {arch, params, optim} of schedule entry i: common params, the entry's own, the dataset's shape."""
    entry = {key: value for key, value in cfg.students.schedule[i].items() if key != "optim"}
    params = {**cfg.students.common, **entry, "image_shape": list(spec.image_shape), "num_classes": spec.num_classes}
    return {"arch": cfg.students.arch, "params": params, "optim": dataclasses.asdict(student_optim(cfg, i))}


def build_model(model_spec: dict) -> nn.Module:
    """A student or teacher from its saved spec {"kind", "arch", "params"} (kind defaults to student)."""
    params = dict(model_spec.get("params", {}))
    if "image_shape" in params:
        params["image_shape"] = tuple(params["image_shape"])
    if model_spec.get("kind") == "teacher":
        return build_teacher(model_spec["arch"], **params)
    return build_student(model_spec["arch"], **params)


def teacher_spec(cfg: RunConfig, spec: pkd_data.DatasetSpec) -> dict:
    return {"kind": "teacher", "arch": cfg.teacher.arch, "params": dict(cfg.teacher.params)}


def check_models(cfg: RunConfig) -> None:
    """Build every model of the config once (no data, no training) so bad sizes stop the run before it starts."""
    spec = pkd_data.get_dataset_spec(cfg.data.dataset)
    models = [("teacher", teacher_spec(cfg, spec))]
    models += [(f"students.schedule[{i}]", student_spec(cfg, spec, i)) for i in range(cfg.students.k)]
    for where, model_spec in models:
        try:
            with torch.device("meta"):  # sizes only: nothing is allocated, so a huge model cannot exhaust memory
                n_params = sum(p.numel() for p in build_model(model_spec).parameters())
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where}: {exc}") from None
        if n_params > MAX_MODEL_PARAMS:
            raise ValueError(f"{where}: {n_params:,} parameters exceed the maximum {MAX_MODEL_PARAMS:,}; "
                             "make the model smaller")
    if cfg.teacher.checkpoint:  # a bad or hostile teacher file stops the run before anything is created
        _load_teacher_weights(cfg.teacher.checkpoint, build_model(teacher_spec(cfg, spec)))


def _load_error(exc: Exception) -> str:
    """The informative line of a load_state_dict error (torch puts a generic header line first)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    return (lines[1] if len(lines) > 1 and lines[0].startswith("Error(s) in loading") else lines[0])[:300]


def _load_teacher_weights(path: str, model: nn.Module) -> dict:
    """State dict of a teacher file given by the user: a run's teacher.pt or a bare state_dict (weights only)."""
    from pkd.runs import load_tensors

    obj = load_tensors(path)
    state = obj.get("state_dict", obj)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RunError(f"teacher.checkpoint {path}: not a state_dict of tensors; give a run's teacher.pt")
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError) as exc:
        first = _load_error(exc)
        raise RunError(f"teacher.checkpoint {path}: does not fit the teacher architecture ({first})") from None
    return state


def train_run(run: Run, device_name: str = "auto", progress: ProgressFn | None = None) -> dict:
    """Train (or resume) everything a run's config asks for; returns the summary. Safe to call again after a kill."""
    cfg = config_from_dict(run.config())
    device = resolve_device(device_name if device_name != "config" else cfg.device)
    torch.manual_seed(stage_seed(cfg.seed, "init"))
    spec, splits = load_data(cfg)
    train, val, test = splits["train"], splits["val"], splits["test"]
    run.write_status(stage="teacher", student=0, progress=0.0, device=str(device))

    # ---- teacher: load or train, then cache its logits once
    t_spec = teacher_spec(cfg, spec)
    torch.manual_seed(stage_seed(cfg.seed, "init", 0))
    teacher = build_model(t_spec).to(device)
    if run.has_teacher():
        teacher.load_state_dict(run.load_teacher()["state_dict"])
    elif cfg.teacher.checkpoint:
        run.save_teacher(_load_teacher_weights(cfg.teacher.checkpoint, teacher), t_spec)
        run.log_metrics("teacher_loaded", source=cfg.teacher.checkpoint)
    else:
        def teacher_loss(logits, idx, x):  # noqa: ARG001
            return {"loss": F.cross_entropy(logits, train.labels[idx].to(logits.device))}

        def teacher_eval():
            return {"val_acc": accuracy(predict_logits(teacher, spec, val.images, device), val.labels)}

        fit(teacher, run, cfg, "teacher", 0, teacher_loss, spec, train, device, teacher_eval,
            _resume_state(run, "teacher", 0), progress)
        run.save_teacher({k: v.cpu() for k, v in teacher.state_dict().items()}, t_spec)
        run.clear_checkpoint()
    teacher_logits = {name: predict_logits(teacher, spec, split.images, device)
                      for name, split in splits.items()}  # (N, C) each
    t_flops, t_params = model_cost(teacher.cpu(), spec.image_shape)
    teacher.to(device)
    teacher_row = {"arch": cfg.teacher.arch, "flops": t_flops, "params": t_params,
                   "val_acc": accuracy(teacher_logits["val"], val.labels),
                   "test_acc": accuracy(teacher_logits["test"], test.labels)}
    if not any(r.get("event") == "teacher_done" for r in run.metrics()):
        run.log_metrics("teacher_done", **teacher_row)
    teacher.eval()

    # ---- students k = 1..K
    specs = student_specs(cfg, spec)
    sums = {name: {"logits": torch.zeros(len(s.labels), spec.num_classes),
                   "probs": torch.zeros(len(s.labels), spec.num_classes)} for name, s in splits.items()}
    rows: list[dict] = []
    cumulative = 0
    mode = cfg.distill.mode
    frozen: list[nn.Module] = []  # students 1..k-1 in eval mode: targets on the fly for augmented batches
    scales: list[float] = []  # s_1..s_(k-1) of the residual ensemble E_k = s_k * E_(k-1) + z_k
    for k, s_spec in enumerate(specs, start=1):
        torch.manual_seed(stage_seed(cfg.seed, "init", k))
        student = build_model(s_spec).to(device)
        if k <= run.students_saved():
            saved = run.load_student(k)
            student.load_state_dict(saved["state_dict"])
            scale = saved["prev_scale"]
        else:
            run.write_status(stage="student", student=k, epoch=0, progress=0.0)
            prev = {"logits": sums["train"]["logits"], "probs": sums["train"]["probs"]}
            prev_log_probs = combine(prev["logits"], prev["probs"], max(k - 1, 1), mode) if k > 1 else None
            weights = None
            if cfg.distill.reweight == "boost" and prev_log_probs is not None:
                weights = boost_weights(prev_log_probs, train.labels, cfg.distill.reweight_beta)
            t_train = teacher_logits["train"]

            optim_cfg = OptimConfig(**s_spec["optim"])
            residual = mode == "residual" and k > 1  # student 1 has no ensemble before it
            learned = residual and cfg.distill.learn_prev_scale
            trained = WithPrevScale(student).to(device) if learned else student
            prev_scale = trained.prev_scale if learned else torch.ones(())

            def student_loss(logits, idx, x, prev_logits=prev["logits"], weights=weights, fresh=optim_cfg.augment,
                             residual=residual, prev_scale=prev_scale):
                dev = logits.device
                if fresh:  # augmented inputs: the cached logits of the clean images do not apply
                    with torch.no_grad():
                        target = teacher(x)
                        before = None
                        if residual:
                            for f, s in zip(frozen, scales):
                                before = accumulate(before, f(x), s)
                else:
                    target = t_train[idx].to(dev)
                    before = prev_logits[idx].to(dev) if residual else None
                logits = accumulate(before, logits, prev_scale)
                w = weights[idx].to(dev) if weights is not None else None
                return kd_loss(logits, target, train.labels[idx].to(dev), cfg.distill.alpha,
                               cfg.distill.temperature, w)

            def student_eval(student=student, k=k, prev_scale=prev_scale, learned=learned):
                logits = predict_logits(student, spec, val.images, device)
                scale = float(prev_scale.detach())
                ens = combine(accumulate(sums["val"]["logits"], logits, scale),
                              sums["val"]["probs"] + logits.softmax(-1), k, mode)
                return {"val_acc": accuracy(ens, val.labels), "solo_val_acc": accuracy(logits, val.labels),
                        **({"prev_scale": scale} if learned else {})}

            fit(trained, run, cfg, "student", k, student_loss, spec, train, device, student_eval,
                _resume_state(run, "student", k), progress, optim_cfg=optim_cfg)
            scale = float(prev_scale.detach())
            run.save_student(k, {name: v.cpu() for name, v in student.state_dict().items()}, s_spec, scale)
            run.clear_checkpoint()
        # ---- evaluate prefix k and the student alone
        flops, params = model_cost(student.cpu(), spec.image_shape)
        student.to(device)
        cumulative += flops
        row = {"k": k, "arch": s_spec["arch"], "params": params, "student_flops": flops,
               "cumulative_flops": cumulative, "share_of_teacher": cumulative / t_flops, "prev_scale": scale}
        for name, split in splits.items():
            logits = predict_logits(student, spec, split.images, device)
            sums[name]["logits"] = accumulate(sums[name]["logits"], logits, scale)
            sums[name]["probs"] += logits.softmax(-1)
            if name != "train":  # accuracies are reported on val and test
                ens = combine(sums[name]["logits"], sums[name]["probs"], k, mode)
                prefix = "" if name == "test" else "val_"
                row[f"prefix_{prefix}acc"] = accuracy(ens, split.labels)
                row[f"solo_{prefix}acc"] = accuracy(logits, split.labels)
        rows.append(row)
        run.write_prefix_table(rows)
        if not any(r.get("event") == "student_done" and r.get("k") == k for r in run.metrics()):
            run.log_metrics("student_done", spec=s_spec, **row)
        run.write_summary(_summary(cfg, teacher_row, rows, specs))
        frozen.append(student.eval())
        scales.append(scale)
    del teacher, frozen

    # ---- anytime curve on the test set, from the saved weights
    ensemble = load_ensemble(run, device=torch.device("cpu"))
    summary = _summary(cfg, teacher_row, rows, specs)
    summary["anytime"] = anytime_curve(ensemble, spec, test)
    run.write_summary(summary)
    return summary


def _summary(cfg: RunConfig, teacher_row: dict, rows: list[dict], specs: list[dict]) -> dict:
    return {"name": cfg.name, "dataset": cfg.data.dataset, "mode": cfg.distill.mode, "k_planned": len(specs),
            "flops_unit": "FLOPs per sample (2 per multiply-add)", "teacher": teacher_row, "prefixes": rows}


@torch.no_grad()
def anytime_curve(ensemble: Ensemble, spec: pkd_data.DatasetSpec, split: pkd_data.ImageSplit,
                  levels: tuple = CONFIDENCE_LEVELS) -> list[dict]:
    """Accuracy and mean FLOPs per sample of confidence-based early exit at several thresholds."""
    ensemble.eval()
    out = []
    for level in levels:
        correct = flops = 0.0
        for i in range(0, len(split.labels), EVAL_BATCH):
            x = spec.normalize(split.images[i:i + EVAL_BATCH])
            pred = ensemble.predict(x, confidence=level)
            correct += float((pred.classes == split.labels[i:i + EVAL_BATCH]).sum())
            flops += float(pred.flops.sum())
        n = max(len(split.labels), 1)
        out.append({"confidence": level, "acc": correct / n, "mean_flops": flops / n})
    return out


def load_ensemble(run: Run, k: int | None = None, device: torch.device | str = "cpu") -> Ensemble:
    """The first k (default all saved) students of a run as an Ensemble with their FLOPs, in eval mode."""
    cfg = run.config()
    mode = cfg.get("distill", {}).get("mode", "residual")
    n = run.students_saved()
    if n == 0:
        raise RunError(f"{run.path}: no trained students yet")
    k = n if k is None else min(k, n)
    students, flops, scales = [], [], []
    for j in range(1, k + 1):
        saved = run.load_student(j)
        model = _saved_model(run, cfg, saved, "students", run.student_path(j))
        image_shape = tuple(saved["spec"]["params"]["image_shape"])
        flops.append(model_cost(model, image_shape)[0])
        students.append(model.to(device))
        if saved["prev_scale"] != 1.0 and mode != "residual":
            raise RunError(f"{run.student_path(j)}: has a residual prev_scale but the run's mode is {mode}; "
                           "the file belongs to another run")
        scales.append(saved["prev_scale"])
    return Ensemble(students, mode=mode, student_flops=flops, prev_scales=scales).eval()


def load_teacher(run: Run, device: torch.device | str = "cpu") -> nn.Module:
    """The run's teacher in eval mode."""
    model = _saved_model(run, run.config(), run.load_teacher(), "teacher", run.path / TEACHER_FILE)
    return model.to(device)


def _saved_model(run: Run, cfg: dict, saved: dict, role: str, path) -> nn.Module:
    """Build a saved {spec, state_dict} model (refusing specs the run's config does not describe), in eval mode."""
    _check_spec(run, cfg, saved["spec"], role, path)
    model = build_model(saved["spec"])
    try:
        model.load_state_dict(saved["state_dict"])
    except RuntimeError as exc:
        raise RunError(f"{path}: weights do not fit the saved spec ({_load_error(exc)})") from None
    return model.eval()


def _dig(mapping: dict, *keys: str):
    for key in keys:
        mapping = mapping.get(key) if isinstance(mapping, dict) else None
    return mapping


def _check_spec(run: Run, cfg: dict, spec: dict, role: str, path) -> None:
    """Refuse a weights file whose model spec is not one the run's config asks for (wrong or oversized model)."""
    section = cfg.get(role) if isinstance(cfg.get(role), dict) else {}
    params = {key: value for key, value in dict(spec.get("params", {})).items()
              if key not in ("image_shape", "num_classes")}
    if role == "teacher":
        allowed = [dict(section.get("params") or {})]
        ok = spec.get("kind") == "teacher" and spec.get("arch") == section.get("arch") and params in allowed
    else:
        common = section.get("common") if isinstance(section.get("common"), dict) else {}
        schedule = section.get("schedule") if isinstance(section.get("schedule"), list) else []
        allowed = [{**common, **{key: v for key, v in entry.items() if key != "optim"}}
                   for entry in schedule if isinstance(entry, dict)]
        ok = spec.get("kind", "student") == "student" and spec.get("arch") == section.get("arch") and params in allowed
    extra = dict(spec.get("params", {}))
    if ok and ("image_shape" in extra or "num_classes" in extra):
        try:
            data_spec = pkd_data.get_dataset_spec(_dig(cfg, "data", "dataset"))
            ok = list(extra.get("image_shape", data_spec.image_shape)) == list(data_spec.image_shape) \
                and extra.get("num_classes", data_spec.num_classes) == data_spec.num_classes
        except (ValueError, TypeError):
            ok = False
    if not ok:
        raise RunError(f"{path}: holds a {spec.get('arch')!r} model that the run's config does not describe; "
                       "the file was replaced or belongs to another run")


@torch.no_grad()
def evaluate_run(run: Run, device: torch.device | str = "cpu") -> list[dict]:
    """Recompute every prefix's test/val accuracy from the saved weights and rewrite prefix.csv."""
    cfg = config_from_dict(run.config())
    device = torch.device(device)
    spec, splits = load_data(cfg)
    ensemble = load_ensemble(run, device=device)
    teacher = load_teacher(run, device)
    t_flops = model_cost(teacher.cpu(), spec.image_shape)[0]
    per_split = {}
    for name in ("val", "test"):
        split = splits[name]
        prefix_acc, solo_acc = [0.0] * ensemble.k, [0.0] * ensemble.k
        for i in range(0, len(split.labels), EVAL_BATCH):
            x = spec.normalize(split.images[i:i + EVAL_BATCH]).to(device)
            y = split.labels[i:i + EVAL_BATCH].to(device)
            for j, log_probs in enumerate(ensemble.all_prefixes(x)):
                prefix_acc[j] += float((log_probs.argmax(-1) == y).sum())
            for j, student in enumerate(ensemble.students):
                solo_acc[j] += float((student(x).argmax(-1) == y).sum())
        n = len(split.labels)
        per_split[name] = ([a / n for a in prefix_acc], [a / n for a in solo_acc])
    rows, cumulative = [], 0
    for j, student in enumerate(ensemble.students):
        cumulative += ensemble.student_flops[j]
        rows.append({"k": j + 1, "arch": run.load_student(j + 1)["spec"]["arch"],
                     "params": sum(p.numel() for p in student.parameters()),
                     "student_flops": ensemble.student_flops[j], "cumulative_flops": cumulative,
                     "share_of_teacher": cumulative / t_flops,
                     "prefix_acc": per_split["test"][0][j], "solo_acc": per_split["test"][1][j],
                     "prefix_val_acc": per_split["val"][0][j], "solo_val_acc": per_split["val"][1][j],
                     "prev_scale": ensemble.prev_scales[j]})
    run.write_prefix_table(rows)
    return rows


def install_stop_handler() -> None:
    """Turn SIGTERM into StopRequested so a stopped run ends cleanly with its last checkpoint intact."""
    def handler(signum, frame):  # noqa: ARG001
        raise StopRequested(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
