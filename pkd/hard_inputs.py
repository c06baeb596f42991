"""Which test inputs a run's ensemble finds hard, for the Playground's "show me a hard digit" and its galleries:
every prefix's answer on a set of inputs, where the prefixes disagree, which inputs each prefix gets wrong, and
which stop after student 1 (sure enough for early exit) and are wrong all the same.

Shapes: K students (prefixes 1..K), N inputs, C classes.
"""

from __future__ import annotations

import dataclasses

import torch

from pkd.data.spec import DatasetSpec
from pkd.models.ensemble import Ensemble

__all__ = ["PrefixAnswers", "prefix_answers"]


@dataclasses.dataclass
class PrefixAnswers:
    """Every prefix's answer on N inputs.

    Attributes:
        classes: (K, N) the class students 1..k together answer. sureness: (K, N) their probability of it.
        labels: (N,) the true classes.
    """

    classes: torch.Tensor
    sureness: torch.Tensor
    labels: torch.Tensor

    def disagreeing(self) -> torch.Tensor:
        """(M,) indices of the inputs on which some prefixes answer differently from others: the hard ones."""
        return torch.nonzero((self.classes != self.classes[:1]).any(dim=0)).flatten()

    def wrong(self, k: int) -> torch.Tensor:
        """(M,) indices of the inputs students 1..k together get wrong (k = 1..K)."""
        return torch.nonzero(self.classes[k - 1] != self.labels).flatten()

    def sure_and_wrong_after_first(self, confidence: float) -> torch.Tensor:
        """(M,) indices of the inputs early exit stops after student 1 (it is at least `confidence` sure) although
        its answer is wrong: sure is not right."""
        stops = self.sureness[0] >= confidence  # (N,)
        return torch.nonzero(stops & (self.classes[0] != self.labels)).flatten()


@torch.no_grad()
def prefix_answers(
    ensemble: Ensemble,
    spec: DatasetSpec,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 500,
) -> PrefixAnswers:
    """Every prefix's answer and sureness on `inputs`, in batches.

    Args:
        inputs: (N, Ch, H, W) pixels in [0, 1] (a test split's). labels: (N,).
    """
    classes, sureness = [], []
    for start in range(0, inputs.shape[0], batch_size):
        x = spec.normalize(inputs[start:start + batch_size].float())  # (B, Ch, H, W)
        probs = torch.stack(ensemble.all_prefixes(x)).exp()  # (K, B, C)
        top = probs.max(dim=-1)
        classes.append(top.indices)
        sureness.append(top.values)
    return PrefixAnswers(torch.cat(classes, dim=1), torch.cat(sureness, dim=1), labels[:inputs.shape[0]].clone())
