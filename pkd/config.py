"""Run configuration: frozen dataclasses, their range checks, and loading them from YAML with `key=value`
overrides (the strict reading itself, field by field, is pkd.config_reader's).

YAML is only a serialisation (yaml.safe_load, no tags). Unknown or mistyped keys are rejected by name, so a typo
never silently trains the wrong thing. The resolved config is what a run directory records.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from pkd.config_reader import ConfigError, apply_overrides, check_finite, from_dict, get_key, read_yaml
from pkd.devices import DEVICES, PRECISIONS

MAX_STUDENTS = 32
MAX_D_MODEL = 1024
# Upper bounds on student sizes, so a config (or a page form) cannot ask for a model that exhausts memory.
MAX_STUDENT_SIZES = {"d_model": MAX_D_MODEL, "d_state": 256, "n_layers": 32, "expand": 16, "d_conv": 16}
# The one teacher.arch with the stages pretrain, prompt and init: ViFi-CLIP's video teacher (pkd.models.clip registers
# it under this name, pkd.train.video_stage its training). Spelled here only, where config validation needs it.
VIDEO_TEACHER = "vifi_clip"


@dataclass(frozen=True)
class DataConfig:
    """Which dataset to use and how much of it (limits are for quick runs and tests)."""

    dataset: str = "mnist"
    root: str | None = None  # data directory; None -> $PKD_DATA_DIR or ~/.cache/pkd/data
    train_limit: int | None = None  # use only the first n training samples
    val_limit: int | None = None
    test_limit: int | None = None
    # few-shot (ViFi-CLIP's K-shot setting): keep only K training samples of every class, chosen with the run's
    # seed; everything the run trains (teacher stages and students) sees only those. val and test stay whole.
    shots: int | None = None


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with a one-cycle (warm-up then cosine) learning-rate schedule over all epochs."""

    epochs: int = 1
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.0
    augment: bool = False  # random shifts; for students the teacher's logits are then computed per batch, not cached


@dataclass(frozen=True)
class TeacherConfig:
    """The teacher: trained in the run, or loaded from a state_dict file (`checkpoint`)."""

    arch: str = "mnist_cnn"
    params: dict = field(default_factory=dict)
    checkpoint: str | None = None  # path to a teacher state_dict (e.g. pretrained/mnist/teacher.pt)
    # vifi_clip only: weights the teacher's training starts from (a saved teacher such as a zero-shot run's
    # teacher.pt, or open_clip / ViFi-CLIP files) instead of a random init; `checkpoint` loads and trains nothing
    init: str | None = None
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=8, lr=2e-3, augment=True))
    # vifi_clip only: ViFi-CLIP's stage 1, image-text pretraining on the training clips' frames with captions
    # "a photo of a <digit>." before `optim` fine-tunes on clips (epochs 0: none)
    pretrain: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=0, batch_size=64, lr=1e-3))
    # vifi_clip only: ViFi-CLIP's "bridge and prompt" after fine-tuning: both towers frozen, only the params.n_ctx
    # text context vectors learnt on the training clips (epochs 0: none)
    prompt: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=0, batch_size=16, lr=2e-3))


@dataclass(frozen=True)
class StudentsConfig:
    """K students: shared `common` params, one override dict per student in `schedule` (K = its length)."""

    arch: str = "mamba"
    common: dict = field(default_factory=dict)
    schedule: list = field(default_factory=lambda: [{"d_model": 8}, {"d_model": 16}, {"d_model": 32}])
    order: str = "as_listed"  # as_listed | growing | shrinking (by FLOPs)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=2, lr=3e-3))

    @property
    def k(self) -> int:
        return len(self.schedule)


