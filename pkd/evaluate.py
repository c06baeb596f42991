"""Measuring a run: logits and accuracies of models on a split, the per-prefix table (prefix.csv), the
confidence early-exit curve and the run's summary. Training and `pkd eval` build their rows here, the same way.

Shapes: N samples in a split, C classes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
import torch.nn as nn

from pkd.artifacts import load_ensemble, load_teacher
from pkd.config import RunConfig, config_from_dict
from pkd.data import DatasetSpec, Split, get_dataset_spec, load_split, resolve_data_root
from pkd.data.moving_mnist import digit_of, reverse_clips
from pkd.drawn import cached_drawn_digits
from pkd.distributed import SINGLE, World, gather_rows, shard_range
from pkd.flops import model_cost
from pkd.models.ensemble import Ensemble, PrefixSums
from pkd.runs import Run

EVAL_BATCH = 1000
CONFIDENCE_LEVELS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
REPORTED_SPLITS = ("val", "test")  # accuracies in prefix.csv; the train split is never reported
DRAWN_PER_DIGIT, DRAWN_SEED = 100, 0  # the drawn-digit robustness set `pkd eval` measures MNIST runs on


def load_run_data(cfg: RunConfig, names: tuple[str, ...] = ("train", "val", "test")
                  ) -> tuple[DatasetSpec, dict[str, Split]]:
    """The dataset spec and the named splits of a run (default all three), cut to the config's limits."""
    data_spec = get_dataset_spec(cfg.data.dataset)
    limits = {"train": cfg.data.train_limit, "val": cfg.data.val_limit, "test": cfg.data.test_limit}
    splits = {}
    for name in names:
        n = limits[name]
        split = load_split(cfg.data.dataset, name, root=cfg.data.root)
        splits[name] = split if n is None or n >= len(split.labels) else \
            Split(inputs=split.inputs[:n], labels=split.labels[:n])
    if cfg.data.shots is not None and "train" in splits:
        splits["train"] = few_shot(splits["train"], cfg.data.shots, cfg.seed)
    return data_spec, splits


def few_shot(split: Split, shots: int, seed: int) -> Split:
    """K = `shots` samples of every class in the split, drawn with `seed` (ViFi-CLIP's K-shot training set), kept
    in split order. Classes absent from the split (a base-to-novel run's novel ones) stay absent; a class with
    fewer than K samples (after any train_limit) is refused, naming it."""
    order = torch.randperm(len(split.labels), generator=torch.Generator().manual_seed(seed))  # (N,)
    keep = []
    for c in split.labels.unique().tolist():
        of_class = order[split.labels[order] == c][:shots]
        if len(of_class) < shots:
            raise ValueError(f"data.shots: {shots} training samples per class asked, but class {c} has only "
                             f"{len(of_class)}; lower data.shots or raise data.train_limit")
        keep.append(of_class)
    idx = torch.cat(keep).sort().values  # (K*C,)
    return dataclasses.replace(split, inputs=split.inputs[idx], labels=split.labels[idx])


@torch.no_grad()
def predict_logits(model: nn.Module, data_spec: DatasetSpec, inputs: torch.Tensor, device: torch.device,
                   world: World = SINGLE) -> torch.Tensor:
    """Logits of `model` on raw inputs in [0, 1] (N, *sample_shape), in eval mode and batches. Returns (N, C) on CPU.

    Across ranks each computes its contiguous shard and all get the whole (N, C): every sample exactly once.
    """
    model.eval()
    start, stop = shard_range(len(inputs), world)
    out = []
    for i in range(start, stop, EVAL_BATCH):
        x = data_spec.normalize(inputs[i:min(i + EVAL_BATCH, stop)]).to(device)
        out.append(model(x).float().cpu())
    part = torch.cat(out) if out else torch.zeros(0, data_spec.num_classes)
    return gather_rows(part, len(inputs), world)


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


