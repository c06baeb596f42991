"""What a config asks training to build: the teacher's and the students' model specs, in training order, and a
pre-flight check that builds each one on the meta device so a bad size stops the run before anything is created.

A model spec is the dict saved beside a model's weights: {"kind"?, "arch", "params", "optim"?}.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from pkd.artifacts import load_teacher_weights
from pkd.config import RunConfig, student_optim
from pkd.data import DatasetSpec, get_dataset_spec
from pkd.flops import model_cost
from pkd.models import build_model, teacher_data_params
from pkd.models.clip import ViFiCLIP, load_clip_weights

MAX_MODEL_PARAMS = 50_000_000  # teacher or student; the largest shipped model has about 1.2 M


def teacher_spec(cfg: RunConfig, data_spec: DatasetSpec | None = None) -> dict:
    """Spec {kind, arch, params} of the teacher: the config's params over what it takes from the dataset (a video
    teacher's class names, channels, normalisation and side: pkd.models.teacher_data_params), so that
    build_model(spec) alone rebuilds it."""
    data_spec = data_spec or get_dataset_spec(cfg.data.dataset)
    params = {**teacher_data_params(cfg.teacher.arch, data_spec), **cfg.teacher.params}
    return {"kind": "teacher", "arch": cfg.teacher.arch, "params": params}


def load_teacher_file(path: str, teacher: nn.Module) -> dict:
    """Load `teacher.checkpoint` into the teacher and return its state dict: a video teacher reads a user's
    open_clip / ViFi-CLIP weights or a pkd run's teacher.pt (load_clip_weights), any other a pkd state dict."""
    if isinstance(teacher, ViFiCLIP):
        load_clip_weights(teacher, path)
        return {key: value.detach().cpu() for key, value in teacher.state_dict().items()}
    return load_teacher_weights(path, teacher)


def student_spec(cfg: RunConfig, data_spec: DatasetSpec, i: int) -> dict:
    """Spec {arch, params, optim} of schedule entry i: common params, the entry's own, the dataset's shape."""
    entry = {key: value for key, value in cfg.students.schedule[i].items() if key != "optim"}
    params = {**cfg.students.common, **entry, "image_shape": list(data_spec.sample_shape),
              "num_classes": data_spec.num_classes}
    return {"arch": cfg.students.arch, "params": params, "optim": dataclasses.asdict(student_optim(cfg, i))}


def student_specs(cfg: RunConfig, data_spec: DatasetSpec) -> list[dict]:
    """Specs of the K students, ordered as the config asks (by FLOPs if growing/shrinking)."""
    specs = [student_spec(cfg, data_spec, i) for i in range(cfg.students.k)]
    if cfg.students.order != "as_listed":
        costs = [model_cost(build_model(s), data_spec.sample_shape)[0] for s in specs]
        order = sorted(range(len(specs)), key=lambda i: costs[i], reverse=cfg.students.order == "shrinking")
        specs = [specs[i] for i in order]
    return specs


def soft_target_groups(cfg: RunConfig, data_spec: DatasetSpec) -> torch.Tensor | None:
    """(C,) the dataset's class groups if the run distils only the teacher's group sums, else None."""
    if cfg.distill.soft_target == "classes":
        return None
    if not data_spec.class_groups:
        raise ValueError(f"distill.soft_target: groups needs a dataset with class groups (moving_mnist has its "
                          f"digits); '{data_spec.name}' has none, so use classes")
    return torch.tensor(data_spec.class_groups)


def check_models(cfg: RunConfig) -> None:
    """Build every model of the config once (no data, no training) so bad sizes stop the run before it starts."""
    data_spec = get_dataset_spec(cfg.data.dataset)
    if cfg.teacher.arch == "vifi_clip" and data_spec.kind != "clip":
        raise ValueError(f"teacher.arch: vifi_clip classifies clips but data.dataset {cfg.data.dataset!r} holds "
                         f"images; use a clip dataset such as moving_mnist")
    soft_target_groups(cfg, data_spec)
    models = [("teacher", teacher_spec(cfg, data_spec))]
    models += [(f"students.schedule[{i}]", student_spec(cfg, data_spec, i)) for i in range(cfg.students.k)]
    for where, model_spec in models:
        try:
            # sizes only, on the meta device: nothing is allocated, so a huge model cannot exhaust memory; a video
            # teacher is built for real (its constructor fills the prompt cache; pkd's tiny CLIP is 3.4 M params)
            with torch.device("cpu" if model_spec.get("arch") == "vifi_clip" else "meta"):
                n_params = sum(p.numel() for p in build_model(model_spec).parameters())
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where}: {exc}") from None
        if n_params > MAX_MODEL_PARAMS:
            raise ValueError(f"{where}: {n_params:,} parameters exceed the maximum {MAX_MODEL_PARAMS:,}; "
                             "make the model smaller")
    if cfg.teacher.checkpoint:  # a bad or hostile teacher file stops the run before anything is created
        load_teacher_file(cfg.teacher.checkpoint, build_model(teacher_spec(cfg, data_spec)))
