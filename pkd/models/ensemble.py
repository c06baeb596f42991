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


class PrefixSums:
    """Running sums over students 1..k of their logits (residual: E_k = s_k * E_(k-1) + z_k) and of their
    probabilities (independent): the one place that turns students' outputs into a prefix's answer.

    Training, evaluation and anytime prediction all feed it; `rows` updates only some samples (early exit).
    """

    def __init__(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown ensemble mode {mode!r}; choose one of: {', '.join(MODES)}")
        self.mode = mode
        self.k = 0
        self.logits: torch.Tensor | None = None  # (N, C)
        self.probs: torch.Tensor | None = None  # (N, C)

    def add(self, logits: torch.Tensor, prev_scale: float = 1.0, rows: torch.Tensor | None = None) -> None:
        """One more student's logits (N, C), or (A, C) for the samples `rows` (A,) still being evaluated."""
        probs = torch.softmax(logits, dim=-1)
        if self.logits is None:
            self.logits, self.probs = logits.clone(), probs.clone()
        elif rows is None:
            self.logits = accumulate(self.logits, logits, prev_scale)
            self.probs = self.probs + probs
        else:
            self.logits[rows] = accumulate(self.logits[rows], logits, prev_scale)
            self.probs[rows] += probs
        self.k += 1

    def log_probs(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Log-probabilities (N, C) of the prefix so far (or of `rows` only)."""
        if self.logits is None:
            raise ValueError("no student has been added yet")
        logits, probs = (self.logits, self.probs) if rows is None else (self.logits[rows], self.probs[rows])
        return combine(logits, probs, self.k, self.mode)

    def log_probs_with(self, logits: torch.Tensor, prev_scale: float = 1.0) -> torch.Tensor:
        """Log-probabilities (N, C) the prefix would have with one more student's logits, leaving the sums as
        they are (a student being trained is judged with the ensemble before it)."""
        if self.logits is None:
            return combine(logits, torch.softmax(logits, dim=-1), 1, self.mode)
        return combine(accumulate(self.logits, logits, prev_scale), self.probs + torch.softmax(logits, dim=-1),
                       self.k + 1, self.mode)


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
        sums, out = PrefixSums(self.mode), []
        for j in range(k):
            sums.add(self.students[j](x), self.prev_scales[j])  # (B, classes)
            out.append(sums.log_probs())
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
        sums = PrefixSums(self.mode)
        final = None
        k_used = torch.zeros(batch, dtype=torch.long)
        active = torch.arange(batch)
        for j in range(limit):
            logits = self.students[j](x[active])  # (A, classes)
            sums.add(logits, self.prev_scales[j], rows=active)
            if final is None:
                final = torch.zeros(batch, logits.shape[-1], dtype=logits.dtype)
            final[active] = sums.log_probs(active).exp().to(final.dtype)
            k_used[active] = j + 1
            if confidence is not None:
                done = final[active].max(dim=-1).values >= confidence
                active = active[~done]
                if active.numel() == 0:
                    break
        flops = torch.tensor([cumulative[int(n) - 1] for n in k_used], dtype=torch.long)
        return Prediction(classes=final.argmax(dim=-1), probs=final, k_used=k_used, flops=flops)
