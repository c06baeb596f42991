"""The Playground's prediction path (app/inference.py): one digit through an ensemble, and a canvas -> an image."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from app import inference
from pkd.data import get_dataset_spec
from pkd.models.ensemble import Ensemble


class Pixels(nn.Module):
    """A toy student: a linear map of the flattened image (deterministic weights)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.fc = nn.Linear(28 * 28, 10)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(10, 28 * 28, generator=gen) * 0.05)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))  # (B, 10)


def test_predict_digit_matches_the_ensemble():
    spec = get_dataset_spec("mnist")
    ensemble = Ensemble([Pixels(0), Pixels(1), Pixels(2)], mode="residual", student_flops=[10, 20, 30]).eval()
    image = torch.zeros(1, 28, 28)
    image[0, 5:23, 13:15] = 1.0
    report = inference.predict_digit(ensemble, spec, image, teacher=Pixels(9), teacher_flops=600)
    with torch.no_grad():
        x = spec.normalize(image[None])
        expected = [lp.exp()[0] for lp in ensemble.all_prefixes(x)]
        solo = [torch.softmax(s(x), -1)[0] for s in ensemble.students]
    assert len(report.prefix_probs) == 3
    for got, want in zip(report.prefix_probs, expected):
        assert torch.tensor(got) == pytest.approx(want, abs=1e-6)
    for got, want in zip(report.student_probs, solo):
        assert torch.tensor(got) == pytest.approx(want, abs=1e-6)
    assert report.cumulative_flops == [10, 30, 60]
    assert report.share_of_teacher == pytest.approx([10 / 600, 30 / 600, 60 / 600])
    assert sum(report.teacher_probs) == pytest.approx(1.0)
    stop = inference.anytime_digit(ensemble, spec, image, flop_budget=35)
    assert stop["k_used"] == 2 and stop["flops"] == 30
    stop = inference.anytime_digit(ensemble, spec, image, confidence=1e-6)
    assert stop["k_used"] == 1


def test_prepare_canvas_blank_and_drawn():
    import numpy as np

    assert inference.prepare_canvas(None) is None
    blank = np.zeros((280, 280, 4), dtype=np.uint8)
    blank[..., 3] = 255
    assert inference.prepare_canvas(blank) is None
    blank[40:240, 130:150, :3] = 255
    image = inference.prepare_canvas(blank)
    assert image.shape == (1, 28, 28) and float(image.max()) > 0.5
    dot = np.zeros((280, 280, 4), dtype=np.uint8)
    dot[..., 3] = 255
    dot[138:144, 138:144, :3] = 255  # one brush dab: 6 px of 280
    with pytest.raises(ValueError, match="Too little ink"):
        inference.prepare_canvas(dot)