def anytime_curve(ensemble: Ensemble, data_spec: DatasetSpec, split: Split,
                  levels: tuple = CONFIDENCE_LEVELS, student_logits: list[torch.Tensor] | None = None) -> list[dict]:
    """Accuracy and mean FLOPs per sample of confidence-based early exit (Ensemble.predict's rule: stop at the first
    prefix whose top probability reaches the level) at several levels, from one pass of every prefix (or from
    `student_logits`, every student's (N, C) logits on the split, when they are already at hand)."""
    top, right = prefix_confidences(ensemble, data_spec, split, student_logits)  # (K, N) each
    cumulative = [float(c) for c in ensemble.cumulative_flops()]
    out = []
    for level in levels:
        acc, flops = exit_figures(top, right, cumulative, level)
        out.append({"confidence": level, "acc": acc, "mean_flops": flops})
    return out


def evaluate_run(run: Run, device: torch.device | str = "cpu", drawn_per_digit: int = DRAWN_PER_DIGIT) -> dict:
    """Recompute every figure of a run from its saved weights; rewrite prefix.csv and summary.json.

    The summary is the one training writes (teacher row, prefixes, and once every planned student is trained the
    early-exit curve, val-fitted budgets and AUC) plus, for MNIST runs, accuracies on the drawn-digit set.
    """
    cfg = config_from_dict(run.config())
    device = torch.device(device)
    data_spec, splits = load_run_data(cfg, REPORTED_SPLITS)  # no training split: a 50,000-clip one is 4 GB
    ensemble = load_ensemble(run, device=device)
    teacher = load_teacher(run, device=device)
    logits = {name: predict_logits(teacher, data_spec, splits[name].inputs, device) for name in REPORTED_SPLITS}
    teacher_figures = teacher_row(cfg.teacher.arch, teacher.cpu(), data_spec, logits, splits)
    rows, student_logits = prefix_rows(ensemble, cfg.students.arch, data_spec, splits, teacher_figures["flops"],
                                       device)
    run.write_prefix_table(rows)
    summary = run_summary(cfg, teacher_figures, rows, len(cfg.students.schedule))
    if len(rows) == len(cfg.students.schedule):
        ensemble.cpu()
        summary["anytime"] = anytime_curve(ensemble, data_spec, splits["test"],
                                           student_logits=student_logits["test"])
        summary.update(anytime_figures(ensemble, data_spec, splits, summary, student_logits))
    if data_spec.kind == "clip":
        summary["video"] = video_figures(teacher.cpu(), ensemble.cpu(), data_spec, splits["test"])
    if cfg.data.dataset == "mnist" and drawn_per_digit > 0:
        summary["drawn"] = drawn_figures(teacher, ensemble.cpu(), data_spec, drawn_per_digit)
    run.write_summary(summary)
    return summary


def prefix_rows(ensemble: Ensemble, arch: str, data_spec: DatasetSpec, splits: dict[str, Split],
                teacher_flops: int, device: torch.device) -> tuple[list[dict], dict[str, list[torch.Tensor]]]:
    """prefix.csv's rows (each prefix's and student's accuracy on the reported splits, sizes and FLOPs) and every
    student's logits on those splits ({split: K tensors (N, C)}, for the early-exit figures)."""
    sums = {name: PrefixSums(ensemble.mode) for name in REPORTED_SPLITS}
    rows: list[dict] = []
    student_logits: dict[str, list[torch.Tensor]] = {name: [] for name in REPORTED_SPLITS}
    for j, student in enumerate(ensemble.students):
        accuracies = {}
        for name in REPORTED_SPLITS:
            logits = predict_logits(student, data_spec, splits[name].inputs, device)  # (N, C)
            student_logits[name].append(logits)
            sums[name].add(logits, ensemble.prev_scales[j])
            accuracies.update(split_accuracies(name, sums[name], logits, splits[name].labels))
        rows.append(prefix_row(j + 1, arch, student.cpu(), data_spec, rows, teacher_flops,
                               ensemble.prev_scales[j], accuracies))
        student.to(device)
    return rows, student_logits


