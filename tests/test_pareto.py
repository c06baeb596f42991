"""The Pareto front on hand-made points (pkd.pareto)."""

from __future__ import annotations

import math

import torch

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
