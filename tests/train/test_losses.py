"""The training losses: the KD formula and B-DISTIL's boosting weights."""

import math

import torch
import torch.nn.functional as F

from pkd.train.losses import boost_weights, group_log_probs, kd_loss


def test_kd_loss_formula():
    torch.manual_seed(0)
    s, t = torch.randn(6, 10), torch.randn(6, 10)
    y = torch.randint(0, 10, (6,))
    T, alpha = 3.0, 0.25
    out = kd_loss(s, t, y, alpha, T)
    ce = F.cross_entropy(s, y)
    kl = F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), log_target=True, reduction="batchmean") * T * T
    assert torch.allclose(out["hard"], ce) and torch.allclose(out["soft"], kl, atol=1e-6)
    assert torch.allclose(out["loss"], alpha * ce + (1 - alpha) * kl)
    assert kd_loss(t, t, y, 0.0, T)["loss"].abs() < 1e-6  # matching the teacher costs nothing
    w = torch.tensor([2.0, 0, 0, 0, 0, 0])
    weighted = kd_loss(s, t, y, 1.0, T, weights=w)["loss"]
    assert torch.allclose(weighted, 2 * F.cross_entropy(s[:1], y[:1]) / 6)


def test_boost_weights_favour_mistakes():
    log_probs = torch.log(torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.5, 0.5]]))
    w = boost_weights(log_probs, torch.tensor([0, 0, 0]), beta=1.0)
    assert math.isclose(float(w.mean()), 1.0, rel_tol=1e-6)
    assert w[1] > w[2] > w[0]
    assert torch.allclose(boost_weights(log_probs, torch.tensor([0, 0, 0]), beta=0.0), torch.ones(3))


def test_group_soft_target_matches_only_the_sums_over_each_group():
    torch.manual_seed(1)
    s, t = torch.randn(5, 6) * 3, torch.randn(5, 6) * 3
    y = torch.randint(0, 6, (5,))
    groups = torch.tensor([0, 0, 0, 1, 1, 2])  # three groups of classes
    T = 2.0
    log_g = group_log_probs(F.log_softmax(s / T, -1), groups)  # (5, 3)
    sums = torch.stack([F.softmax(s / T, -1)[:, groups == g].sum(-1) for g in range(3)], -1)
    assert torch.allclose(log_g.exp(), sums, atol=1e-6)
    out = kd_loss(s, t, y, 0.0, T, groups=groups)
    kl = F.kl_div(log_g, group_log_probs(F.log_softmax(t / T, -1), groups), log_target=True,
                  reduction="batchmean") * T * T
    assert torch.allclose(out["soft"], kl, atol=1e-6) and out["soft"] < kd_loss(s, t, y, 0.0, T)["soft"]
    # moving mass between classes of one group leaves the group KL alone; the class KL sees it
    swapped = t[:, [1, 0, 2, 4, 3, 5]]
    assert kd_loss(swapped, t, y, 0.0, T, groups=groups)["soft"].abs() < 1e-5
    assert kd_loss(swapped, t, y, 0.0, T)["soft"] > 0.1
    assert torch.isfinite(group_log_probs(torch.full((1, 6), -1e4), groups)).all()
