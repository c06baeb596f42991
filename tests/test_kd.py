"""The KD loss's parts for one input (pkd/kd.py), as the soft-target panel shows them: the probabilities at T are
softmax(logits / T), the KL is the loss's soft term over T^2, alpha mixes the two terms, and all of it is what
kd_loss (the training loss) computes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pkd.kd import kd_loss, soft_targets, soften
from pkd.train.losses import kd_loss as training_kd_loss


def test_training_uses_this_very_loss():
    assert training_kd_loss is kd_loss


@pytest.mark.parametrize("temperature", [1.0, 4.0, 10.0])
def test_soft_targets_are_the_softened_probabilities_and_the_losss_own_parts(temperature):
    gen = torch.Generator().manual_seed(3)
    s, t = torch.randn(10, generator=gen) * 4, torch.randn(10, generator=gen) * 4
    alpha, label = 0.3, 7
    out = soft_targets(s, t, label, alpha, temperature)
    assert torch.tensor(out.teacher_soft) == pytest.approx(torch.softmax(t / temperature, -1), abs=1e-6)
    assert torch.tensor(out.teacher_plain) == pytest.approx(torch.softmax(t, -1), abs=1e-6)
    assert torch.tensor(out.student_soft) == pytest.approx(torch.softmax(s / temperature, -1), abs=1e-6)
    kl = F.kl_div(F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1), log_target=True,
                  reduction="sum")
    assert out.kl == pytest.approx(float(kl), rel=1e-5, abs=1e-7)
    assert out.soft == pytest.approx(temperature**2 * out.kl, rel=1e-6)
    assert out.hard == pytest.approx(-float(torch.log_softmax(s, -1)[label]), rel=1e-6)
    parts = kd_loss(s[None], t[None], torch.tensor([label]), alpha, temperature)
    assert out.loss == pytest.approx(float(parts["loss"]), rel=1e-6)
    assert out.loss == pytest.approx(alpha * out.hard + (1 - alpha) * out.soft, rel=1e-6)


def test_a_higher_temperature_spreads_the_teachers_answer():
    t = torch.tensor([8.0, 1, 0, 0, 0, 0, 0, 3, 0, 0])
    sharp, soft = soft_targets(t, t, 0, 0.5, 1.0), soft_targets(t, t, 0, 0.5, 5.0)
    assert max(soft.teacher_soft) < max(sharp.teacher_soft) and soft.teacher_soft[7] > sharp.teacher_soft[7]
    assert soft.kl == pytest.approx(0.0, abs=1e-7)  # a student that copies the teacher: nothing to learn from it


def test_bad_arguments_are_named():
    s = torch.zeros(10)
    with pytest.raises(ValueError, match="temperature"):
        soften(s[None], 0.0)
    with pytest.raises(ValueError, match="label 10"):
        soft_targets(s, s, 10, 0.5, 2.0)
    with pytest.raises(ValueError, match="alpha"):
        soft_targets(s, s, 1, 1.5, 2.0)
    with pytest.raises(ValueError, match=r"\(C,\)"):
        soft_targets(s[None], s[None], 1, 0.5, 2.0)
