"""The Results page's chart and per-student table (app/charts/results.py) on plain data, without Streamlit."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from app.charts import format as fmt
from app.charts import results as results_charts

ROWS = [
    {"k": 1, "arch": "mamba", "params": 100, "student_flops": 1000, "cumulative_flops": 1000,
     "share_of_teacher": 0.01, "prefix_acc": 0.80, "solo_acc": 0.80},
    {"k": 2, "arch": "mamba", "params": 300, "student_flops": 3000, "cumulative_flops": 4000,
     "share_of_teacher": 0.04, "prefix_acc": 0.90, "solo_acc": 0.85, "prev_scale": 0.25},
]
TEACHER = {"arch": "mnist_cnn", "flops": 100_000, "test_acc": 0.99}
ANYTIME = [{"confidence": 0.5, "acc": 0.82, "mean_flops": 1500.0}, {"confidence": 0.9, "acc": 0.89,
                                                                     "mean_flops": 3000.0}]


def test_prefix_frame_has_display_columns_in_percent():
    frame = results_charts.prefix_frame(ROWS)
    assert list(frame.columns) == list(results_charts.TABLE_COLUMNS)
    assert list(frame["together"]) == [80.0, 90.0]
    assert list(frame["% of the teacher's FLOPs"]) == [1.0, 4.0]
    assert list(frame["scale s_k"]) == ["", "0.25"]  # blank where there is nothing before
    back = pd.read_csv(io.BytesIO(results_charts.table_csv(frame)))
    assert list(back["FLOPs so far"]) == [1000, 4000]
    assert {"% of the teacher's FLOPs", "alone", "together"} <= \
        fmt.PERCENT_COLUMNS  # shown with a % sign
    assert all(column in fmt.COLUMN_HELP for column in frame.columns)  # every column has a tooltip


def test_independent_runs_have_no_scale_column():
    frame = results_charts.prefix_frame(ROWS, residual=False)
    assert "scale s_k" not in frame.columns and list(frame.columns) == list(results_charts.TABLE_COLUMNS[:-1])


def test_overlaid_teachers_labels_never_overlap():
    """Runs sharing a teacher (same accuracy) share one label naming both; different accuracies get different
    places on their lines."""
    other = {**TEACHER, "test_acc": 0.985}
    same = results_charts.accuracy_flops_figure([{"label": "a", "rows": ROWS, "teacher": TEACHER},
                                                 {"label": "b", "rows": ROWS, "teacher": TEACHER}])
    texts = [a.text for a in same.layout.annotations if "teacher's accuracy" in (a.text or "")]
    assert texts == ["a, b: teacher's accuracy 99.00%"]
    apart = results_charts.accuracy_flops_figure([{"label": "a", "rows": ROWS, "teacher": TEACHER},
                                                  {"label": "b", "rows": ROWS, "teacher": other}])
    labels = [a for a in apart.layout.annotations if "teacher's accuracy" in (a.text or "")]
    assert [a.text for a in labels] == ["a: teacher's accuracy 99.00%", "b: teacher's accuracy 98.50%"]
    assert labels[0].yanchor != labels[1].yanchor  # one above its line, one below


def test_accuracy_flops_figure_one_labelled_point_per_prefix_teacher_point_and_overlay():
    fig = results_charts.accuracy_flops_figure([{"label": "a", "rows": ROWS, "teacher": TEACHER, "anytime": ANYTIME}])
    solo, anytime, ensemble, teacher, top_axis = fig.data  # the ensemble on top of the curves, then the teacher
    assert ensemble.name == "the first students together"
    assert list(ensemble.x) == [1000, 4000] and list(ensemble.y) == pytest.approx([80.0, 90.0])
    assert list(ensemble.text) == ["80.00%", "90.00%"]  # each dot labelled with its accuracy
    assert [c[2] for c in ensemble.customdata] == pytest.approx([1.0, 4.0])  # share of teacher on hover
    assert ensemble.customdata[1][0] == "students 1–2"
    assert list(solo.x) == [1000, 3000]  # each student alone costs its own FLOPs
    assert list(anytime.x) == [1500.0, 3000.0]
    assert teacher.name == "teacher" and list(teacher.x) == [100_000] and list(teacher.y) == [pytest.approx(99.0)]
    assert "100 thousand FLOPs" in teacher.text[0]
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(lines) == 1 and lines[0].y0 == pytest.approx(99.0)
    assert fig.layout.xaxis.type == "linear" and fig.layout.xaxis.range[1] >= 100_000  # the teacher is on the chart
    assert top_axis.xaxis == "x2" and fig.layout.xaxis2.matches == "x" and fig.layout.xaxis2.side == "top"
    assert "100%" in fig.layout.xaxis2.ticktext
    two = results_charts.accuracy_flops_figure(
        [{"label": "a", "rows": ROWS, "teacher": TEACHER}, {"label": "b", "rows": ROWS[:1], "teacher": {}}],
        log_x=True, show_solo=False, show_anytime=False)
    assert [t.name for t in two.data if t.name] == ["a: the first students together", "a: teacher",
                                                     "b: the first students together"]
    assert "text" in two.data[0].mode and "text" not in two.data[2].mode  # overlays: hover, no labels
    assert two.layout.xaxis.type == "log"


def test_val_fitted_curve_is_drawn_when_present_and_old_summaries_are_fine():
    # bad points never get here: a summary holding one is a broken run (tests/runs/test_run_schema.py)
    fitted = [{"budget": 1000, "confidence": 0.9, "acc": 0.85, "mean_flops": 1200, "val_acc": 0.8,
               "val_mean_flops": 1000}, {"budget": 4000, "confidence": None, "acc": 0.9, "mean_flops": 4000},
              {"budget": 0, "confidence": 0.5, "acc": 0.1, "mean_flops": 0}]  # 0 FLOPs: no place on a log axis
    assert len(results_charts.val_fitted_points(fitted)) == 2
    assert results_charts.val_fitted_points(None) == [] and results_charts.val_fitted_points([]) == []
    fig = results_charts.accuracy_flops_figure([{"label": "a", "rows": ROWS, "teacher": TEACHER, "anytime": ANYTIME,
                                         "val_fitted": fitted}])
    (curve,) = [t for t in fig.data if t.name == "early exit fitted on validation"]
    assert list(curve.x) == [1200, 4000] and list(curve.y) == pytest.approx([85.0, 90.0])
    old = results_charts.accuracy_flops_figure([{"label": "a", "rows": ROWS, "teacher": TEACHER, "anytime": ANYTIME}])
    assert not [t for t in old.data if t.name == "early exit fitted on validation"]


def test_accuracy_axis_zooms_and_residual_solo_points_start_hidden():
    fig = results_charts.accuracy_flops_figure([{"label": "a", "rows": ROWS, "teacher": TEACHER, "anytime": ANYTIME,
                                         "mode": "residual"}])
    low, high = fig.layout.yaxis.range
    assert 70 < low < 80 and 99 < high <= 100.3  # zoomed on 80..99%, not 0..100
    solo = fig.data[0]
    assert solo.name == "each student alone" and solo.visible == "legendonly"
    independent = results_charts.accuracy_flops_figure([{"label": "a", "rows": ROWS, "teacher": TEACHER,
                                                 "mode": "independent"}])
    assert independent.data[0].visible is True


def test_labels_of_close_dots_go_to_opposite_sides():
    far = [(1e5, 96.0), (1e6, 98.0), (5e6, 99.2)]
    assert results_charts.label_positions(far, [(2.4e7, 99.3)], log_x=True) == ["bottom right"] * 3
    close = [(1.8e6, 97.26), (2.4e6, 97.31), (7e6, 97.51)]  # two dots a label's width apart on a linear axis
    assert results_charts.label_positions(close, [(2.4e7, 99.31)], log_x=False) == ["bottom right", "top left",
                                                                             "bottom right"]
    assert results_charts.label_positions([(1.0, 50.0)], [], log_x=True) == ["bottom right"]


def test_run_series_is_what_the_figure_draws():
    summary = {"teacher": TEACHER, "anytime": ANYTIME, "mode": "residual", "anytime_val_fitted": []}
    item = results_charts.run_series("a", ROWS, summary)
    assert item == {"label": "a", "rows": ROWS, "teacher": TEACHER, "anytime": ANYTIME, "mode": "residual",
                    "unit": "image", "val_fitted": None, "seeds": None}
    assert results_charts.run_series("a", ROWS, {}, teacher={"flops": 5})["teacher"] == {"flops": 5}
    assert results_charts.run_series("a", [], {}, unit="clip")["unit"] == "clip"
    fig = results_charts.accuracy_flops_figure([item])
    assert "the first students together" in [t.name for t in fig.data]


def test_a_seed_group_members_curve_gets_the_groups_band():
    """Band = mean ± SE over the seeds at each k's FLOPs, hover on its mean line; none when every k has one seed."""
    from pkd.groups import PrefixSpread
    from pkd.stats import spread

    seeds = [PrefixSpread(k=1, n=3, cumulative_flops=1000, test=spread([0.80, 0.82, 0.78]), val=None),
             PrefixSpread(k=2, n=3, cumulative_flops=4000, test=spread([0.90, 0.91, 0.86]), val=None)]
    fig = results_charts.accuracy_flops_figure([results_charts.run_series("a / seed-0", ROWS, {"teacher": TEACHER},
                                                                          seeds=seeds)])
    band = next(t for t in fig.data if t.fill == "toself")
    assert "over its 3 seeds: mean ± SE" in band.name
    s1, s2 = seeds[0].test, seeds[1].test
    assert list(band.x) == [1000, 4000, 4000, 1000]
    assert list(band.y) == pytest.approx([100 * (s1.mean + s1.se), 100 * (s2.mean + s2.se),
                                          100 * (s2.mean - s2.se), 100 * (s1.mean - s1.se)])
    mean = next(t for t in fig.data if t.name == "mean over the seeds")
    assert list(mean.y) == pytest.approx([80.0, 89.0]) and s2.se > 0
    one = [PrefixSpread(k=1, n=1, cumulative_flops=1000, test=spread([0.8]), val=None)]
    fig = results_charts.accuracy_flops_figure([results_charts.run_series("b", ROWS, {"teacher": TEACHER}, seeds=one)])
    assert not any(t.fill == "toself" for t in fig.data)
