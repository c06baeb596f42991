"""The anytime AUC: accuracy averaged over FLOP budgets on a log-FLOPs axis, from recorded prefix figures. Pure
Python (no torch): the app's Compare and Sweeps pages compute it from the runs' prefix tables without loading a model;
pkd.anytime (the early-exit curves from the students' logits) re-exports it.
"""

from __future__ import annotations

import math

from pkd.runs.schema import PrefixRow

AUC_LOW_SHARE = 0.01  # the anytime AUC averages accuracy over budgets from 1% of the teacher's FLOPs to 100%


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


def auc_of_rows(rows: list[dict], teacher_flops: float, key: str = PrefixRow.PREFIX_ACC) -> float | None:
    """anytime_auc of prefix rows over budgets AUC_LOW_SHARE..1 of the teacher's FLOPs (None without figures)."""
    points = [(r[PrefixRow.CUMULATIVE_FLOPS], r[key]) for r in rows
              if r.get(key) is not None and r.get(PrefixRow.CUMULATIVE_FLOPS)]
    if not points or not teacher_flops or teacher_flops <= 0:
        return None
    return anytime_auc(points, AUC_LOW_SHARE * teacher_flops, teacher_flops)