@dataclass(frozen=True)
class DistillConfig:
    """Loss L = alpha * CE(labels) + (1 - alpha) * T^2 * KL(teacher_T || ensemble_T) and the ensemble mode."""

    mode: str = "residual"  # residual: ensemble logits = sum of students; independent: mean of probabilities
    alpha: float = 0.3
    temperature: float = 4.0
    reweight: str = "none"  # none | boost: upweight samples the ensemble so far gets wrong
    reweight_beta: float = 1.0  # boost strength: w_i ∝ exp(beta * CE_i of the ensemble so far)
    # residual only: student k also learns one scalar s_k that rescales the frozen ensemble before it,
    # E_k = s_k * E_(k-1) + z_k (saved with student k), so a strong student is not tied to a weak one's logits
    learn_prev_scale: bool = False
    # classes: the KL term matches the teacher's class probabilities; groups: only their sums over the dataset's
    # class groups (DatasetSpec.class_groups; Moving MNIST: the digit, all an order-blind teacher can know),
    # so the labels alone teach what tells a group's classes apart (the motion)
    soft_target: str = "classes"
    # residual only: student k's loss is (1 - solo_weight) * L(F_k) + solo_weight * L(z_k), so it also answers
    # well alone (negative correlation learning, Liu & Yao 1999): 0 fits only what the ensemble before it lacks,
    # 1 trains it alone, the sum still combining the students
    solo_weight: float = 0.0
    # residual only: the ensemble term of student k's loss reads the prefix's summed logits F_k (sum) or their mean
    # F_k / k (mean: the prefix stays at one student's temperature, as in negative correlation learning's averaged
    # ensemble); the ensemble itself still sums, so its answers are the same, only the training signal differs
    prefix_loss: str = "sum"


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs; `seed` makes it reproducible on the same machine."""

    name: str = "run"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on the CPU) | fp32 | bf16 | fp16 (CUDA autocast)
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    students: StudentsConfig = field(default_factory=StudentsConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_RESIDUAL_ONLY = ("learn_prev_scale", "solo_weight", "prefix_loss")  # distill fields off (their default) elsewhere

_CHOICES = {
    "device": DEVICES,
    "precision": PRECISIONS,
    "students.order": ("as_listed", "growing", "shrinking"),
    "distill.mode": ("residual", "independent"),
    "distill.reweight": ("none", "boost"),
    "distill.soft_target": ("classes", "groups"),
    "distill.prefix_loss": ("sum", "mean"),
}


def _deep_merge(base: dict, update: dict) -> dict:
    """Mapping `update` laid over `base`, merging nested mappings (dict-typed fields such as params replace)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(out.get(key), dict) and isinstance(value, dict) and key not in ("params", "common"):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def validate(cfg: RunConfig, files: bool = True) -> RunConfig:
    """Range checks that need no data or models; raises ConfigError naming the field. `files`: also check that the
    teacher files the config names exist (not for a run's saved config: see saved_run_config)."""
    for key, choices in _CHOICES.items():
        value = get_key(cfg.to_dict(), key)
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(choices)}")
    if not cfg.name or not all(c.isalnum() or c in "-_." for c in cfg.name) or cfg.name.startswith("."):
        raise ConfigError(f"name: {cfg.name!r} must be letters, digits, '-', '_' or '.' (used in the run folder name)")
    if not 0.0 <= cfg.distill.alpha <= 1.0:
        raise ConfigError(f"distill.alpha: {cfg.distill.alpha} must lie in [0, 1]")
    if cfg.distill.temperature <= 0:
        raise ConfigError(f"distill.temperature: {cfg.distill.temperature} must be > 0")
    if not 0.0 <= cfg.distill.solo_weight <= 1.0:
        raise ConfigError(f"distill.solo_weight: {cfg.distill.solo_weight} must lie in [0, 1]")
    for name in _RESIDUAL_ONLY:
        default = getattr(DistillConfig(), name)
        if getattr(cfg.distill, name) != default and cfg.distill.mode != "residual":
            raise ConfigError(f"distill.{name}: only applies to distill.mode=residual; set it to "
                              f"{str(default).lower()}")
    if cfg.distill.reweight_beta < 0:
        raise ConfigError(f"distill.reweight_beta: {cfg.distill.reweight_beta} must be >= 0")
    k = cfg.students.k
    if not 1 <= k <= MAX_STUDENTS:
        raise ConfigError(f"students.schedule: has {k} students; give between 1 and {MAX_STUDENTS} entries")
    for i, entry in enumerate(cfg.students.schedule):
        if not isinstance(entry, dict):
            raise ConfigError(f"students.schedule[{i}]: expected a mapping like {{d_model: 16}}, got {entry!r}")
        if "optim" in entry:
            student_optim(cfg, i)
        merged = {**cfg.students.common, **entry}
        for key, limit in MAX_STUDENT_SIZES.items():
            value = merged.get(key, 1)
            if isinstance(value, int) and value > limit:
                raise ConfigError(f"students.schedule[{i}].{key}: {value} exceeds the maximum {limit}")
    for stage, optim in (("teacher.optim", cfg.teacher.optim), ("students.optim", cfg.students.optim),
                         ("teacher.pretrain", cfg.teacher.pretrain), ("teacher.prompt", cfg.teacher.prompt)):
        for name in ("epochs", "batch_size"):
            if getattr(optim, name) < (0 if name == "epochs" and stage.startswith("teacher") else 1):
                raise ConfigError(f"{stage}.{name}: {getattr(optim, name)} must be positive")
        if optim.lr <= 0:
            raise ConfigError(f"{stage}.lr: {optim.lr} must be > 0")
        if optim.weight_decay < 0:
            raise ConfigError(f"{stage}.weight_decay: {optim.weight_decay} must be >= 0")
    validate_teacher(cfg.teacher, files)
    if cfg.data.root is not None and not Path(cfg.data.root).resolve().is_dir():
        raise ConfigError(f"data.root: directory {cfg.data.root!r} does not exist; create it or remove the key")
    for name in ("train_limit", "val_limit", "test_limit", "shots"):
        value = getattr(cfg.data, name)
        if value is not None and value < 1:
            raise ConfigError(f"data.{name}: {value} must be a positive number of samples (or null for all)")
    return cfg


