"""Is one weak learner really ahead of another? The tests every comparison in pkd goes through.

Two runs on the same test set are compared sample by sample (McNemar's exact test on the samples where exactly one
is right); two groups of runs that differ only in seed are compared seed by seed (the paired difference: mean ± SE
over seeds, wins and losses, a paired t-test). Each answers with a `verdict`, one of VERDICTS: "ahead", "behind" or
"within noise" (the test does not separate them at level ALPHA), and `describe` turns a difference and its verdict
into the words the CLI and the app print, so "+0.02 points" never reads as a win the data cannot stand behind.

Everything here is numbers in, numbers out (no runs, no tensors): pkd.groups reads run directories into them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

ALPHA = 0.05  # two-sided level below which a test separates two runs / groups
AHEAD, BEHIND, WITHIN_NOISE = "ahead", "behind", "within noise"
VERDICTS = (AHEAD, BEHIND, WITHIN_NOISE)


def _scipy_stats():
    """scipy.stats, imported on the first test run rather than with this module: the import takes 1-2 s (measured on
    a 2-core EPYC), and the app's pages import pkd.stats for its words and formats on every first open."""
    from scipy import stats

    return stats


@dataclass(frozen=True)
class Spread:
    """A figure over seeds: mean, standard error of the mean (sample SD / sqrt(n); 0 for one seed), min, max."""

    n: int
    mean: float
    se: float
    low: float
    high: float


@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test of runs A and B on the same N samples.

    a_only: samples A gets right and B wrong; b_only: the reverse. p_value: two-sided exact binomial test of
    a_only out of a_only + b_only at 1/2 (1.0 when they never disagree). diff: accuracy A minus accuracy B
    ((a_only - b_only) / n). verdict: AHEAD (A better), BEHIND or WITHIN_NOISE at `alpha`.
    """

    n: int
    a_only: int
    b_only: int
    diff: float
    p_value: float
    verdict: str


@dataclass(frozen=True)
class PairedDifference:
    """Groups A and B paired by seed: per-seed differences A - B summarised (mean ± SE), the seeds A wins, loses
    and ties, the paired t-test's two-sided p-value (1.0 with fewer than two seeds or no spread and no difference)
    and the verdict at `alpha` (WITHIN_NOISE with fewer than two seeds: one pair cannot tell luck from skill)."""

    n: int
    mean: float
    se: float
    wins: int
    losses: int
    ties: int
    p_value: float
    verdict: str


def spread(values: Sequence[float]) -> Spread:
    """Mean, SE, min and max of one figure over seeds (n >= 1)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("spread of no values: give at least one seed's figure")
    n, mean = len(values), sum(values) / len(values)
    se = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n) if n > 1 else 0.0
    return Spread(n=n, mean=mean, se=se, low=min(values), high=max(values))


def mcnemar(right_a: Sequence[bool], right_b: Sequence[bool], alpha: float = ALPHA) -> McNemar:
    """McNemar's exact test from two runs' per-sample correctness on the same samples, in the same order.

    Args:
        right_a, right_b: (N,) whether run A / run B classifies each test sample correctly (bools, 0/1, or a
            bool tensor's .tolist()).
    """
    a, b = [bool(x) for x in right_a], [bool(x) for x in right_b]
    if len(a) != len(b):
        raise ValueError(f"McNemar's test pairs samples: run A has {len(a)} answers, run B {len(b)}; compare runs "
                         "evaluated on the same test set")
    a_only = sum(x and not y for x, y in zip(a, b))
    b_only = sum(y and not x for x, y in zip(a, b))
    p = exact_mcnemar_p(a_only, b_only)
    n = len(a)
    diff = (a_only - b_only) / n if n else 0.0
    return McNemar(n=n, a_only=a_only, b_only=b_only, diff=diff, p_value=float(p), verdict=_verdict(diff, p, alpha))


