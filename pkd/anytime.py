"""Early exit, FLOP budgets and the anytime AUC: pure functions of the students' logits and the prefixes' FLOPs.

A run's ensemble answers with any prefix 1..k; these figures say what stopping early buys. The confidence curve
stops each sample at the first prefix whose top probability reaches a level (Ensemble.predict's rule); the
val-fitted curve fits that level per FLOP budget on the validation split (MSDNet's protocol); the AUC averages
accuracy over budgets on a log-FLOPs axis (pkd/anytime_auc.py, re-exported here). Nothing here runs a model:
`pkd.evaluate` computes the logits (training hands over the ones it has), the ensemble supplies its mode, scales and
FLOPs.

Shapes: K prefixes (students), N samples in a split, C classes.
"""

from __future__ import annotations

import torch

from pkd.anytime_auc import AUC_LOW_SHARE, anytime_auc, auc_of_rows  # noqa: F401 - anytime_auc re-exported
from pkd.combiners import COMBINERS, prefix_probs
from pkd.models.ensemble import Ensemble, PrefixSums
from pkd.runs.schema import (AnytimeAuc, AnytimePoint, CombinerFigures, PrefixRow, Summary, TeacherFigures,
                             ValFittedPoint)

CONFIDENCE_LEVELS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)

# MSDNet's budgeted protocol (Huang et al., ICLR 2018): the early-exit threshold is fitted on the validation split
# for each FLOP budget, and accuracy is reported on the test split against the FLOPs actually spent per sample.
BUDGET_POINTS = 8  # default budgets: geometric from the first student's cost to the whole ensemble's


def anytime_curve(ensemble: Ensemble, student_logits: list[torch.Tensor], labels: torch.Tensor,
                  levels: tuple = CONFIDENCE_LEVELS) -> list[dict]:
    """Accuracy and mean FLOPs per sample of confidence-based early exit (Ensemble.predict's rule: stop at the first
    prefix whose top probability reaches the level) at several levels, from one pass of every prefix.

    Args:
        ensemble: the run's students (their mode, scales and FLOPs).
        student_logits: every student's (N, C) logits on the split.
        labels: (N,) the split's labels.
    """
    top, right = prefix_confidences(ensemble, student_logits, labels)  # (K, N) each
    cumulative = [float(c) for c in ensemble.cumulative_flops()]
    out = []
    for level in levels:
        acc, flops = exit_figures(top, right, cumulative, level)
        out.append({AnytimePoint.CONFIDENCE: level, AnytimePoint.ACC: acc, AnytimePoint.MEAN_FLOPS: flops})
    return out


