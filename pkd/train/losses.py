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
) -> dict[str, torch.Tensor]:
    """L = alpha * CE(logits, y) + (1 - alpha) * T^2 * KL(softmax(t / T) || softmax(logits / T)).

    Hinton et al. 2015 (arXiv 1503.02531); the paper's loss (arXiv 2503.01727). Per-sample `weights` (B,)
    re-weight both terms (mean 1 keeps the scale).

    Args:
        logits, teacher_logits: (B, C). labels: (B,).
    Returns:
        dict with loss, hard, soft (scalars).
    """
    hard = F.cross_entropy(logits, labels, reduction="none")  # (B,)
    log_p = F.log_softmax(logits / temperature, dim=-1)
    log_q = F.log_softmax(teacher_logits / temperature, dim=-1)
    soft = (log_q.exp() * (log_q - log_p)).sum(dim=-1) * temperature**2  # (B,)
    if weights is not None:
        hard, soft = hard * weights, soft * weights
    hard, soft = hard.mean(), soft.mean()
    return {"loss": alpha * hard + (1 - alpha) * soft, "hard": hard, "soft": soft}


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
