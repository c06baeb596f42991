"""pkd.stats, pkd.combiners and the anytime metrics of pkd.anytime against cases computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from pkd.anytime import budgeted_curve, monotonicity_shares
from pkd.combiners import COMBINERS, native_combiner, prefix_probs
from pkd.runs.schema import ValFittedPoint
from pkd.stats import (AHEAD, BEHIND, WITHIN_NOISE, describe, format_spread, mcnemar, paired_difference, spread)


def test_mcnemar_on_a_known_table():
    """1 sample only A gets right, 6 only B, 3 both: exact two-sided p = 2 * (C(7,0) + C(7,1)) / 2^7 = 0.125."""
    a = [1] + [0] * 6 + [1] * 3
    b = [0] + [1] * 6 + [1] * 3
    test = mcnemar(a, b)
    assert (test.n, test.a_only, test.b_only) == (10, 1, 6)
    assert test.p_value == pytest.approx(0.125)
    assert test.diff == pytest.approx(-0.5)
    assert test.verdict == WITHIN_NOISE


def test_mcnemar_separates_ten_to_none_and_never_on_agreement():
    """10 discordant samples all A's: p = 2 / 2^10; identical answers: p = 1, within noise."""
    a, b = [True] * 10 + [True] * 5, [False] * 10 + [True] * 5
    assert mcnemar(a, b).p_value == pytest.approx(2 / 1024)
    assert mcnemar(a, b).verdict == AHEAD
    assert mcnemar(b, a).verdict == BEHIND
    same = mcnemar(a, a)
    assert (same.p_value, same.verdict, same.diff) == (1.0, WITHIN_NOISE, 0.0)
    with pytest.raises(ValueError, match="same test set"):
        mcnemar([True], [True, False])