def validate_teacher(teacher: TeacherConfig, files: bool = True) -> None:
    """The teacher's stages fit together: what trains, what is loaded, and (with `files`) the files named exist."""
    video = teacher.arch == VIDEO_TEACHER
    for stage in ("pretrain", "prompt"):
        epochs = getattr(teacher, stage).epochs
        if epochs and not video:
            what = "image-text pretraining" if stage == "pretrain" else "prompt learning"
            raise ConfigError(f"teacher.{stage}.epochs: {epochs}, but {what} is for teacher.arch {VIDEO_TEACHER} "
                              f"only; set it to 0")
    if teacher.init and not video:
        raise ConfigError(f"teacher.init: starting weights are for teacher.arch {VIDEO_TEACHER} only; use "
                          "teacher.checkpoint")
    if teacher.init and teacher.checkpoint:
        raise ConfigError("teacher.init and teacher.checkpoint: give one (init trains from the weights, checkpoint "
                          "loads them and trains nothing)")
    if teacher.checkpoint and teacher.pretrain.epochs:
        raise ConfigError("teacher.pretrain.epochs: a teacher loaded from teacher.checkpoint is not trained; set it "
                          "to 0 (or start from the weights with teacher.init)")
    trains = teacher.pretrain.epochs or teacher.optim.epochs or teacher.prompt.epochs
    if not trains and not teacher.checkpoint:
        raise ConfigError("teacher.optim.epochs: 0 epochs needs teacher.checkpoint (a saved teacher to load) or "
                          "another teacher stage with epochs")
    if teacher.prompt.epochs and not teacher.params.get("n_ctx"):
        raise ConfigError("teacher.prompt.epochs: learning prompts needs teacher.params.n_ctx (e.g. 4 context "
                          "vectors, initialised from 'a photo of a')")
    for key in ("checkpoint", "init") if files else ():
        path = getattr(teacher, key)
        if path and not Path(path).resolve().is_file():
            raise ConfigError(f"teacher.{key}: file {path!r} does not exist; train a teacher first or fix the path")


def student_optim(cfg: RunConfig, i: int) -> OptimConfig:
    """Optimiser settings of student i: students.optim with the schedule entry's own `optim` mapping laid over."""
    own = cfg.students.schedule[i].get("optim", {})
    where = f"students.schedule[{i}].optim"
    if not isinstance(own, dict):
        raise ConfigError(f"{where}: expected a mapping like {{epochs: 4, lr: 0.003}}, got {own!r}")
    optim = from_dict(OptimConfig, {**dataclasses.asdict(cfg.students.optim), **own}, where)
    if optim.epochs < 1 or optim.batch_size < 1:
        raise ConfigError(f"{where}: epochs and batch_size must be positive")
    if optim.lr <= 0 or optim.weight_decay < 0:
        raise ConfigError(f"{where}: lr must be > 0 and weight_decay >= 0")
    return optim


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML config (or the defaults), apply overrides, check it; raises ConfigError naming the field."""
    data = read_yaml(path) if path is not None else {}
    return config_from_dict(apply_overrides(data, overrides or []))


def config_from_dict(data: dict, files: bool = True) -> RunConfig:
    """Build and check a config from a plain mapping (a YAML file's, or one saved in a run directory)."""
    check_finite(data, "")
    return validate(from_dict(RunConfig, _deep_merge(RunConfig().to_dict(), data)), files)


def saved_run_config(data: dict) -> RunConfig:
    """A finished run's saved config, to evaluate or compare it: checked like any config, except that the teacher
    files it names need not exist. They are where the teacher was loaded from on the machine that trained it (a
    shipped seed group's members name /tmp/... or /work/... paths); the run's teacher is its own teacher.pt or the
    file teacher-ref.json finds, relative to the run first."""
    return config_from_dict(data, files=False)
