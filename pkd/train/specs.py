"""What a config asks training to build: the students' model specs, in training order (the teacher's is
pkd.train.teacher.teacher_spec), and a pre-flight check that builds each model on the meta device so a bad size
stops the run before anything is created.

A model spec is the dict saved beside a model's weights: {"kind"?, "arch", "params", "optim"?}.
"""

from __future__ import annotations

import dataclasses

import torch

from pkd.config import RunConfig, student_optim
from pkd.data import DatasetSpec, get_dataset_spec
from pkd.flops import model_cost
from pkd.models import build_model
from pkd.train.teacher import teacher_spec, teacher_training

MAX_MODEL_PARAMS = 50_000_000  # teacher or student; the largest shipped model has about 1.2 M


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
    training = teacher_training(cfg.teacher.arch)
    training.check_data(cfg, data_spec)
    soft_target_groups(cfg, data_spec)
    models = [("teacher", teacher_spec(cfg, data_spec), training.check_device)]
    models += [(f"students.schedule[{i}]", student_spec(cfg, data_spec, i), "meta") for i in range(cfg.students.k)]
    for where, model_spec, device in models:
        try:
            # sizes only, on the meta device: nothing is allocated, so a huge model cannot exhaust memory; a teacher
            # whose TeacherTraining asks for the CPU is built for real (the video teacher fills its prompt cache)
            with torch.device(device):
                n_params = sum(p.numel() for p in build_model(model_spec).parameters())
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where}: {exc}") from None
        if n_params > MAX_MODEL_PARAMS:
            raise ValueError(f"{where}: {n_params:,} parameters exceed the maximum {MAX_MODEL_PARAMS:,}; "
                             "make the model smaller")
    if cfg.teacher.checkpoint:  # a bad or hostile teacher file stops the run before anything is created
        training.load_file(cfg.teacher.checkpoint, build_model(teacher_spec(cfg, data_spec)))
