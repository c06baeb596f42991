"""Trained models read back from a run directory: what the app, the CLI and export load.

Every weights file is checked against the run's own config before it is built (a replaced or foreign file is
refused with the file's name), and loaded with `weights_only=True` through `pkd.runs`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from pkd.config import MAX_STUDENT_SIZES, VIDEO_TEACHER
from pkd.data import get_dataset_spec
from pkd.flops import model_cost
from pkd.models import build_model, teacher_data_params
from pkd.models.ensemble import Ensemble
from pkd.runs import Run, RunError, get_field, load_tensors
from pkd.runs.schema import SavedModel


def load_ensemble(run: Run, k: int | None = None, device: torch.device | str = "cpu", config: dict | None = None
                  ) -> Ensemble:
    """The first k (default all saved) students of a run as an Ensemble with their FLOPs, in eval mode.

    `config`: the run's config as the caller already holds it (training passes the one it trains with, so an
    edit of manifest.json during the run cannot change what it evaluates); default: read from the manifest.
    """
    cfg = run.config() if config is None else config
    mode = get_field(cfg, "distill", "mode") or "residual"
    n = run.students_saved()
    if n == 0:
        raise RunError(f"{run.path}: no trained students yet")
    k = n if k is None else min(k, n)
    students, flops, scales = [], [], []
    for j in range(1, k + 1):
        saved = run.load_student(j)
        model = saved_model(cfg, saved, "students", run.student_path(j))
        flops.append(model_cost(model, tuple(saved["spec"]["params"]["image_shape"]))[0])
        students.append(model.to(device))
        if saved[SavedModel.PREV_SCALE] != 1.0 and mode != "residual":
            raise RunError(f"{run.student_path(j)}: has a residual prev_scale but the run's mode is {mode}; "
                           "the file belongs to another run")
        scales.append(saved[SavedModel.PREV_SCALE])
    return Ensemble(students, mode=mode, student_flops=flops, prev_scales=scales).eval()


def load_teacher(run: Run, device: torch.device | str = "cpu") -> nn.Module:
    """The run's teacher in eval mode."""
    return saved_model(run.config(), run.load_teacher(), "teacher", run.teacher_path()).to(device)


def saved_model(cfg: dict, saved: dict, role: str, path: Path) -> nn.Module:
    """Build a saved {spec, state_dict} model (refusing specs the run's config does not describe), in eval mode."""
    check_saved_spec(cfg, saved["spec"], role, path)
    check_spec_budget(saved["spec"], saved[SavedModel.STATE_DICT], path)
    model = build_model(saved["spec"])
    try:
        model.load_state_dict(saved[SavedModel.STATE_DICT])
    except RuntimeError as exc:
        raise RunError(f"{path}: weights do not fit the saved spec ({load_error(exc)})") from None
    return model.eval()


def load_saved_weights(model: nn.Module, cfg: dict, saved: dict, role: str, path: Path) -> None:
    """Load a saved model's weights into `model` (built from the config) after checking its spec: a file that the
    config does not describe, or weights that do not fit, are a one-line RunError naming the file."""
    check_saved_spec(cfg, saved["spec"], role, path)
    try:
        model.load_state_dict(saved[SavedModel.STATE_DICT])
    except RuntimeError as exc:
        raise RunError(f"{path}: weights do not fit the run's config ({load_error(exc)}); was {role} or "
                       "manifest.json changed after it was saved?") from None


def _allowed_params(cfg: dict, role: str) -> list[dict]:
    """The model params (without the dataset's shape) that the config's teacher / students may have."""
    section = cfg.get(role) if isinstance(cfg.get(role), dict) else {}
    if role == "teacher":  # + what the spec takes from the dataset (a video teacher's class names, ...)
        try:
            data = teacher_data_params(section.get("arch"), get_dataset_spec(get_field(cfg, "data", "dataset")))
        except (ValueError, TypeError):
            data = {}
        return [{**data, **dict(section.get("params") or {})}]
    common = section.get("common") if isinstance(section.get("common"), dict) else {}
    schedule = section.get("schedule") if isinstance(section.get("schedule"), list) else []
    return [{**common, **{key: v for key, v in entry.items() if key != "optim"}}
            for entry in schedule if isinstance(entry, dict)]


def check_saved_spec(cfg: dict, model_spec: dict, role: str, path: Path) -> None:
    """Refuse a weights file whose model spec is not one the run's config asks for (wrong or oversized model)."""
    kind = "teacher" if role == "teacher" else "student"
    params = dict(model_spec.get("params", {}))
    own = {key: value for key, value in params.items() if key not in ("image_shape", "num_classes")}
    ok = model_spec.get("kind", "student") == kind and model_spec.get("arch") == get_field(cfg, role, "arch") \
        and own in _allowed_params(cfg, role)
    if ok and ("image_shape" in params or "num_classes" in params):
        try:
            data_spec = get_dataset_spec(get_field(cfg, "data", "dataset"))
            ok = list(params.get("image_shape", data_spec.sample_shape)) == list(data_spec.sample_shape) \
                and params.get("num_classes", data_spec.num_classes) == data_spec.num_classes
        except (ValueError, TypeError):
            ok = False
    if not ok:
        raise RunError(f"{path}: holds a {model_spec.get('arch')!r} model that the run's config does not describe; "
                       "the file was replaced or belongs to another run")


def check_spec_budget(model_spec: dict, state: dict, path: Path) -> None:
    """Before a saved model is built: a student's sizes within the config's bounds (MAX_STUDENT_SIZES), and the
    model the spec describes no larger than the numbers the file holds (counted on the meta device: nothing is
    allocated), so a hostile spec cannot make pkd allocate more than the weights file itself. RunError naming it."""
    params = model_spec.get("params") if isinstance(model_spec.get("params"), dict) else {}
    if model_spec.get("kind", "student") == "student":
        for key, limit in MAX_STUDENT_SIZES.items():
            value = params.get(key)
            if isinstance(value, int) and not 1 <= value <= limit:
                raise RunError(f"{path}: its spec asks for {key} {value} (pkd builds 1..{limit}); the file is "
                               "damaged or hostile and was not built")
    if model_spec.get("arch") == VIDEO_TEACHER:
        return  # built from its own config's fixed architecture (and its prompt cache), never from a spec's sizes
    held = sum(t.numel() for t in state.values() if isinstance(t, torch.Tensor)) if isinstance(state, dict) else 0
    try:
        with torch.device("meta"):
            need = sum(p.numel() for p in build_model(model_spec).parameters())
    except (ValueError, TypeError, RuntimeError, NotImplementedError):
        return  # building it for real names what is wrong
    if need > held:
        raise RunError(f"{path}: its spec describes a model of {need:,} parameters but the file holds only {held:,} "
                       "numbers; the file is damaged or hostile and was not built")


def load_error(exc: Exception) -> str:
    """The informative line of a load_state_dict error (torch puts a generic header line first)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    return (lines[1] if len(lines) > 1 and lines[0].startswith("Error(s) in loading") else lines[0])[:300]


def load_teacher_weights(path: str, model: nn.Module) -> dict:
    """State dict of a teacher file given by the user: a run's teacher.pt or a bare state_dict (weights only)."""
    obj = load_tensors(Path(path).resolve())
    state = obj.get(SavedModel.STATE_DICT, obj)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RunError(f"teacher.checkpoint {path}: not a state_dict of tensors; give a run's teacher.pt")
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError) as exc:
        raise RunError(f"teacher.checkpoint {path}: does not fit the teacher architecture ({load_error(exc)})") \
            from None
    return state