@torch.no_grad()
def prefix_confidences(ensemble: Ensemble, student_logits: list[torch.Tensor], labels: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Every prefix's top probability and whether its answer is right, per sample: (K, N) float and (K, N) bool.

    The probabilities are those Ensemble.predict(confidence=...) compares with its threshold. `student_logits`:
    each student's (N, C) logits on the split; `labels`: (N,).
    """
    sums, top, right = PrefixSums(ensemble.mode), [], []
    for logits, scale in zip(student_logits, ensemble.prev_scales):
        sums.add(logits, scale)
        best = sums.log_probs().exp().max(dim=-1)  # (N,)
        top.append(best.values)
        right.append(best.indices == labels)
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


def default_budgets(cumulative: list[float]) -> list[float]:
    """BUDGET_POINTS budgets, geometric from the first prefix's cumulative FLOPs to the last's."""
    first, last = cumulative[0], cumulative[-1]
    ratio = (last / first) ** (1 / (BUDGET_POINTS - 1)) if 0 < first < last else 1.0
    return [first * ratio ** i for i in range(BUDGET_POINTS - 1)] + [last] if ratio > 1 else [last]


def val_fitted_curve(ensemble: Ensemble, student_logits: dict[str, list[torch.Tensor]],
                     labels: dict[str, torch.Tensor], budgets: list[float] | None = None) -> list[dict]:
    """Early exit under FLOP budgets, MSDNet style: per budget, the threshold fitted on val (the largest whose val
    mean FLOPs fit), then its test accuracy and test mean FLOPs ("acc", "mean_flops"). Budgets below the first
    student's cost are left out. Default budgets: BUDGET_POINTS, geometric from the first prefix to the last.
    `student_logits` / `labels`: {"val": ..., "test": ...} every student's (N, C) logits and the (N,) labels."""
    cumulative = [float(c) for c in ensemble.cumulative_flops()]
    val = prefix_confidences(ensemble, student_logits["val"], labels["val"])
    test = prefix_confidences(ensemble, student_logits["test"], labels["test"])
    return fitted_points(val, test, cumulative, default_budgets(cumulative) if budgets is None else budgets)


def budgeted_curve(val_probs: torch.Tensor, val_labels: torch.Tensor, test_probs: torch.Tensor,
                   test_labels: torch.Tensor, cumulative: list[float], budgets: list[float] | None = None
                   ) -> list[dict]:
    """val_fitted_curve from any combiner's prefix probabilities (pkd.combiners.prefix_probs): per FLOP budget the
    early-exit threshold fitted on val, measured on test (ValFittedPoint items; budgets that even stopping
    every sample at k = 1 exceeds are left out).

    Args:
        val_probs, test_probs: (K, N, C) every prefix's class probabilities on the split.
        val_labels, test_labels: (N,) labels.
        cumulative: K cumulative FLOPs per sample of prefixes 1..K.
        budgets: mean FLOPs per sample to fit (default default_budgets(cumulative)).
    """
    def top_right(probs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        best = probs.max(dim=-1)  # (K, N)
        return best.values, best.indices == labels[None]

    cumulative = [float(c) for c in cumulative]
    return fitted_points(top_right(val_probs, val_labels), top_right(test_probs, test_labels), cumulative,
                         default_budgets(cumulative) if budgets is None else budgets)


def fitted_points(val: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
                  cumulative: list[float], budgets: list[float]) -> list[dict]:
    """ValFittedPoint items: per budget, fit_confidence on val's (top, right), then exit_figures on val and test."""
    out = []
    for budget in budgets:
        fits, confidence = fit_confidence(val[0], cumulative, budget)
        if not fits:
            continue
        val_acc, val_flops = exit_figures(*val, cumulative, confidence)
        acc, flops = exit_figures(*test, cumulative, confidence)
        out.append({ValFittedPoint.BUDGET: float(budget), ValFittedPoint.CONFIDENCE: confidence,
                    ValFittedPoint.VAL_ACC: val_acc, ValFittedPoint.VAL_MEAN_FLOPS: val_flops,
                    ValFittedPoint.ACC: acc, ValFittedPoint.MEAN_FLOPS: flops})
    return out


def monotonicity_shares(probs: torch.Tensor, labels: torch.Tensor) -> tuple[list[float], list[float]]:
    """Conditional monotonicity (Jazbec et al., NeurIPS 2023) of an anytime model, per step from prefix k to k+1:
    the share of samples whose probability of the true class drops, and the share whose answer flips from right
    to wrong. An anytime model should rarely get worse on a sample by computing more.

    Args:
        probs: (K, N, C) every prefix's class probabilities (pkd.combiners.prefix_probs).
        labels: (N,).
    Returns:
        (drops, flips): K - 1 shares each, item k-1 the step from prefix k to k + 1 (empty for one prefix).
    """
    n = max(probs.shape[1], 1)
    true_prob = probs.gather(2, labels[None, :, None].expand(probs.shape[0], -1, 1))[..., 0]  # (K, N)
    right = probs.argmax(dim=-1) == labels[None]  # (K, N)
    drops = (true_prob[1:] < true_prob[:-1]).sum(dim=1)  # (K-1,)
    flips = (right[:-1] & ~right[1:]).sum(dim=1)  # (K-1,)
    return [int(d) / n for d in drops], [int(f) / n for f in flips]


def anytime_figures(ensemble: Ensemble, student_logits: dict[str, list[torch.Tensor]],
                    labels: dict[str, torch.Tensor], summary: dict) -> dict:
    """summary.json's budget keys: "anytime_val_fitted" (val_fitted_curve) and "anytime_auc" (val and test AUC over
    budgets from AUC_LOW_SHARE of the teacher's FLOPs to all of them). `summary`: its "teacher" and "prefixes"."""
    teacher_flops = float(summary[Summary.TEACHER][TeacherFigures.FLOPS])
    rows = summary[Summary.PREFIXES]
    return {Summary.ANYTIME_VAL_FITTED: val_fitted_curve(ensemble, student_logits, labels),
            Summary.ANYTIME_AUC: {AnytimeAuc.VAL: auc_of_rows(rows, teacher_flops, PrefixRow.PREFIX_VAL_ACC),
                                  AnytimeAuc.TEST: auc_of_rows(rows, teacher_flops, PrefixRow.PREFIX_ACC),
                                  AnytimeAuc.LOW_FLOPS: AUC_LOW_SHARE * teacher_flops,
                                  AnytimeAuc.HIGH_FLOPS: teacher_flops}}


def combiner_figures(ensemble: Ensemble, student_logits: dict[str, list[torch.Tensor]],
                     labels: dict[str, torch.Tensor], combiners: tuple[str, ...] = COMBINERS) -> dict:
    """summary.json's "combiners": per pkd.combiners name, every prefix's test and val accuracy, its conditional
    monotonicity shares on test and its val-fitted budgeted curve (CombinerFigures), from the students' logits.
    `student_logits` / `labels`: {"val": K tensors (N, C), "test": ...} and the (N,) labels."""
    cumulative = [float(c) for c in ensemble.cumulative_flops()]
    out = {}
    for name in combiners:
        probs = {split: prefix_probs(student_logits[split], name, ensemble.prev_scales) for split in ("val", "test")}
        acc = {split: [float(x) for x in (probs[split].argmax(-1) == labels[split][None]).double().mean(dim=1)]
               for split in probs}  # K accuracies per split
        drops, flips = monotonicity_shares(probs["test"], labels["test"])
        out[name] = {CombinerFigures.PREFIX_ACC: acc["test"], CombinerFigures.PREFIX_VAL_ACC: acc["val"],
                     CombinerFigures.TRUE_PROB_DROP: drops, CombinerFigures.RIGHT_TO_WRONG: flips,
                     CombinerFigures.BUDGETED: budgeted_curve(probs["val"], labels["val"], probs["test"],
                                                              labels["test"], cumulative)}
    return out
