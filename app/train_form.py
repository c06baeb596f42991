"""The Train page's form <-> config overrides, as pure functions (no Streamlit; unit-tested)."""

from __future__ import annotations

import os
from typing import Any

import yaml

SCHEDULES = ("doubling", "same size", "halving", "custom")


def form_defaults(config_path: str | os.PathLike) -> dict:
    """Form values taken from a config file (missing keys get pkd's defaults).

    Raises:
        pkd.config.ConfigError: the file is missing or invalid (one-line message naming the field).
    """
    from pkd.config import load_config

    cfg = load_config(config_path)
    sizes = [int({**cfg.students.common, **entry}.get("d_model", 8)) for entry in cfg.students.schedule]
    return {
        "dataset": cfg.data.dataset,
        "k": len(sizes),
        "schedule": guess_schedule(sizes),
        "base": sizes[0] if sizes else 8,
        "custom": ", ".join(str(s) for s in sizes),
        # each student's other settings (d_state, n_layers, own optim ...), kept when only the widths change
        "entries": [{key: value for key, value in entry.items() if key != "d_model"}
                    for entry in cfg.students.schedule],
        "mode": cfg.distill.mode,
        "learn_prev_scale": bool(cfg.distill.learn_prev_scale),
        "alpha": float(cfg.distill.alpha),
        "temperature": float(cfg.distill.temperature),
        "teacher_epochs": int(cfg.teacher.optim.epochs),
        "student_epochs": int(cfg.students.optim.epochs),
        "device": cfg.device,
    }


def guess_schedule(sizes: list[int]) -> str:
    """Name the schedule a list of student widths follows ("custom" if none fits)."""
    for kind in SCHEDULES[:-1]:
        if sizes and schedule_sizes(kind, len(sizes), sizes[0]) == sizes:
            return kind
    return "custom"


def schedule_sizes(kind: str, k: int, base: int, custom: str = "") -> list[int]:
    """Model width (d_model) of each of the k students.

    Args:
        kind: "doubling" (base, 2 base, ...), "same size", "halving" (never below 1) or "custom".
        k: number of students (ignored for "custom": the list decides).
        base: first student's d_model.
        custom: comma-separated widths for "custom", e.g. "4, 8, 16".

    Returns:
        The widths.

    Raises:
        ValueError: unknown kind, k or base below 1, or a custom list that is not positive integers.
    """
    if kind == "custom":
        try:
            sizes = [int(part) for part in custom.replace(";", ",").split(",") if part.strip()]
        except ValueError:
            raise ValueError(f"custom sizes {custom!r}: write whole numbers separated by commas, e.g. 4, 8, 16") \
                from None
        if not sizes or min(sizes) < 1:
            raise ValueError(f"custom sizes {custom!r}: give at least one positive width, e.g. 4, 8, 16")
        return sizes
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; choose one of: {', '.join(SCHEDULES)}")
    if k < 1 or base < 1:
        raise ValueError(f"need at least 1 student of width >= 1, got k={k}, d_model={base}")
    if kind == "doubling":
        return [base * 2 ** i for i in range(k)]
    if kind == "halving":
        return [max(1, base // 2 ** i) for i in range(k)]
    return [base] * k


def build_overrides(values: dict, defaults: dict) -> list[str]:
    """`key=value` overrides for `python -m pkd train` from form values, only where they differ from the config.

    Args:
        values: form values with the keys of form_defaults (schedule/base/custom/k describe the sizes).
        defaults: form_defaults of the chosen config.

    Returns:
        Overrides such as ["distill.alpha=0.5", "students.schedule=[{d_model: 4}, {d_model: 8}]"].
    """
    out: list[str] = []

    def put(key: str, new: Any, old: Any) -> None:
        if new != old:
            out.append(f"{key}={_yaml(new)}")

    put("data.dataset", values["dataset"], defaults["dataset"])
    new_sizes = schedule_sizes(values["schedule"], int(values["k"]), int(values["base"]), values.get("custom", ""))
    old_sizes = schedule_sizes("custom", 0, 1, defaults["custom"])
    if new_sizes != old_sizes:
        extras = defaults.get("entries") or []
        entries = [{**(extras[i] if i < len(extras) else {}), "d_model": size} for i, size in enumerate(new_sizes)]
        out.append("students.schedule=" + yaml.safe_dump(entries, default_flow_style=True, width=10**6).strip())
    put("distill.mode", values["mode"], defaults["mode"])
    # the learned scale only exists in residual mode: switching to independent turns it off
    put("distill.learn_prev_scale", bool(values["learn_prev_scale"]) and values["mode"] == "residual",
        defaults["learn_prev_scale"])
    put("distill.alpha", round(float(values["alpha"]), 4), round(float(defaults["alpha"]), 4))
    put("distill.temperature", round(float(values["temperature"]), 4), round(float(defaults["temperature"]), 4))
    put("teacher.optim.epochs", int(values["teacher_epochs"]), int(defaults["teacher_epochs"]))
    put("students.optim.epochs", int(values["student_epochs"]), int(defaults["student_epochs"]))
    return out


def _yaml(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    return str(value)
