"""The model registries: teachers and students by name, built from plain config dicts or from a saved spec.

Model modules register their classes with the decorators here (`@register_teacher("mnist_cnn")`); pkd.models
imports those modules, so importing any part of the package fills the registries. A teacher class that takes
params from the dataset says which through a static `data_params(data_spec)` (see `teacher_data_params`).
"""

from __future__ import annotations

import inspect
from typing import Callable, TypeVar

import torch.nn as nn

__all__ = ["TEACHERS", "STUDENTS", "register_teacher", "register_student", "build_teacher", "build_student",
           "build_model", "teacher_data_params"]

ModelT = TypeVar("ModelT", bound=type[nn.Module])

TEACHERS: dict[str, type[nn.Module]] = {}
STUDENTS: dict[str, type[nn.Module]] = {}


def _register(registry: dict[str, type[nn.Module]], kind: str, name: str) -> Callable[[ModelT], ModelT]:
    def decorator(cls: ModelT) -> ModelT:
        if name in registry and registry[name] is not cls:
            raise ValueError(f"{kind} '{name}' is already registered to {registry[name].__qualname__}")
        registry[name] = cls
        return cls

    return decorator


def register_teacher(name: str) -> Callable[[ModelT], ModelT]:
    """Class decorator adding a teacher to TEACHERS under name."""
    return _register(TEACHERS, "teacher", name)


def register_student(name: str) -> Callable[[ModelT], ModelT]:
    """Class decorator adding a student to STUDENTS under name."""
    return _register(STUDENTS, "student", name)


def _build(registry: dict[str, type[nn.Module]], kind: str, name: str, kwargs: dict[str, object]) -> nn.Module:
    if name not in registry:
        raise ValueError(f"unknown {kind} '{name}'; choose one of: {', '.join(sorted(registry))}")
    cls = registry[name]
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    for key in kwargs:
        if key not in allowed:
            raise ValueError(f"unknown field '{key}' for {kind} '{name}'; allowed: {', '.join(allowed)}")
    return cls(**kwargs)


def build_teacher(name: str, **kwargs: object) -> nn.Module:
    """Build a registered teacher from config values (unknown fields and impossible sizes raise ValueError).

    Returns:
        A module mapping normalised images (B, C, H, W) to logits (B, K).
    """
    return _build(TEACHERS, "teacher", name, kwargs)


def build_student(name: str, **kwargs: object) -> nn.Module:
    """Build a registered student from config values (unknown fields and impossible sizes raise ValueError).

    Returns:
        A module mapping normalised images (B, C, H, W) to logits (B, K).
    """
    return _build(STUDENTS, "student", name, kwargs)


def build_model(model_spec: dict) -> nn.Module:
    """A student or teacher from its saved spec {"kind", "arch", "params"} (kind defaults to student)."""
    params = dict(model_spec.get("params", {}))
    if "image_shape" in params:
        params["image_shape"] = tuple(params["image_shape"])
    if model_spec.get("kind") == "teacher":
        return build_teacher(model_spec["arch"], **params)
    return build_student(model_spec["arch"], **params)


def teacher_data_params(arch: str, data_spec) -> dict:
    """The params a teacher's spec takes from the dataset (a pkd.data.DatasetSpec), not from the config: what the
    registered class's static `data_params(data_spec)` returns (the video teacher's class names, channels,
    normalisation and side); `teacher.params` may override any of them. Other teachers (and unknown archs) take
    nothing.
    """
    data_params = getattr(TEACHERS.get(arch), "data_params", None)
    return data_params(data_spec) if data_params is not None else {}

