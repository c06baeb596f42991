"""The Pareto front of ensemble prefixes: which (cumulative FLOPs, accuracy) points no other point beats.

Every run contributes K points, one per prefix k. A point *dominates* another when it costs no more FLOPs, is at
least as accurate, and is strictly better in one of the two. The front is every point that no point dominates.

Ties and duplicates, explicitly:
- equal FLOPs, different accuracy: only the more accurate point can be on the front;
- equal accuracy, different FLOPs: only the cheaper point can be on the front;
- exact duplicates (same FLOPs and same accuracy, e.g. two runs whose first student is the same): neither
  dominates the other, so all of them are on the front, each with its own run and k;
- points without an accuracy or with a non-finite figure are left out (they are neither on nor off the front).

Pure functions on plain values: no files, no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable


@dataclass(frozen=True)
class Point:
    """One ensemble prefix: students 1..k of `run`, costing `flops` per sample, with accuracy `acc`."""

    flops: float
    acc: float
    run: str
    k: int
    extra: dict = field(default_factory=dict, compare=False, hash=False)  # other figures shown beside it


def dominates(a: Point, b: Point) -> bool:
    """a is no costlier and no less accurate than b, and strictly better in at least one of the two."""
    return a.flops <= b.flops and a.acc >= b.acc and (a.flops < b.flops or a.acc > b.acc)


def usable(points: Iterable[Point]) -> list[Point]:
    """The points with finite FLOPs and accuracy (the others take no part in the front)."""
    return [p for p in points if isinstance(p.acc, (int, float)) and isinstance(p.flops, (int, float))
            and math.isfinite(p.acc) and math.isfinite(p.flops)]


def pareto_front(points: Iterable[Point]) -> list[Point]:
    """The non-dominated points, cheapest first (then by run and k), exact duplicates all kept.

    O(n log n): sorted by FLOPs, a point is on the front when it is the most accurate of its FLOPs figure and more
    accurate than every cheaper point.
    """
    ordered = sorted(usable(points), key=lambda p: (p.flops, -p.acc, p.run, p.k))
    front: list[Point] = []
    best_cheaper = -math.inf  # best accuracy among points strictly cheaper than the current FLOPs figure
    i = 0
    while i < len(ordered):
        j = i
        while j < len(ordered) and ordered[j].flops == ordered[i].flops:
            j += 1
        top = ordered[i].acc  # the group's best (sorted by -acc within equal FLOPs)
        if top > best_cheaper:
            front += [p for p in ordered[i:j] if p.acc == top]
        best_cheaper = max(best_cheaper, top)
        i = j
    return front


def front_flags(points: list[Point]) -> list[bool]:
    """For each of `points` (in their order), whether it lies on the front."""
    on = {id(p) for p in pareto_front(points)}
    return [id(p) in on for p in points]


def points_table(points: list[Point]) -> list[dict[str, Any]]:
    """The points as table rows: run, k, flops, acc and their extra figures."""
    return [{"run": p.run, "k": p.k, "flops": p.flops, "acc": p.acc, **p.extra} for p in points]
