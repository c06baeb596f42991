"""Combiners: how the answers of students 1..k become one prefix's class probabilities, chosen at evaluation time.

Training fixes the students; how their outputs are combined can still be chosen afterwards (`pkd eval --combiner`):

- "sum": softmax of the residual logit sum E_k = s_k * E_(k-1) + z_k (B-DISTIL; what a residual run answers
  with). For an independent run the s_k are 1: the plain logit sum.
- "mean-prob": the mean of the students' probabilities (what an independent run answers with).
- "product": a product of experts, p_k(c) ∝ prod_{m <= k} ReLU(z_m,c) (Jazbec et al., "Towards anytime
  classification in early-exit architectures by enforcing conditional monotonicity", NeurIPS 2023): a class
  keeps probability only while every student gives it a positive logit, so adding a student can only narrow
  the support. Where no class is positive for every student the prefix answers uniformly (no evidence left).

Shapes: K students (prefixes), N samples, C classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

COMBINERS = ("sum", "mean-prob", "product")


def native_combiner(mode: str) -> str:
    """The combiner a run of ensemble `mode` ("residual" or "independent") answers with."""
    return "sum" if mode == "residual" else "mean-prob"


def check_combiner(name: str) -> str:
    if name not in COMBINERS:
        raise ValueError(f"unknown combiner {name!r}; choose one of: {', '.join(COMBINERS)}")
    return name


@torch.no_grad()
def prefix_probs(student_logits: Sequence[torch.Tensor], combiner: str,
                 prev_scales: Sequence[float] | None = None) -> torch.Tensor:
    """Every prefix's class probabilities under `combiner`.

    Args:
        student_logits: K tensors (N, C), student k's logits on the split.
        combiner: one of COMBINERS.
        prev_scales: s_k of the residual sum (default all 1); only "sum" uses them.
    Returns:
        (K, N, C) float64 probabilities, row k-1 the prefix of students 1..k; each (N, C) row sums to 1.
    """
    check_combiner(combiner)
    if not student_logits:
        raise ValueError("no students: a prefix needs at least one student's logits")
    scales = list(prev_scales) if prev_scales is not None else [1.0] * len(student_logits)
    out, running = [], None
    for k, (logits, scale) in enumerate(zip(student_logits, scales), start=1):
        z = logits.double()
        if combiner == "sum":
            running = z if running is None else scale * running + z
            out.append(torch.softmax(running, dim=-1))
        elif combiner == "mean-prob":
            running = torch.softmax(z, dim=-1) if running is None else running + torch.softmax(z, dim=-1)
            out.append(running / k)
        else:
            log_relu = torch.log(torch.relu(z))  # -inf where a logit is not positive
            running = log_relu if running is None else running + log_relu
            out.append(_normalise_log(running))
    return torch.stack(out)


def _normalise_log(log_scores: torch.Tensor) -> torch.Tensor:
    """softmax over classes of (N, C) log scores that may be -inf; a row with every class -inf -> uniform."""
    dead = torch.isneginf(log_scores).all(dim=-1, keepdim=True)  # (N, 1)
    safe = torch.where(dead, torch.zeros_like(log_scores), log_scores)
    return torch.softmax(safe, dim=-1)
