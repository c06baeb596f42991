"""The knowledge-distillation loss, defined once: training minimises it (pkd.train) and the app shows its parts for
one input (the soft-target panel), so what a class sees is the very formula the students were trained with.

    L = alpha * CE(logits, y) + (1 - alpha) * T^2 * KL(softmax(t / T) || softmax(logits / T))

Hinton, Vinyals, Dean 2015, "Distilling the Knowledge in a Neural Network" (arXiv 1503.02531); the progressive
version this project follows (arXiv 2503.01727). The teacher's probabilities at temperature T are the *soft
targets*: T = 1 gives its ordinary probabilities, a larger T spreads them over the wrong classes it finds
similar. The T^2 keeps the soft term's gradients the same size whatever T is.

Shapes: B batch, C classes, G class groups.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

__all__ = ["SoftTargets", "group_log_probs", "kd_loss", "soft_targets", "soften"]


def soften(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """log softmax(logits / T): the log-probabilities at temperature T.

    Args:
        logits: (B, C). temperature: T > 0.
    Returns:
        (B, C) log-probabilities.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    return F.log_softmax(logits / temperature, dim=-1)


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

    Per-sample `weights` (B,) re-weight both terms (mean 1 keeps the scale). With `groups` the KL compares the two
    distributions' sums over each group of classes, so the teacher says nothing about the classes within a group.

    Args:
        logits, teacher_logits: (B, C). labels: (B,). groups: (C,) a group index per class, or None.
    Returns:
        dict with loss, hard, soft (scalars).
    """
    hard = F.cross_entropy(logits, labels, reduction="none")  # (B,)
    log_p = soften(logits, temperature)  # (B, C)
    log_q = soften(teacher_logits, temperature)  # (B, C)
    if groups is not None:
        log_p, log_q = group_log_probs(log_p, groups), group_log_probs(log_q, groups)  # (B, G)
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


@dataclasses.dataclass(frozen=True)
class SoftTargets:
    """The distillation loss of one input, part by part (what the soft-target panel shows).

    Attributes:
        temperature, alpha: T and alpha of the loss.
        label: the true class y the hard part uses.
        teacher_plain, teacher_soft: (C,) the teacher's probabilities at T = 1 and at T (the soft targets).
        student_plain, student_soft: (C,) the student's probabilities at T = 1 and at T.
        kl: KL(teacher at T || student at T), in nats: 0 when the student copies the soft targets exactly.
        hard: CE(student, y) = -log(student's probability of y at T = 1).
        soft: T^2 * kl, the teacher's term of the loss.
        loss: alpha * hard + (1 - alpha) * soft.
    """

    temperature: float
    alpha: float
    label: int
    teacher_plain: list[float]
    teacher_soft: list[float]
    student_plain: list[float]
    student_soft: list[float]
    kl: float
    hard: float
    soft: float
    loss: float


@torch.no_grad()
def soft_targets(
    logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    label: int,
    alpha: float,
    temperature: float,
) -> SoftTargets:
    """The distillation loss of one input and the probabilities it compares, computed by `kd_loss` itself.

    Args:
        logits: (C,) the student's logits (a residual ensemble's running sum E_k: what student k is trained on).
        teacher_logits: (C,) the teacher's logits on the same input.
        label: the true class y (0..C-1).
        alpha: weight of the label's term, in [0, 1]. temperature: T > 0.
    Returns:
        SoftTargets.
    """
    if logits.dim() != 1 or logits.shape != teacher_logits.shape:
        raise ValueError(f"soft_targets takes one input's logits (C,) for student and teacher, got "
                         f"{tuple(logits.shape)} and {tuple(teacher_logits.shape)}")
    if not 0 <= int(label) < logits.shape[0]:
        raise ValueError(f"label {label} is not a class 0..{logits.shape[0] - 1}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}")
    s, t = logits.float()[None], teacher_logits.float()[None]  # (1, C)
    parts = kd_loss(s, t, torch.tensor([int(label)]), alpha, temperature)
    probs = [soften(x, temp)[0].exp().tolist() for x in (t, s) for temp in (1.0, temperature)]  # 4 x (C,)
    return SoftTargets(float(temperature), float(alpha), int(label), *probs,
                       kl=float(parts["soft"]) / temperature**2, hard=float(parts["hard"]),
                       soft=float(parts["soft"]), loss=float(parts["loss"]))
