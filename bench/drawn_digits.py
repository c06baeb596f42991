"""Accuracy of every prefix (and the teacher) on MNIST test vs the drawn-digit robustness set (pkd/drawn.py).

    python bench/drawn_digits.py pretrained/mnist [--per-digit 100] [--seed 0]
"""

from __future__ import annotations

import argparse

import torch

from pkd.artifacts import load_ensemble, load_teacher
from pkd.data import get_dataset_spec, load_split
from pkd.drawn import drawn_digits
from pkd.evaluate import predict_logits
from pkd.models.ensemble import PrefixSums
from pkd.runs import resolve_run


def prefix_accuracies(run, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, list[float]]:
    """Teacher accuracy and ensemble-prefix accuracies 1..K on (N, 1, 28, 28) images in [0, 1]."""
    spec, device = get_dataset_spec("mnist"), torch.device("cpu")
    teacher = predict_logits(load_teacher(run), spec, images, device)
    ensemble = load_ensemble(run)
    sums, accs = PrefixSums(ensemble.mode), []
    for student, scale in zip(ensemble.students, ensemble.prev_scales):
        sums.add(predict_logits(student, spec, images, device), scale)
        accs.append(float((sums.log_probs().argmax(1) == labels).float().mean()))
    return float((teacher.argmax(1) == labels).float().mean()), accs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("run")
    p.add_argument("--per-digit", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    run = resolve_run(a.run)
    test = load_split("mnist", "test")
    drawn = drawn_digits(a.per_digit, a.seed)
    for name, (x, y) in {"MNIST test": (test.inputs, test.labels), "drawn": drawn}.items():
        t, accs = prefix_accuracies(run, x, y)
        print(f"{name:>11}: teacher {t:.2%} | " + " ".join(f"{k + 1}:{v:.2%}" for k, v in enumerate(accs)))


if __name__ == "__main__":
    main()
