"""The charts' shared formatting (app/charts/format.py): numbers in words, FLOPs axis ticks."""

from __future__ import annotations

import pytest

from app.charts import format as fmt


def test_flops_axis_ticks_have_units_and_the_top_axis_is_percent_of_teacher():
    values, texts = fmt.flops_ticks(150_000, 30_000_000, log_x=True)  # 2.3 decades: 1 and 3 per decade
    assert texts == ["300<br>thousand", "1<br>million", "3<br>million", "10<br>million", "30<br>million"]
    assert all("k" not in t.split("<br>") for t in texts)  # 'k' counts students, never thousands
    values, texts = fmt.flops_ticks(150_000, 3_000_000, log_x=True)  # 1.3 decades: 1, 2 and 5
    assert texts[:2] == ["200<br>thousand", "500<br>thousand"] and values[-1] == 2_000_000
    values, texts = fmt.flops_ticks(0, 26_000_000, log_x=False)
    assert texts[:3] == ["0", "5<br>million", "10<br>million"]
    shares, labels = fmt.share_ticks([5.0, 7.5], True, 24_000_000)  # 100 thousand .. 31.6 million
    assert labels == ["0.5%", "1%", "2%", "5%", "10%", "20%", "50%", "100%"]
    assert shares[-1] == pytest.approx(24_000_000)
    shares, labels = fmt.share_ticks([0, 26_000_000], False, 24_000_000)
    assert labels[0] == "0%" and "100%" in labels


def test_number_formats():
    assert fmt.human_flops(24_129_802) == "24.1 million" and fmt.human_flops(950) == "950"
    assert fmt.human_flops(188_122) == "188 thousand"  # words: never '188 k' beside student counts
    assert fmt.percent(0.0028, 2) == "0.28%" and fmt.percent(None) == "-"
    assert fmt.pct(0.9) == 90.0 and fmt.pct(None) is None  # a table's percentage column: None is an empty cell
    assert fmt.students_text(1) == "student 1" and fmt.students_text(3) == "students 1–3"
    assert fmt.is_number(0.5) and not fmt.is_number(True) and not fmt.is_number(float("nan"))


def test_table_columns_are_as_wide_as_their_content():
    import pandas as pd

    frame = pd.DataFrame({"run": ["mnist", "moving-mnist-independent"], "state": ["done", "done"],
                          "final accuracy": [99.37, 92.9]})
    widths = fmt.column_widths(frame)
    assert widths["run"] > widths["final accuracy"] > widths["state"]  # the longest value, or the header
    assert fmt.column_widths(pd.DataFrame({"x": ["y" * 500]}))["x"] == 240  # a long text is capped
