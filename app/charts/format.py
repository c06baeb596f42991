"""What every page's charts and tables share: the colours, numbers in words ('1.23 million', '0.28%', 'students
1–3'), the display columns' formats and tooltips, and the FLOPs axis' ticks.

Pure functions (no Streamlit, no files), so the page modules beside this one stay free of repeated formatting.
"""

from __future__ import annotations

import math
from typing import Any

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
# columns of the app's tables that hold percentages (0..100): shown with a % sign (st.column_config)
PERCENT_COLUMNS = frozenset({"% of the teacher's FLOPs", "alone", "together",
                             "teacher's accuracy", "final accuracy", "val accuracy", "test accuracy",
                             "solo val accuracy", "anytime AUC (test)", "digit and motion", "digit identity",
                             "changes when reversed"})
COUNT_COLUMNS = frozenset({"parameters", "its FLOPs", "FLOPs so far", "FLOPs per image", "FLOPs per sample"})  # shown as 1,234,567
COLUMN_HELP = {  # column -> its tooltip
    "student": "Student k: the k-th student trained (1 = the cheapest, trained first).",
    "model": "The kind of network: mamba = a Mamba model that reads the image one row at a time.",
    "parameters": "How many numbers (weights) the student learned.",
    "its FLOPs": "Operations this student alone needs per image. " + "A FLOP is one multiplication or addition.",
    "FLOPs so far": "Operations per image of students 1 to k together: the ensemble's cost.",
    "% of the teacher's FLOPs": "The ensemble's cost as a share of the teacher's (100% = as much work).",
    "alone": "Accuracy of student k answering alone, on the test set (in a residual ensemble later students "
             "learn corrections, so alone they can score low).",
    "together": "Accuracy of students 1 to k together (the ensemble), on the test set.",
    "scale s_k": "The number student k learned to multiply the sum of the students before it by (1 = plain sum).",
    "students": "Finished / planned students.",
    "final accuracy": "All finished students together, on the test set.",
    "teacher's accuracy": "The teacher alone, on the test set.",
    "students used": "How many students answer together: 1 = student 1 alone, 2 = students 1-2, ...",
    "FLOPs per image": "Operations per image of the students used. A FLOP is one multiplication or addition.",
    "val accuracy": "Accuracy on the validation set (images used to choose settings, never for training).",
    "test accuracy": "Accuracy on the test set (images used for nothing else).",
    "differs from the base": "The settings this run changed from the sweep's base config (α, temperature, ...).",
}


def human_flops(value: float | int | None, digits: int = 3) -> str:
    """1234567 -> '1.23 million' (FLOPs per image, in words: a 'k' for thousand would read as a student count)."""
    if value is None:
        return "-"
    value = float(value)
    for unit, scale in (("billion", 1e9), ("million", 1e6), ("thousand", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g} {unit}"
    return f"{value:.0f}"


def percent(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * float(value):.{digits}f}%"


def pct(value: Any) -> float | None:
    """A fraction as a table's percentage (0.9 -> 90.0, two decimals); None stays None (an empty cell)."""
    return None if value is None else round(100.0 * float(value), 2)


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool): a value a chart can place."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def students_text(k: int) -> str:
    """'student 1' or 'students 1–3' (never 'k=3': k also reads as 'thousand')."""
    return "student 1" if int(k) == 1 else f"students 1–{int(k)}"


def flops_ticks(low: float, high: float, log_x: bool) -> tuple[list[float], list[str]]:
    """Tick positions and labels with units ('200 thousand', '1 million') for a FLOPs axis from low to high."""
    if log_x:
        decades = math.log10(high / max(low, 1e-9))
        steps = (1, 2, 5) if decades <= 1.6 else (1, 3) if decades <= 4 else (1,)  # at most ~8 labels
        values = [m * 10 ** e for e in range(int(math.floor(math.log10(max(low, 1e-9)))),
                                             int(math.ceil(math.log10(high))) + 1) for m in steps]
        values = [v for v in values if low <= v <= high]
    else:
        step = nice_step(high / 6)
        values = [i * step for i in range(int(high // step) + 1)]
    return values, [human_flops(v).replace(" ", "<br>", 1) if v else "0" for v in values]  # two short lines


def share_ticks(x_range: list[float], log_x: bool, teacher_flops: float) -> tuple[list[float], list[str]]:
    """Tick positions (in FLOPs) and labels ('1%', '25%') of the top axis: % of the teacher's FLOPs."""
    low, high = (10 ** x_range[0], 10 ** x_range[1]) if log_x else tuple(x_range)
    if log_x:
        shares = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500]
    else:
        step = nice_step(100 * high / teacher_flops / 6)
        shares = [i * step for i in range(int(100 * high / teacher_flops // step) + 1)]
    kept = [s for s in shares if low <= s / 100 * teacher_flops <= high]
    return [s / 100 * teacher_flops for s in kept], [f"{s:g}%" for s in kept]


def nice_step(raw: float) -> float:
    """The 1, 2 or 5 times a power of ten just above `raw` (a readable tick step)."""
    if raw <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def column_widths(frame, char_px: float = 6.8, header_px: float = 6.2, pad_px: int = 18,
                  most_px: int = 240) -> dict[str, int]:
    """Pixel widths that fit each column's header and longest shown value (at most `most_px`): a table sized to its
    content instead of the grid's roomier default, so it fits a laptop's screen without cutting columns off.

    Args:
        frame: the table (pandas DataFrame); numbers are measured as shown, with 2 decimals.
    """
    widths = {}
    for column in frame.columns:
        values = [f"{v:,.2f}" if isinstance(v, float) else str(v) for v in frame[column].tolist()]
        longest = max([len(str(column)) * header_px, *(len(v) * char_px for v in values)])
        widths[column] = min(most_px, int(longest) + pad_px)
    return widths