def test_the_exact_mcnemar_p_value_is_scipys_binomial_test_on_every_small_table():
    """pkd.stats computes the p-value from scipy.special's binomial CDF (no scipy.stats import in a training); it
    equals scipy.stats.binomtest(a_only, a_only + b_only, 0.5) on every table of up to 60 discordant samples and on
    large ones (a shipped comparison has up to ~100 discordant test images)."""
    from scipy.stats import binomtest

    from pkd.stats import exact_mcnemar_p

    tables = [(a, n - a) for n in range(1, 61) for a in range(n + 1)]
    tables += [(a, n - a) for n in (99, 100, 250, 1001) for a in (0, 1, n // 3, n // 2 - 2, n // 2, n // 2 + 1, n)]
    for a_only, b_only in tables:
        expected = binomtest(a_only, a_only + b_only, 0.5).pvalue
        assert exact_mcnemar_p(a_only, b_only) == pytest.approx(expected, rel=1e-9, abs=1e-300), (a_only, b_only)
    assert exact_mcnemar_p(0, 0) == 1.0


def test_paired_difference_of_three_seeds():
    """Differences 0.01, 0.02, -0.02: mean 0.00333, SD 0.020817, SE 0.012019, t = 0.2774 on 2 df, p = 0.807."""
    d = paired_difference([0.90, 0.92, 0.91], [0.89, 0.90, 0.93])
    assert d.mean == pytest.approx(0.01 / 3)
    assert d.se == pytest.approx(math.sqrt(((0.02 / 3) ** 2 + (0.05 / 3) ** 2 + (0.07 / 3) ** 2) / 2 / 3))
    assert (d.n, d.wins, d.losses, d.ties) == (3, 2, 1, 0)
    assert d.p_value == pytest.approx(0.8075, abs=1e-3)
    assert d.verdict == WITHIN_NOISE


def test_paired_difference_separates_a_steady_gap_and_refuses_one_seed():
    a = [0.95, 0.96, 0.97, 0.955]
    b = [x - g for x, g in zip(a, [0.05, 0.051, 0.049, 0.05])]
    assert paired_difference(a, b).verdict == AHEAD
    assert paired_difference(b, a).verdict == BEHIND
    one = paired_difference([0.99], [0.5])
    assert (one.verdict, one.se, one.wins) == (WITHIN_NOISE, 0.0, 1)  # one pair cannot tell luck from skill
    with pytest.raises(ValueError, match="same seeds"):
        paired_difference([0.9, 0.8], [0.9])


def test_spread_and_words():
    s = spread([0.9, 1.0])
    assert (s.n, s.mean, s.low, s.high) == (2, pytest.approx(0.95), 0.9, 1.0)
    assert s.se == pytest.approx(0.05)
    assert format_spread(s) == "95.00 ± 5.00"
    assert spread([0.5]).se == 0.0
    assert describe(0.012, AHEAD) == "ahead by 1.20 points"
    assert describe(-0.004, BEHIND, se=0.001) == "behind by 0.40 ± 0.10 points"
    assert describe(0.0002, WITHIN_NOISE) == "within noise (+0.02 points)"


def test_monotonicity_shares_on_three_samples():
    """Sample 0 (label 0): 0.9 -> 0.4, right -> wrong; sample 1 (label 1): 0.6 -> 0.8; sample 2 (label 0):
    0.3 -> 0.2, wrong -> wrong. Drops 2 of 3, flips right -> wrong 1 of 3."""
    probs = torch.tensor([[[0.9, 0.1], [0.4, 0.6], [0.3, 0.7]],
                          [[0.4, 0.6], [0.2, 0.8], [0.2, 0.8]]])  # (K=2, N=3, C=2)
    drops, flips = monotonicity_shares(probs, torch.tensor([0, 1, 0]))
    assert drops == [pytest.approx(2 / 3)]
    assert flips == [pytest.approx(1 / 3)]
    assert monotonicity_shares(probs[:1], torch.tensor([0, 1, 0])) == ([], [])


def _two_class(top: list[float], right: list[bool]) -> torch.Tensor:
    """(N, 2) probabilities of labels 0 whose top probability is `top` and whose answer is right or wrong."""
    return torch.tensor([[t, 1 - t] if r else [1 - t, t] for t, r in zip(top, right)])


def test_budgeted_thresholds_on_a_toy_curve():
    """Prefix costs 10 and 30 FLOPs. On val, stopping at k = 1 needs top >= t: with val tops 0.9, 0.6, 0.8, 0.5 a
    budget of 20 FLOPs lets half of the samples go on, so t = 0.8 (mean 10 + 20 * 2/4). On test (tops 0.85, 0.7,
    0.95 at k = 1) samples 0 and 2 stop at k = 1, sample 1 goes on: accuracy 2/3 (sample 0 is wrong at k = 1),
    mean FLOPs (10 + 30 + 10) / 3. A budget of 5 is below the first prefix (left out); 30 needs no exit."""
    labels_val, labels_test = torch.zeros(4, dtype=torch.long), torch.zeros(3, dtype=torch.long)
    val = torch.stack([_two_class([0.9, 0.6, 0.8, 0.5], [True] * 4), _two_class([0.7] * 4, [True] * 4)])
    test = torch.stack([_two_class([0.85, 0.7, 0.95], [False, True, True]),
                        _two_class([0.6, 0.6, 0.6], [True, True, False])])
    points = budgeted_curve(val, labels_val, test, labels_test, [10, 30], budgets=[5, 20, 30])
    assert [p[ValFittedPoint.BUDGET] for p in points] == [20, 30]
    fitted, full = points
    assert fitted[ValFittedPoint.CONFIDENCE] == pytest.approx(0.8)
    assert fitted[ValFittedPoint.VAL_MEAN_FLOPS] == pytest.approx(20)
    assert fitted[ValFittedPoint.ACC] == pytest.approx(2 / 3)
    assert fitted[ValFittedPoint.MEAN_FLOPS] == pytest.approx(50 / 3)
    assert full[ValFittedPoint.CONFIDENCE] is None and full[ValFittedPoint.MEAN_FLOPS] == pytest.approx(30)
    assert full[ValFittedPoint.ACC] == pytest.approx(2 / 3)  # k = 2 answers: right, right, wrong


def test_each_combiner_by_hand():
    z1 = torch.tensor([[2.0, -1.0, 0.0], [-1.0, -1.0, 1.0], [1.0, 2.0, 0.0]])
    z2 = torch.tensor([[1.0, 3.0, -2.0], [1.0, 1.0, -1.0], [3.0, 1.0, 0.0]])
    summed = prefix_probs([z1, z2], "sum", prev_scales=[1.0, 0.5])
    assert torch.allclose(summed[0], torch.softmax(z1.double(), -1))
    assert torch.allclose(summed[1, 0], torch.softmax(torch.tensor([2.0, 2.5, -2.0], dtype=torch.float64), -1))
    mean = prefix_probs([z1, z2], "mean-prob")
    assert torch.allclose(mean[1], (torch.softmax(z1.double(), -1) + torch.softmax(z2.double(), -1)) / 2)
    product = prefix_probs([z1, z2], "product")
    expected_k2 = torch.tensor([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.6, 0.4, 0.0]], dtype=torch.float64)
    assert torch.allclose(product[0, 0], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    assert torch.allclose(product[1], expected_k2)  # relu products 2*1, none left (uniform), 3 and 2 of 5
    for name in COMBINERS:
        assert torch.allclose(prefix_probs([z1, z2], name).sum(-1), torch.ones(2, 3, dtype=torch.float64))
    assert (native_combiner("residual"), native_combiner("independent")) == ("sum", "mean-prob")
    with pytest.raises(ValueError, match="choose one of: sum, mean-prob, product"):
        prefix_probs([z1], "max")
