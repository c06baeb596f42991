"""The Pareto front on hand-made points (pkd.pareto), the anytime AUC and the validation-fitted early exit
(pkd.evaluate) on hand-made numbers."""

from __future__ import annotations

import math

import pytest
import torch

from pkd.evaluate import anytime_auc, exit_figures, fit_confidence
from pkd.pareto import Point, dominates, front_flags, pareto_front


def names(points: list[Point]) -> list[tuple[str, int]]:
    return [(p.run, p.k) for p in points]


def test_one_run_dominating_another_leaves_only_its_points():
    strong = [Point(100, 0.90, "strong", 1), Point(200, 0.95, "strong", 2)]
    weak = [Point(150, 0.85, "weak", 1), Point(300, 0.94, "weak", 2)]
    assert names(pareto_front(weak + strong)) == [("strong", 1), ("strong", 2)]
    assert front_flags(weak + strong) == [False, False, True, True]


def test_two_runs_interleave_on_the_front_cheapest_first():
    a = [Point(100, 0.80, "a", 1), Point(400, 0.97, "a", 2)]
    b = [Point(50, 0.70, "b", 1), Point(200, 0.92, "b", 2), Point(800, 0.96, "b", 3)]
    assert names(pareto_front(a + b)) == [("b", 1), ("a", 1), ("b", 2), ("a", 2)]  # b3: dearer than a2, worse


def test_ties_equal_flops_keep_the_more_accurate_and_equal_accuracy_the_cheaper():
    points = [Point(100, 0.80, "x", 1), Point(100, 0.85, "y", 1),  # same FLOPs: y wins
              Point(300, 0.90, "x", 2), Point(200, 0.90, "y", 2)]  # same accuracy: the cheaper y wins
    assert names(pareto_front(points)) == [("y", 1), ("y", 2)]
    assert dominates(Point(100, 0.85, "y", 1), Point(100, 0.80, "x", 1))
    assert dominates(Point(200, 0.90, "y", 2), Point(300, 0.90, "x", 2))


def test_exact_duplicates_are_all_on_the_front_and_never_dominate_each_other():
    a, b = Point(100, 0.9, "a", 1), Point(100, 0.9, "b", 1)
    assert not dominates(a, b) and not dominates(b, a)
    assert names(pareto_front([b, a, Point(100, 0.9, "a", 1)])) == [("a", 1), ("a", 1), ("b", 1)]
    assert names(pareto_front([a, b, Point(90, 0.9, "c", 1)])) == [("c", 1)]  # a cheaper equal one beats both


def test_points_without_figures_take_no_part_and_empty_input_gives_an_empty_front():
    points = [Point(100, math.nan, "nan", 1), Point(math.inf, 0.99, "inf", 1), Point(100, None, "none", 1),
              Point(200, 0.5, "ok", 1)]
    assert names(pareto_front(points)) == [("ok", 1)]
    assert pareto_front([]) == []


def test_front_is_exactly_the_brute_force_non_dominated_set():
    gen = torch.Generator().manual_seed(0)
    flops = torch.randint(1, 30, (200,), generator=gen).tolist()
    accs = (torch.randint(0, 20, (200,), generator=gen) / 20).tolist()  # many ties and duplicates
    points = [Point(f, a, f"r{i % 7}", i) for i, (f, a) in enumerate(zip(flops, accs))]
    brute = {id(p) for p in points if not any(dominates(q, p) for q in points)}
    assert {id(p) for p in pareto_front(points)} == brute


def test_anytime_auc_is_the_log_flops_average_of_the_step_curve():
    # acc 0.5 from 10 to 100 FLOPs, 1.0 from 100 to 1000: half the log range each
    assert anytime_auc([(10, 0.5), (100, 1.0)], 10, 1000) == pytest.approx(0.75)
    assert anytime_auc([(100, 1.0)], 10, 1000) == pytest.approx(0.5)  # nothing fits below 100 FLOPs: 0
    assert anytime_auc([(10, 0.8), (5000, 1.0)], 10, 1000) == pytest.approx(0.8)  # beyond `high` never counts
    with pytest.raises(ValueError, match="low < high"):
        anytime_auc([(10, 0.5)], 100, 100)


def test_val_fitted_threshold_is_the_largest_within_the_budget():
    # 4 samples, 2 prefixes costing 10 and 30 FLOPs; top probabilities of prefix 1 (prefix 2 never stops early)
    top = torch.tensor([[0.5, 0.6, 0.9, 0.95], [0.9, 0.9, 0.95, 0.99]])
    right = torch.tensor([[False, True, True, True], [True, True, True, True]])
    cumulative = [10.0, 30.0]
    assert fit_confidence(top, cumulative, 5.0) == (False, None)  # below the first student's cost
    assert fit_confidence(top, cumulative, 30.0) == (True, None)  # the whole ensemble fits: no early exit
    fits, threshold = fit_confidence(top, cumulative, 20.0)  # half the samples may go on: 0.5 and 0.6 continue
    assert fits and threshold == pytest.approx(0.9)
    acc, flops = exit_figures(top, right, cumulative, threshold)
    assert (acc, flops) == (1.0, 20.0)
    assert exit_figures(top, right, cumulative, float(top.min())) == (0.75, 10.0)  # everyone stops at k = 1
