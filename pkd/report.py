"""What the CLI prints about comparisons: a combiner's anytime figures (`pkd eval --combiner`), a seed group per k
(`pkd group`) and two runs or two groups side by side (`pkd compare`). Every difference is printed with its test's
verdict (pkd.stats.describe): "ahead by", "behind by", or "within noise" when the test does not separate them.

Takes plain records and pkd.stats / pkd.groups results; imports no torch (pkd.console's rule).
"""

from __future__ import annotations

from pkd.stats import ALPHA, describe, format_spread


def print_combiner(summary: dict, combiner: str) -> None:
    """`pkd eval`'s lines for one combiner: per k the test accuracy and the monotonicity shares of the step into
    k (Jazbec et al.), then its val-fitted early-exit curve under FLOP budgets."""
    from pkd.runs.schema import CombinerFigures as Fig, Summary, TeacherFigures, ValFittedPoint as Point

    figures = summary.get(Summary.COMBINERS, {}).get(combiner)
    if not figures:
        print(f"combiner {combiner}: no figures (the run is not finished; they come with its last student)")
        return
    print(f"combiner {combiner}: prefix test accuracy; from prefix k-1 to k the share of test samples whose "
          "true-class probability drops, and the share that flips right -> wrong")
    print(f"{'k':>3} {'test acc':>9} {'val acc':>8} {'prob drops':>11} {'right->wrong':>13}")
    drops, flips = [None] + figures[Fig.TRUE_PROB_DROP], [None] + figures[Fig.RIGHT_TO_WRONG]
    for k, (acc, val) in enumerate(zip(figures[Fig.PREFIX_ACC], figures[Fig.PREFIX_VAL_ACC]), start=1):
        drop, flip = drops[k - 1], flips[k - 1]
        print(f"{k:>3} {acc:>9.4f} {val:>8.4f} {'' if drop is None else f'{drop:.4f}':>11} "
              f"{'' if flip is None else f'{flip:.4f}':>13}")
    teacher_flops = summary[Summary.TEACHER][TeacherFigures.FLOPS]
    for point in figures[Fig.BUDGETED]:
        rule = "every student" if point[Point.CONFIDENCE] is None else f"exit at {point[Point.CONFIDENCE]:.4f}"
        print(f"  budget {100 * point[Point.BUDGET] / teacher_flops:6.2f}% of the teacher ({rule}, fitted on val): "
              f"test acc {point[Point.ACC]:.4f} at {100 * point[Point.MEAN_FLOPS] / teacher_flops:.2f}% on average")


def print_group(name: str, prefixes: list) -> None:
    """`pkd group`: per prefix k (pkd.groups.PrefixSpread) the test and val accuracy over the seeds, mean ± SE
    with min..max, in percent."""
    print(f"{name}: accuracy over seeds, mean ± SE (min..max), %")
    print(f"{'k':>3} {'runs':>4} {'cumulative FLOPs':>17} {'test acc':>16} {'test min..max':>15} {'val acc':>16}")
    for p in prefixes:
        val = "" if p.val is None else format_spread(p.val)
        print(f"{p.k:>3} {p.n:>4} {p.cumulative_flops:>17,.0f} {format_spread(p.test):>16} "
              f"{f'{100 * p.test.low:.2f}..{100 * p.test.high:.2f}':>15} {val:>16}")


def print_run_comparison(a: str, b: str, tests: list) -> None:
    """`pkd compare RUN_A RUN_B`: per k McNemar's exact test (pkd.stats.McNemar) and its verdict for A."""
    print(f"A = {a}\nB = {b}\nper prefix k, on the same test samples (McNemar's exact test, two-sided, "
          f"level {ALPHA}):")
    print(f"{'k':>3} {'A only right':>12} {'B only right':>12} {'p':>8}  A vs B")
    for k, t in tests:
        print(f"{k:>3} {t.a_only:>12} {t.b_only:>12} {t.p_value:>8.3g}  {describe(t.diff, t.verdict)} "
              f"(test accuracy, {t.n} samples)")


def print_group_comparison(a: str, b: str, pairings: list) -> None:
    """`pkd compare GROUP_A GROUP_B`: per k the paired-seed difference (pkd.groups.PrefixPairing) and its verdict
    for A."""
    print(f"A = {a}\nB = {b}\nper prefix k, test accuracy A - B paired by seed (mean ± SE over seeds, paired t-test, "
          f"level {ALPHA}):")
    print(f"{'k':>3} {'seeds':>5} {'wins':>4} {'losses':>6} {'p':>8}  A vs B")
    for p in pairings:
        d = p.diff
        print(f"{p.k:>3} {d.n:>5} {d.wins:>4} {d.losses:>6} {d.p_value:>8.3g}  {describe(d.mean, d.verdict, d.se)}")