def exact_mcnemar_p(a_only: int, b_only: int) -> float:
    """Two-sided exact p-value of McNemar's test: the binomial test of a_only successes in a_only + b_only trials at
    p = 1/2, which is symmetric, so twice the smaller tail (capped at 1). Equal to scipy.stats.binomtest's p-value
    (tests/test_stats.py checks every table up to 60 discordant samples, and larger ones up to 1,001), through
    scipy.special's binomial CDF: importing scipy.stats cost every training process about 0.7 s of CPU for this one
    number."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    from scipy.special import bdtr  # (k, n, p) -> P(X <= k) for X ~ Binomial(n, p)

    return min(1.0, 2.0 * float(bdtr(min(a_only, b_only), n, 0.5)))


def paired_difference(a: Sequence[float], b: Sequence[float], alpha: float = ALPHA) -> PairedDifference:
    """Group A against group B, seed by seed: a[i] and b[i] are the same figure (an accuracy) of the runs with
    the i-th shared seed. The verdict is the paired t-test's (scipy.stats.ttest_rel) at `alpha`."""
    if len(a) != len(b) or not a:
        raise ValueError(f"a paired difference needs the same seeds on both sides: got {len(a)} and {len(b)} runs")
    diffs = [float(x) - float(y) for x, y in zip(a, b)]
    summary = spread(diffs)
    if len(diffs) < 2:
        p = 1.0
    elif summary.se == 0:
        p = 1.0 if summary.mean == 0 else 0.0  # the same difference on every seed: no noise to hide in
    else:
        p = float(_scipy_stats().ttest_rel(a, b).pvalue)
    verdict = _verdict(summary.mean, p, alpha) if len(diffs) > 1 else WITHIN_NOISE
    return PairedDifference(n=len(diffs), mean=summary.mean, se=summary.se, wins=sum(d > 0 for d in diffs),
                            losses=sum(d < 0 for d in diffs), ties=sum(d == 0 for d in diffs), p_value=p,
                            verdict=verdict)


def _verdict(diff: float, p_value: float, alpha: float) -> str:
    if p_value >= alpha or diff == 0:
        return WITHIN_NOISE
    return AHEAD if diff > 0 else BEHIND


def describe(diff: float, verdict: str, se: float | None = None) -> str:
    """The words for a difference of accuracies (shares) and its verdict, in points: "ahead by 1.20 points",
    "behind by 0.40 ± 0.10 points", or "within noise (+0.02 points)" when the test does not separate them."""
    if verdict not in VERDICTS:
        raise ValueError(f"unknown verdict {verdict!r}; one of: {', '.join(VERDICTS)}")
    size = f"{100 * abs(diff):.2f}" + ("" if se is None else f" ± {100 * se:.2f}") + " points"
    if verdict == WITHIN_NOISE:
        signed = f"{100 * diff:+.2f}" + ("" if se is None else f" ± {100 * se:.2f}") + " points"
        return f"within noise ({signed})"
    return f"{verdict} by {size}"


def format_spread(s: Spread, scale: float = 100.0, digits: int = 2) -> str:
    """"98.12 ± 0.05" (mean ± SE, accuracies as percentages by default)."""
    return f"{scale * s.mean:.{digits}f} ± {scale * s.se:.{digits}f}"


def recorded_teacher_tests(summary: dict) -> list[McNemar] | None:
    """The prefix-vs-teacher tests `pkd eval` and training record in summary.json ("teacher_tests", validated on
    read), as McNemar results in k order; None for a run evaluated before they were recorded (or unfinished). Here
    rather than in pkd.compare, which loads models: the Results page reads them without importing the models."""
    from pkd.runs.schema import Summary, TeacherTest as T

    records = summary.get(Summary.TEACHER_TESTS)
    if not records:
        return None
    return [McNemar(n=r[T.N], a_only=r[T.PREFIX_ONLY], b_only=r[T.TEACHER_ONLY], diff=r[T.DIFF], p_value=r[T.P_VALUE],
                    verdict=r[T.VERDICT]) for r in sorted(records, key=lambda r: r[T.K])]