def drawn_figures(teacher: nn.Module, ensemble: Ensemble, data_spec: DatasetSpec, per_digit: int,
                  seed: int = DRAWN_SEED) -> dict:
    """summary.json's "drawn": teacher and prefix 1..K accuracies on the drawn-digit robustness set (pkd.drawn)."""
    images, labels = cached_drawn_digits(per_digit, seed, resolve_data_root())  # (N, 1, 28, 28), (N,)
    cpu = torch.device("cpu")
    sums, prefix_acc = PrefixSums(ensemble.mode), []
    for student, scale in zip(ensemble.students, ensemble.prev_scales):
        sums.add(predict_logits(student, data_spec, images, cpu), scale)
        prefix_acc.append(accuracy(sums.log_probs(), labels))
    return {"per_digit": per_digit, "seed": seed, "n": len(labels),
            "teacher_acc": accuracy(predict_logits(teacher.cpu(), data_spec, images, cpu), labels),
            "prefix_acc": prefix_acc}


def video_figures(teacher: nn.Module, ensemble: Ensemble, data_spec: DatasetSpec, split: Split) -> dict:
    """summary.json's "video" for a clip dataset (Moving MNIST's classes, 6 * digit + motion), on one split:

    - reversal_change: the share of clips whose predicted class changes when the clip is played backwards
      (reverse_clips). ViFi-CLIP's temporal mean is blind to order, so the teacher's is exactly 0; a student that
      reads the motion right changes its answer on every clip (its reverse has the reversed class).
    - digit_acc: accuracy of the digit part of the predicted class (digit_of), what order blindness leaves alone.
    - base_acc / novel_acc / hm, for a spec with novel_classes (ViFi-CLIP's base-to-novel protocol): accuracy on
      the base classes' test clips choosing among the base classes only, the same for the novel ones, and their
      harmonic mean.
    Teacher and every prefix 1..K (teacher_*, prefix_* lists); computed on the CPU.
    """
    cpu = torch.device("cpu")
    backwards = reverse_clips(split.inputs)  # (N, T, C, H, W)
    digits = digit_of(split.labels)  # (N,)

    def figures(forward: torch.Tensor, backward: torch.Tensor) -> tuple[float, float]:
        pred, pred_back = forward.argmax(-1), backward.argmax(-1)  # (N,) each
        return float((pred != pred_back).double().mean()), float((digit_of(pred) == digits).double().mean())

    teacher_logits = predict_logits(teacher, data_spec, split.inputs, cpu)  # (N, C)
    teacher_change, teacher_digit = figures(teacher_logits, predict_logits(teacher, data_spec, backwards, cpu))
    sums = {"forward": PrefixSums(ensemble.mode), "backward": PrefixSums(ensemble.mode)}
    change, digit, b2n = [], [], []
    for student, scale in zip(ensemble.students, ensemble.prev_scales):
        sums["forward"].add(predict_logits(student, data_spec, split.inputs, cpu), scale)
        sums["backward"].add(predict_logits(student, data_spec, backwards, cpu), scale)
        c, d = figures(sums["forward"].log_probs(), sums["backward"].log_probs())
        change.append(c)
        digit.append(d)
        b2n.append(base_to_novel(sums["forward"].log_probs(), split.labels, data_spec.novel_classes))
    out = {"split": split.split or "test", "n": len(split.labels), "teacher_reversal_change": teacher_change,
           "teacher_digit_acc": teacher_digit, "prefix_reversal_change": change, "prefix_digit_acc": digit}
    if data_spec.novel_classes:
        teacher_b2n = base_to_novel(teacher_logits, split.labels, data_spec.novel_classes)
        for key in ("base_acc", "novel_acc", "hm"):
            out[f"teacher_{key}"], out[f"prefix_{key}"] = teacher_b2n[key], [row[key] for row in b2n]
    return out


def base_to_novel(scores: torch.Tensor, labels: torch.Tensor, novel: Sequence[int]) -> dict[str, float]:
    """ViFi-CLIP's base-to-novel figures from (N, C) scores: base clips classified among the base classes only,
    novel clips among the novel ones, and the harmonic mean 2*b*n / (b + n). Empty when ``novel`` is."""
    if not novel:
        return {}
    is_novel = torch.zeros(scores.shape[1], dtype=torch.bool)
    is_novel[list(novel)] = True
    accs = {}
    for key, side in (("base_acc", ~is_novel), ("novel_acc", is_novel)):
        rows = side[labels]  # (N,) the clips of this side's classes
        masked = scores[rows].masked_fill(~side, float("-inf"))  # (n, C) the other side's classes out
        accs[key] = float((masked.argmax(-1) == labels[rows]).double().mean()) if rows.any() else 0.0
    b, n = accs["base_acc"], accs["novel_acc"]
    return {**accs, "hm": 2 * b * n / (b + n) if b + n > 0 else 0.0}


