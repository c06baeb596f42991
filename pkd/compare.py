"""Two runs on the same test set, or a run's prefixes and its own teacher, compared sample by sample: McNemar's
exact test per prefix k (pkd.stats).

Accuracies alone cannot say whether 98.31% beats 98.27% on 10,000 digits; the samples one run gets right and the
other wrong can. This module recomputes every prefix's per-sample answers from a run's saved students (the run
directory holds accuracies, not answers) and hands them to pkd.stats.mcnemar.

Shapes: K prefixes, N test samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pkd.artifacts import load_ensemble, load_teacher
from pkd.combiners import native_combiner, prefix_probs
from pkd.config import saved_run_config
from pkd.data import DatasetSpec, Split, get_dataset_spec
from pkd.data.run_data import load_run_data
from pkd.evaluate import predict_logits
from pkd.runs import Run
from pkd.stats import McNemar, mcnemar


@dataclass(frozen=True)
class RunAnswers:
    """Every prefix's answers on a run's test split, with a chosen combiner (pkd.hard_inputs.PrefixAnswers is the
    app's: any inputs, the native combiner, with sureness): right (K, N) bool, classes (K, N) long, and the split."""

    right: torch.Tensor
    classes: torch.Tensor
    split: Split


@torch.no_grad()
def run_answers(run: Run, combiner: str | None = None, device: torch.device | str = "cpu",
                   split: Split | None = None) -> RunAnswers:
    """Each prefix's class and whether it is right, per test sample, from the run's saved students.

    combiner: a pkd.combiners name (default: the one the run answers with, native_combiner(mode)).
    split: the run's test split when the caller has loaded it already (run_test_split)."""
    data_spec, split = run_test_split(run) if split is None else (_data_spec(run), split)
    ensemble = load_ensemble(run, device=torch.device(device))
    logits = [predict_logits(student, data_spec, split.inputs, torch.device(device)) for student in ensemble.students]
    probs = prefix_probs(logits, combiner or native_combiner(ensemble.mode), ensemble.prev_scales)  # (K, N, C)
    classes = probs.argmax(dim=-1)
    return RunAnswers(right=classes == split.labels[None], classes=classes, split=split)


@torch.no_grad()
def teacher_classes(run: Run, split: Split, device: torch.device | str = "cpu") -> torch.Tensor:
    """(N,) the class the run's teacher gives each sample of `split` (the run's test split)."""
    logits = predict_logits(load_teacher(run, device=device), _data_spec(run), split.inputs, torch.device(device))
    return logits.argmax(dim=-1)


def teacher_right(run: Run, split: Split, device: torch.device | str = "cpu") -> torch.Tensor:
    """(N,) whether the run's teacher classifies each sample of `split` (the run's test split) correctly."""
    return teacher_classes(run, split, device) == split.labels


def run_test_split(run: Run) -> tuple[DatasetSpec, Split]:
    """The run's dataset and test split, as its config defines them."""
    data_spec, splits = load_run_data(saved_run_config(run.config()), ("test",))
    return data_spec, splits["test"]


def _data_spec(run: Run) -> DatasetSpec:
    return get_dataset_spec(run.setting("data", "dataset"))


def same_test_set(a: Split, b: Split) -> bool:
    """Whether two test splits hold the same samples with the same labels, in the same order."""
    return a.labels.shape == b.labels.shape and bool(torch.equal(a.labels, b.labels)) \
        and a.inputs.shape == b.inputs.shape and bool(torch.equal(a.inputs, b.inputs))


def compare_runs(a: Run, b: Run, combiner: str | None = None) -> list[tuple[int, McNemar]]:
    """McNemar's exact test of run A against run B at every prefix k both have: [(k, McNemar), ...] (a_only:
    the test samples A's prefix k gets right and B's wrong). ValueError when their test sets differ."""
    answers_a, answers_b = run_answers(a, combiner), run_answers(b, combiner)
    if not same_test_set(answers_a.split, answers_b.split):
        raise ValueError(f"{a.name} and {b.name} were tested on different samples (dataset or data.test_limit "
                         "differ): McNemar's test pairs the same samples; compare runs of the same test set")
    ks = min(answers_a.right.shape[0], answers_b.right.shape[0])
    return [(k, mcnemar(answers_a.right[k - 1].tolist(), answers_b.right[k - 1].tolist())) for k in range(1, ks + 1)]


def compare_to_teacher(run: Run, combiner: str | None = None) -> list[tuple[int, McNemar]]:
    """McNemar's exact test of every prefix k (A) against the run's own teacher (B) on the run's test set:
    [(k, McNemar), ...]; a_only: the samples prefix k gets right and the teacher wrong."""
    _, split = run_test_split(run)
    answers, teacher = run_answers(run, combiner, split=split), teacher_right(run, split).tolist()
    return [(k, mcnemar(answers.right[k - 1].tolist(), teacher)) for k in range(1, answers.right.shape[0] + 1)]

