"""An ensemble of K students evaluated as prefixes 1..k: the anytime-inference object.

`residual` ensembles (B-DISTIL) sum the students' logits, E_k = s_k * E_(k-1) + z_k, where s_k is 1 unless
student k learned to rescale the ensemble before it (`distill.learn_prev_scale`); `independent` ensembles
average probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass

import math

import torch
import torch.nn as nn

MODES = ("residual", "independent")


def accumulate(logits_sum: torch.Tensor | None, logits: torch.Tensor, prev_scale: float | torch.Tensor = 1.0
               ) -> torch.Tensor:
    """Residual ensemble logits after one more student: prev_scale * logits_sum + logits ((B, C) each)."""
    return logits if logits_sum is None else prev_scale * logits_sum + logits


def combine(logits_sum: torch.Tensor, probs_sum: torch.Tensor, k: int, mode: str) -> torch.Tensor:
    """Ensemble log-probabilities of a prefix of k students from running sums of logits / probabilities.

    Args:
        logits_sum, probs_sum: (B, C) sums over the first k students.
    Returns:
        (B, C) log-probabilities.
    """
    if mode == "residual":
        return torch.log_softmax(logits_sum, dim=-1)
    return torch.log(probs_sum.clamp_min(1e-12) / k)


@dataclass
class Prediction:
    """Result of Ensemble.predict for a batch: classes, probabilities, prefix used and FLOPs spent per sample."""

    classes: torch.Tensor  # (B,)
    probs: torch.Tensor  # (B, C)
    k_used: torch.Tensor  # (B,) number of students evaluated
    flops: torch.Tensor  # (B,) FLOPs spent (cumulative FLOPs of the students evaluated)


class Ensemble(nn.Module):
    """K students plus their per-sample FLOPs; students see normalised images (B, C, H, W)."""

    def __init__(self, students: list[nn.Module], mode: str = "residual", student_flops: list[int] | None = None,
                 prev_scales: list[float] | None = None):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown ensemble mode {mode!r}; choose one of: {', '.join(MODES)}")
        if not students:
            raise ValueError("an ensemble needs at least one student")
        self.students = nn.ModuleList(students)
        self.mode = mode
        self.student_flops = list(student_flops) if student_flops is not None else [0] * len(students)
        if len(self.student_flops) != len(students):
            raise ValueError("student_flops must give one figure per student")
        # s_k of E_k = s_k * E_(k-1) + z_k (residual mode; s_1 has nothing to scale)
        self.prev_scales = [float(v) for v in prev_scales] if prev_scales is not None else [1.0] * len(students)
        if len(self.prev_scales) != len(students) or not all(math.isfinite(v) for v in self.prev_scales):
            raise ValueError("prev_scales must give one finite number per student")
        if mode != "residual" and any(v != 1.0 for v in self.prev_scales):
            raise ValueError("prev_scales only apply to residual ensembles")

    @property
    def k(self) -> int:
        return len(self.students)

    def cumulative_flops(self) -> list[int]:
        out, total = [], 0
        for flops in self.student_flops:
            total += flops
            out.append(total)
        return out

    def _check_k(self, k: int | None) -> int:
        k = self.k if k is None else int(k)
        if not 1 <= k <= self.k:
            raise ValueError(f"k={k} is out of range; this ensemble has students 1..{self.k}")
        return k

    def forward_prefix(self, x: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """Log-probabilities of the first k students together. x: (B, C, H, W) -> (B, classes)."""
        return self.all_prefixes(x, self._check_k(k))[-1]

    forward = forward_prefix

    def all_prefixes(self, x: torch.Tensor, k: int | None = None) -> list[torch.Tensor]:
        """Log-probabilities of every prefix 1..k in one pass: list of k tensors (B, classes)."""
        k = self._check_k(k)
        out = []
        logits_sum = probs_sum = None
        for j in range(k):
            logits = self.students[j](x)  # (B, classes)
            probs = torch.softmax(logits, dim=-1)
            logits_sum = accumulate(logits_sum, logits, self.prev_scales[j])
            probs_sum = probs if probs_sum is None else probs_sum + probs
            out.append(combine(logits_sum, probs_sum, j + 1, self.mode))
        return out

    def prefix_for_budget(self, flop_budget: float) -> int:
        """Largest prefix whose cumulative FLOPs per sample fit within `flop_budget`."""
        fitting = [i + 1 for i, c in enumerate(self.cumulative_flops()) if c <= flop_budget]
        if not fitting:
            raise ValueError(f"FLOP budget {flop_budget:.0f} is below the first student's "
                             f"{self.student_flops[0]} FLOPs per sample; raise the budget")
        return fitting[-1]

    @torch.no_grad()
    def predict(
        self,
        x: torch.Tensor,
        k: int | None = None,
        flop_budget: float | None = None,
        confidence: float | None = None,
    ) -> Prediction:
        """Anytime prediction: a fixed prefix k, the largest prefix within a FLOP budget, or early exit.

        With `confidence`, each sample stops at the first prefix whose top probability reaches the threshold
        (students after that are not evaluated for it), up to k / the budget's prefix.

        Args:
            x: (B, C, H, W) normalised images.
        Returns:
            Prediction with per-sample classes, probs (B, classes), k_used and FLOPs spent.
        """
        if k is not None and flop_budget is not None:
            raise ValueError("give either k or flop_budget, not both")
        limit = self.prefix_for_budget(flop_budget) if flop_budget is not None else self._check_k(k)
        if confidence is not None and not 0.0 < confidence <= 1.0:
            raise ValueError(f"confidence={confidence} must lie in (0, 1]")
        batch = x.shape[0]
        cumulative = self.cumulative_flops()
        logits_sum = probs_sum = None
        final = None
        k_used = torch.zeros(batch, dtype=torch.long)
        active = torch.arange(batch)
        for j in range(limit):
            logits = self.students[j](x[active])  # (A, classes)
            probs = torch.softmax(logits, dim=-1)
            if logits_sum is None:
                logits_sum, probs_sum = logits.clone(), probs.clone()
                final = torch.zeros(batch, logits.shape[-1], dtype=logits.dtype)
            else:
                logits_sum[active] = accumulate(logits_sum[active], logits, self.prev_scales[j])
                probs_sum[active] += probs
            log_probs = combine(logits_sum[active], probs_sum[active], j + 1, self.mode)
            final[active] = log_probs.exp().to(final.dtype)
            k_used[active] = j + 1
            if confidence is not None:
                done = final[active].max(dim=-1).values >= confidence
                active = active[~done]
                if active.numel() == 0:
                    break
        flops = torch.tensor([cumulative[int(n) - 1] for n in k_used], dtype=torch.long)
        return Prediction(classes=final.argmax(dim=-1), probs=final, k_used=k_used, flops=flops)
