"""Per-sample answers of a run on one split: what every prefix (students 1..k) and the teacher predict for each
sample. Paired comparisons need them (McNemar's test in pkd.stats, the Compare page's per-sample diff), where the
run directory keeps only accuracies.

Shapes: N samples of the split, K saved students.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pkd.artifacts import load_ensemble, load_teacher
from pkd.config import config_from_dict
from pkd.data.run_data import load_run_data
from pkd.evaluate import predict_logits
from pkd.models.ensemble import PrefixSums
from pkd.runs import Run

SPLITS = ("val", "test")  # the splits a run reports (the training split is never compared on)


@dataclass(frozen=True)
class SamplePredictions:
    """One run's answers on one split, sample by sample, in the split's order.

    labels: (N,) true classes. prefixes: (K, N) the class students 1..k predict together, row k-1 for prefix k.
    teacher: (N,) the teacher's predicted class, or None when it was not asked for (or the run has no teacher).
    """

    split: str
    labels: torch.Tensor
    prefixes: torch.Tensor
    teacher: torch.Tensor | None

    def right(self, k: int | None = None) -> torch.Tensor:
        """(N,) bool: whether prefix k (None: the teacher) classifies each sample correctly."""
        if k is None:
            if self.teacher is None:
                raise ValueError("these predictions have no teacher's answers; ask run_predictions(with_teacher=True)")
            return self.teacher == self.labels
        if not 1 <= k <= len(self.prefixes):
            raise ValueError(f"prefix k = {k} is not among students 1..{len(self.prefixes)} of these predictions")
        return self.prefixes[k - 1] == self.labels


@torch.no_grad()
def run_predictions(run: Run, split: str = "test", with_teacher: bool = False,
                    device: torch.device | str = "cpu") -> SamplePredictions:
    """Every saved prefix's (and optionally the teacher's) predicted class for each sample of `split`, on the
    samples the run reports its accuracies on (its config's limits), combined exactly as training evaluates them
    (pkd.models.ensemble.PrefixSums)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    cfg = config_from_dict(run.config())
    device = torch.device(device)
    data_spec, splits = load_run_data(cfg, (split,))
    inputs, labels = splits[split].inputs, splits[split].labels
    ensemble = load_ensemble(run, device=device)
    sums, prefixes = PrefixSums(ensemble.mode), []
    for student, scale in zip(ensemble.students, ensemble.prev_scales):
        sums.add(predict_logits(student, data_spec, inputs, device), scale)  # (N, C)
        prefixes.append(sums.log_probs().argmax(dim=-1))  # (N,)
    teacher = None
    if with_teacher and run.has_teacher():
        teacher = predict_logits(load_teacher(run, device=device), data_spec, inputs, device).argmax(dim=-1)  # (N,)
    return SamplePredictions(split=split, labels=labels.clone(), prefixes=torch.stack(prefixes), teacher=teacher)
