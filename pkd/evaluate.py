"""Measuring a run: logits and accuracies of models on a split, the per-prefix table (prefix.csv), the
confidence early-exit curve and the run's summary. Training and `pkd eval` build their rows here, the same way.

Shapes: N samples in a split, C classes.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from pkd.artifacts import load_ensemble, load_teacher
from pkd.config import RunConfig, config_from_dict
from pkd.data import DatasetSpec, Split, get_dataset_spec, load_split
from pkd.flops import model_cost
from pkd.models.ensemble import Ensemble, PrefixSums
from pkd.runs import Run

EVAL_BATCH = 1000
CONFIDENCE_LEVELS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
REPORTED_SPLITS = ("val", "test")  # accuracies in prefix.csv; the train split is never reported


def load_run_data(cfg: RunConfig) -> tuple[DatasetSpec, dict[str, Split]]:
    """The dataset spec and the train/val/test splits of a run, cut to the config's limits."""
    data_spec = get_dataset_spec(cfg.data.dataset)
    limits = {"train": cfg.data.train_limit, "val": cfg.data.val_limit, "test": cfg.data.test_limit}
    splits = {}
    for name, n in limits.items():
        split = load_split(cfg.data.dataset, name, root=cfg.data.root)
        splits[name] = split if n is None or n >= len(split.labels) else \
            Split(inputs=split.inputs[:n], labels=split.labels[:n])
    return data_spec, splits


@torch.no_grad()
def predict_logits(model: nn.Module, data_spec: DatasetSpec, inputs: torch.Tensor, device: torch.device
                   ) -> torch.Tensor:
    """Logits of `model` on raw inputs in [0, 1] (N, *sample_shape), in eval mode and batches. Returns (N, C) on CPU."""
    model.eval()
    out = []
    for i in range(0, len(inputs), EVAL_BATCH):
        x = data_spec.normalize(inputs[i:i + EVAL_BATCH]).to(device)
        out.append(model(x).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, data_spec.num_classes)


def accuracy(log_probs_or_logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of rows whose argmax is the label: exactly correct / total (nan for no rows)."""
    if not len(labels):
        return float("nan")
    return int((log_probs_or_logits.argmax(dim=-1) == labels).sum()) / len(labels)


def split_accuracies(split_name: str, sums: PrefixSums, logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """The prefix's and the newest student's own accuracy on one split (test: prefix_acc, val: prefix_val_acc)."""
    tag = "" if split_name == "test" else f"{split_name}_"
    return {f"prefix_{tag}acc": accuracy(sums.log_probs(), labels), f"solo_{tag}acc": accuracy(logits, labels)}


def prefix_row(k: int, arch: str, student: nn.Module, data_spec: DatasetSpec, previous: list[dict],
               teacher_flops: int, prev_scale: float, accuracies: dict) -> dict:
    """Row k of prefix.csv: the student's size and FLOPs, the prefix's cumulative FLOPs, its accuracies."""
    flops, params = model_cost(student, data_spec.sample_shape)
    cumulative = (previous[-1]["cumulative_flops"] if previous else 0) + flops
    return {"k": k, "arch": arch, "params": params, "student_flops": flops, "cumulative_flops": cumulative,
            "share_of_teacher": cumulative / teacher_flops, "prev_scale": prev_scale, **accuracies}


def teacher_row(arch: str, teacher: nn.Module, data_spec: DatasetSpec, logits: dict[str, torch.Tensor],
                splits: dict[str, Split]) -> dict:
    """The teacher's FLOPs, parameters and accuracies (summary.json's "teacher")."""
    flops, params = model_cost(teacher, data_spec.sample_shape)
    return {"arch": arch, "flops": flops, "params": params,
            "val_acc": accuracy(logits["val"], splits["val"].labels),
            "test_acc": accuracy(logits["test"], splits["test"].labels)}


def run_summary(cfg: RunConfig, teacher: dict, rows: list[dict], k_planned: int) -> dict:
    """summary.json without the anytime curve (added once every student is trained)."""
    return {"name": cfg.name, "dataset": cfg.data.dataset, "mode": cfg.distill.mode, "k_planned": k_planned,
            "flops_unit": "FLOPs per sample (2 per multiply-add)", "teacher": teacher, "prefixes": rows}


@torch.no_grad()
def anytime_curve(ensemble: Ensemble, data_spec: DatasetSpec, split: Split,
                  levels: tuple = CONFIDENCE_LEVELS) -> list[dict]:
    """Accuracy and mean FLOPs per sample of confidence-based early exit at several thresholds."""
    ensemble.eval()
    out = []
    for level in levels:
        correct = flops = 0.0
        for i in range(0, len(split.labels), EVAL_BATCH):
            x = data_spec.normalize(split.inputs[i:i + EVAL_BATCH])
            pred = ensemble.predict(x, confidence=level)
            correct += float((pred.classes == split.labels[i:i + EVAL_BATCH]).sum())
            flops += float(pred.flops.sum())
        n = max(len(split.labels), 1)
        out.append({"confidence": level, "acc": correct / n, "mean_flops": flops / n})
    return out


@torch.no_grad()
def evaluate_run(run: Run, device: torch.device | str = "cpu") -> list[dict]:
    """Recompute every prefix's test/val accuracy from the saved weights and rewrite prefix.csv."""
    cfg = config_from_dict(run.config())
    device = torch.device(device)
    data_spec, splits = load_run_data(cfg)
    ensemble = load_ensemble(run, device=device)
    teacher_flops = model_cost(load_teacher(run), data_spec.sample_shape)[0]
    sums = {name: PrefixSums(ensemble.mode) for name in REPORTED_SPLITS}
    rows: list[dict] = []
    for j, student in enumerate(ensemble.students):
        accuracies = {}
        for name in REPORTED_SPLITS:
            logits = predict_logits(student, data_spec, splits[name].inputs, device)  # (N, C)
            sums[name].add(logits, ensemble.prev_scales[j])
            accuracies.update(split_accuracies(name, sums[name], logits, splits[name].labels))
        rows.append(prefix_row(j + 1, cfg.students.arch, student.cpu(), data_spec, rows, teacher_flops,
                               ensemble.prev_scales[j], accuracies))
        student.to(device)
    run.write_prefix_table(rows)
    return rows