# ----------------------------------------------------------------------------------------------- budgets
# MSDNet's budgeted protocol (Huang et al., ICLR 2018): the early-exit threshold is fitted on the validation split
# for each FLOP budget, and accuracy is reported on the test split against the FLOPs actually spent per sample.
BUDGET_POINTS = 8  # default budgets: geometric from the first student's cost to the whole ensemble's
AUC_LOW_SHARE = 0.01  # the anytime AUC averages accuracy over budgets from 1% of the teacher's FLOPs to 100%


@torch.no_grad()
def prefix_confidences(ensemble: Ensemble, data_spec: DatasetSpec, split: Split,
                       student_logits: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Every prefix's top probability and whether its answer is right, per sample: (K, N) float and (K, N) bool.

    The probabilities are those Ensemble.predict(confidence=...) compares with its threshold. `student_logits`:
    each student's (N, C) logits on the split if already computed (training has them), else computed here.
    """
    if student_logits is None:
        student_logits = [predict_logits(s, data_spec, split.inputs, torch.device("cpu")) for s in ensemble.students]
    sums, top, right = PrefixSums(ensemble.mode), [], []
    for logits, scale in zip(student_logits, ensemble.prev_scales):
        sums.add(logits, scale)
        best = sums.log_probs().exp().max(dim=-1)  # (N,)
        top.append(best.values)
        right.append(best.indices == split.labels)
    return torch.stack(top), torch.stack(right)


def exit_positions(top: torch.Tensor, confidence: float | None) -> torch.Tensor:
    """Index (0-based) of the prefix each sample stops at: the first whose top probability reaches `confidence`,
    else the last (None: never early). top: (K, N) -> (N,)."""
    last = top.shape[0] - 1
    if confidence is None:
        return torch.full((top.shape[1],), last, dtype=torch.long)
    reached = torch.cat([top[:-1] >= confidence, torch.ones(1, top.shape[1], dtype=torch.bool)])  # (K, N)
    return reached.to(torch.int8).argmax(dim=0).long()  # first True


def fit_confidence(top: torch.Tensor, cumulative: list[float], budget: float) -> tuple[bool, float | None]:
    """The largest threshold whose mean FLOPs per sample on this split stay within `budget`.

    Mean FLOPs grow with the threshold; the candidates are the top probabilities themselves (where exits change)
    and None (no early exit). Returns (fits, threshold): fits is False when even stopping every sample after
    the first student costs more than the budget.
    """
    if cumulative[-1] <= budget:
        return True, None
    if cumulative[0] > budget or top.shape[0] == 1:
        return False, None
    candidates = torch.unique(top[:-1].reshape(-1))  # ascending
    steps = torch.tensor([b - a for a, b in zip(cumulative, cumulative[1:])], dtype=torch.float64)  # (K-1,)
    below = torch.stack([torch.searchsorted(torch.sort(row).values, candidates, side="left")
                         for row in running_max(top)[:-1]]).double() / top.shape[1]  # (K-1, T): share going on
    mean = cumulative[0] + (steps[:, None] * below).sum(dim=0)  # (T,) mean FLOPs at each candidate
    fitting = torch.nonzero(mean <= budget * (1 + 1e-12)).flatten()
    return True, float(candidates[fitting[-1]])  # index 0 (every sample stops at k = 1) always fits here


def running_max(top: torch.Tensor) -> torch.Tensor:
    """max over prefixes 1..k of the top probability, per k: a sample has stopped by k iff this reaches the
    threshold. (K, N) -> (K, N)."""
    return torch.cummax(top, dim=0).values


def exit_figures(top: torch.Tensor, right: torch.Tensor, cumulative: list[float], confidence: float | None
                 ) -> tuple[float, float]:
    """(accuracy, mean FLOPs per sample) of early exit at `confidence` on one split."""
    stop = exit_positions(top, confidence)  # (N,)
    n = max(top.shape[1], 1)
    correct = right.gather(0, stop[None]).sum()
    return float(correct) / n, float(torch.tensor(cumulative, dtype=torch.float64)[stop].sum()) / n


def val_fitted_curve(ensemble: Ensemble, data_spec: DatasetSpec, splits: dict[str, Split],
                     budgets: list[float] | None = None, student_logits: dict | None = None) -> list[dict]:
    """Early exit under FLOP budgets, MSDNet style: per budget, the threshold fitted on val (the largest whose val
    mean FLOPs fit), then its test accuracy and test mean FLOPs ("acc", "mean_flops"). Budgets below the first
    student's cost are left out. Default budgets: BUDGET_POINTS, geometric from the first prefix to the last.
    `student_logits`: {"val": [...], "test": [...]} every student's logits, if already computed."""
    cumulative = [float(c) for c in ensemble.cumulative_flops()]
    if budgets is None:
        first, last = cumulative[0], cumulative[-1]
        ratio = (last / first) ** (1 / (BUDGET_POINTS - 1)) if 0 < first < last else 1.0
        budgets = [first * ratio ** i for i in range(BUDGET_POINTS - 1)] + [last] if ratio > 1 else [last]
    student_logits = student_logits or {}
    val_top, val_right = prefix_confidences(ensemble, data_spec, splits["val"], student_logits.get("val"))
    test_top, test_right = prefix_confidences(ensemble, data_spec, splits["test"], student_logits.get("test"))
    out = []
    for budget in budgets:
        fits, confidence = fit_confidence(val_top, cumulative, budget)
        if not fits:
            continue
        val_acc, val_flops = exit_figures(val_top, val_right, cumulative, confidence)
        acc, flops = exit_figures(test_top, test_right, cumulative, confidence)
        out.append({"budget": float(budget), "confidence": confidence, "val_acc": val_acc,
                    "val_mean_flops": val_flops, "acc": acc, "mean_flops": flops})
    return out


def anytime_auc(points: list[tuple[float, float]], low: float, high: float) -> float:
    """Normalised area under the anytime curve over log FLOPs:  (1 / ln(high/low)) ∫ acc(f) d ln f  on
    [low, high], where acc(f) is the accuracy of the costliest prefix that fits in f FLOPs (0 where none fits,
    as `Ensemble.predict(flop_budget=f)` refuses). `points`: (cumulative FLOPs, accuracy) of prefixes 1..K."""
    if not 0 < low < high:
        raise ValueError(f"anytime AUC range {low}..{high}: needs 0 < low < high")
    area, points = 0.0, sorted(points)
    for i, (cost, acc) in enumerate(points):
        start = max(cost, low)
        end = min(points[i + 1][0] if i + 1 < len(points) else high, high)
        if end > start:
            area += acc * (math.log(end) - math.log(start))
    return area / (math.log(high) - math.log(low))


def auc_of_rows(rows: list[dict], teacher_flops: float, key: str = "prefix_acc") -> float | None:
    """anytime_auc of prefix rows over budgets AUC_LOW_SHARE..1 of the teacher's FLOPs (None without figures)."""
    points = [(r["cumulative_flops"], r[key]) for r in rows if r.get(key) is not None and r.get("cumulative_flops")]
    if not points or not teacher_flops or teacher_flops <= 0:
        return None
    return anytime_auc(points, AUC_LOW_SHARE * teacher_flops, teacher_flops)


def anytime_figures(ensemble: Ensemble, data_spec: DatasetSpec, splits: dict[str, Split], summary: dict,
                    student_logits: dict | None = None) -> dict:
    """summary.json's budget keys: "anytime_val_fitted" (val_fitted_curve) and "anytime_auc" (val and test AUC over
    budgets from AUC_LOW_SHARE of the teacher's FLOPs to all of them)."""
    teacher_flops = float(summary["teacher"]["flops"])
    rows = summary["prefixes"]
    return {"anytime_val_fitted": val_fitted_curve(ensemble, data_spec, splits, student_logits=student_logits),
            "anytime_auc": {"val": auc_of_rows(rows, teacher_flops, "prefix_val_acc"),
                            "test": auc_of_rows(rows, teacher_flops, "prefix_acc"),
                            "low_flops": AUC_LOW_SHARE * teacher_flops, "high_flops": teacher_flops}}
