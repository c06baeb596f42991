"""Training losses: knowledge distillation (Hinton et al.) and B-DISTIL's boosting weights.

Shapes: N samples, B batch, C classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(
    logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    temperature: float,
    weights: torch.Tensor | None = None,
    groups: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """L = alpha * CE(logits, y) + (1 - alpha) * T^2 * KL(softmax(t / T) || softmax(logits / T)).

    Hinton et al. 2015 (arXiv 1503.02531); the paper's loss (arXiv 2503.01727). Per-sample `weights` (B,)
    re-weight both terms (mean 1 keeps the scale). With `groups` the KL compares the two distributions' sums over
    each group of classes, so the teacher says nothing about the classes within a group.

    Args:
        logits, teacher_logits: (B, C). labels: (B,). groups: (C,) a group index per class, or None.
    Returns:
        dict with loss, hard, soft (scalars).
    """
    hard = F.cross_entropy(logits, labels, reduction="none")  # (B,)
    log_p = F.log_softmax(logits / temperature, dim=-1)
    log_q = F.log_softmax(teacher_logits / temperature, dim=-1)
    if groups is not None:
        log_p, log_q = group_log_probs(log_p, groups), group_log_probs(log_q, groups)
    soft = (log_q.exp() * (log_q - log_p)).sum(dim=-1) * temperature**2  # (B,)
    if weights is not None:
        hard, soft = hard * weights, soft * weights
    hard, soft = hard.mean(), soft.mean()
    return {"loss": alpha * hard + (1 - alpha) * soft, "hard": hard, "soft": soft}


def group_log_probs(log_probs: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """log of the probabilities summed over each group of classes, exactly (a logsumexp per group).

    Args:
        log_probs: (B, C) log-probabilities. groups: (C,) int64 group index per class, 0..G-1.
    Returns:
        (B, G) log-probabilities of the groups.
    """
    member = F.one_hot(groups.to(log_probs.device), int(groups.max()) + 1).bool()  # (C, G)
    masked = log_probs.unsqueeze(-1).masked_fill(~member, float("-inf"))  # (B, C, G)
    return masked.logsumexp(dim=1)


def boost_weights(prev_log_probs: torch.Tensor, labels: torch.Tensor, beta: float) -> torch.Tensor:
    """Sample weights w_i ∝ exp(beta * CE_i) of the ensemble so far, normalised to mean 1 and clipped at 10.

    Args:
        prev_log_probs: (N, C) log-probabilities of the students before this one. labels: (N,).
    Returns:
        (N,) weights.
    """
    ce = F.nll_loss(prev_log_probs, labels, reduction="none")  # (N,)
    w = torch.exp(beta * (ce - ce.max()))
    w = w / w.mean()
    w = w.clamp(max=10.0)
    return w / w.mean()
