"""Training losses: knowledge distillation (Hinton et al.; defined once in pkd/kd.py, which the app reads too) and
B-DISTIL's boosting weights.

Shapes: N samples, B batch, C classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pkd.kd import group_log_probs, kd_loss  # noqa: F401 - the training side of the KD loss


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
