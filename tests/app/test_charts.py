"""The app's pure helpers (charts, form -> overrides, prediction path) on plain data, without Streamlit."""

from __future__ import annotations

import io

import pandas as pd
import pytest
import torch
import torch.nn as nn

from app import charts, inference, train_form
from pkd.data import get_dataset_spec
from pkd.models.ensemble import Ensemble
from tests.app.trained import TINY_CONFIG

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
    frame = charts.prefix_frame(ROWS)
    assert list(frame.columns) == list(charts.TABLE_COLUMNS)
    assert list(frame["together"]) == [80.0, 90.0]
    assert list(frame["% of the teacher's FLOPs"]) == [1.0, 4.0]
    assert list(frame["scale s_k"]) == ["", "0.25"]  # blank where there is nothing before
    back = pd.read_csv(io.BytesIO(charts.table_csv(frame)))
    assert list(back["FLOPs so far"]) == [1000, 4000]
    assert {"% of the teacher's FLOPs", "alone", "together"} <= \
        charts.PERCENT_COLUMNS  # shown with a % sign
    assert all(column in charts.COLUMN_HELP for column in frame.columns)  # every column has a tooltip


def test_accuracy_flops_figure_one_labelled_point_per_prefix_teacher_point_and_overlay():
    fig = charts.accuracy_flops_figure([{"label": "a", "rows": ROWS, "teacher": TEACHER, "anytime": ANYTIME}])
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
    two = charts.accuracy_flops_figure(
        [{"label": "a", "rows": ROWS, "teacher": TEACHER}, {"label": "b", "rows": ROWS[:1], "teacher": {}}],
        log_x=True, show_solo=False, show_anytime=False)
    assert [t.name for t in two.data if t.name] == ["a: the first students together", "a: teacher",
                                                     "b: the first students together"]
    assert "text" in two.data[0].mode and "text" not in two.data[2].mode  # overlays: hover, no labels
    assert two.layout.xaxis.type == "log"


def test_flops_axis_ticks_have_units_and_the_top_axis_is_percent_of_teacher():
    values, texts = charts.flops_ticks(150_000, 30_000_000, log_x=True)  # 2.3 decades: 1 and 3 per decade
    assert texts == ["300<br>thousand", "1<br>million", "3<br>million", "10<br>million", "30<br>million"]
    assert all("k" not in t.split("<br>") for t in texts)  # 'k' counts students, never thousands
    values, texts = charts.flops_ticks(150_000, 3_000_000, log_x=True)  # 1.3 decades: 1, 2 and 5
    assert texts[:2] == ["200<br>thousand", "500<br>thousand"] and values[-1] == 2_000_000
    values, texts = charts.flops_ticks(0, 26_000_000, log_x=False)
    assert texts[:3] == ["0", "5<br>million", "10<br>million"]
    shares, labels = charts.share_ticks([5.0, 7.5], True, 24_000_000)  # 100 thousand .. 31.6 million
    assert labels == ["0.5%", "1%", "2%", "5%", "10%", "20%", "50%", "100%"]
    assert shares[-1] == pytest.approx(24_000_000)
    shares, labels = charts.share_ticks([0, 26_000_000], False, 24_000_000)
    assert labels[0] == "0%" and "100%" in labels


def test_val_fitted_curve_is_drawn_when_present_and_old_or_bad_summaries_are_fine():
    fitted = [{"budget": 1000, "confidence": 0.9, "acc": 0.85, "mean_flops": 1200, "val_acc": 0.8,
               "val_mean_flops": 1000}, {"budget": 4000, "confidence": None, "acc": 0.9, "mean_flops": 4000},
              {"acc": "x", "mean_flops": 1}, {"acc": 2.0, "mean_flops": 5}, "junk"]
    assert len(charts.val_fitted_points(fitted)) == 2
    assert charts.val_fitted_points(None) == [] and charts.val_fitted_points({"a": 1}) == []
    fig = charts.accuracy_flops_figure([{"label": "a", "rows": ROWS, "teacher": TEACHER, "anytime": ANYTIME,
                                         "val_fitted": fitted}])
    (curve,) = [t for t in fig.data if t.name == "early exit fitted on validation"]
    assert list(curve.x) == [1200, 4000] and list(curve.y) == pytest.approx([85.0, 90.0])
    old = charts.accuracy_flops_figure([{"label": "a", "rows": ROWS, "teacher": TEACHER, "anytime": ANYTIME}])
    assert not [t for t in old.data if t.name == "early exit fitted on validation"]


def test_accuracy_axis_zooms_and_residual_solo_points_start_hidden():
    fig = charts.accuracy_flops_figure([{"label": "a", "rows": ROWS, "teacher": TEACHER, "anytime": ANYTIME,
                                         "mode": "residual"}])
    low, high = fig.layout.yaxis.range
    assert 70 < low < 80 and 99 < high <= 100.3  # zoomed on 80..99%, not 0..100
    solo = fig.data[0]
    assert solo.name == "each student alone" and solo.visible == "legendonly"
    independent = charts.accuracy_flops_figure([{"label": "a", "rows": ROWS, "teacher": TEACHER,
                                                 "mode": "independent"}])
    assert independent.data[0].visible is True


def test_stage_progress_follows_status_and_events():
    running = {"state": "running", "stage": "student", "student": 2, "progress": 0.5, "epoch": 1, "epochs": 2}
    metrics = [{"event": "teacher_done"}, {"event": "student_done", "k": 1}]
    parts = charts.stage_progress(running, metrics, 3)
    assert [p["fraction"] for p in parts] == [1.0, 1.0, 0.5, 0.0]
    assert "epoch 1/2" in parts[2]["text"] and parts[3]["text"] == "student 3: waiting"
    teacher = charts.stage_progress({"state": "running", "stage": "teacher", "progress": 0.25}, [], 1)
    assert [p["fraction"] for p in teacher] == [0.25, 0.0]
    done = charts.stage_progress({"state": "done", "stage": "student", "student": 1}, [], 2)
    assert [p["fraction"] for p in done] == [1.0, 1.0, 1.0]


def test_training_curves_one_line_per_stage_in_order():
    metrics = [{"event": "epoch", "stage": "teacher", "student": 0, "epoch": 1, "train_loss": 1.0, "val_acc": 0.5},
               {"event": "teacher_done"},
               {"event": "epoch", "stage": "student", "student": 1, "epoch": 1, "train_loss": 2.0, "val_acc": 0.6},
               {"event": "epoch", "stage": "student", "student": 1, "epoch": 2, "train_loss": 1.5, "val_acc": 0.7}]
    fig = charts.training_curves_figure(metrics)
    names = [t.name for t in fig.data]
    assert names == ["teacher", "teacher", "student 1", "student 1"]
    assert list(fig.data[2].x) == [2, 3] and list(fig.data[3].y) == pytest.approx([60.0, 70.0])
    assert len(charts.epoch_frame(metrics)) == 3


def test_runs_frame_and_number_formats():
    info = {"name": "r", "path": "/x/r", "state": "done", "dataset": "mnist", "mode": "residual", "k_done": 2,
            "k_planned": 3, "teacher_acc": 0.99, "final_acc": 0.9, "final_share": 0.04, "created": 0}
    frame = charts.runs_frame([info], {"/x/r": "runs folder"})
    assert frame.loc[0, "students"] == "2/3" and frame.loc[0, "final accuracy"] == 90.0
    assert frame.loc[0, "where"] == "runs folder" and frame.loc[0, "run"] == "r"
    assert {"teacher's accuracy", "final accuracy", "% of the teacher's FLOPs"} <= charts.PERCENT_COLUMNS
    named = charts.runs_frame([info], names={"/x/r": "sweep-a / trial-001"})
    assert named.loc[0, "run"] == "sweep-a / trial-001"
    assert charts.human_flops(24_129_802) == "24.1 million" and charts.human_flops(950) == "950"
    assert charts.human_flops(188_122) == "188 thousand"  # words: never '188 k' beside student counts
    assert charts.percent(0.0028, 2) == "0.28%" and charts.percent(None) == "-"


def test_prefix_predictions_table():
    report = {"prefix_probs": [[0.2, 0.8], [0.9, 0.1]], "student_probs": [[0.2, 0.8], [0.7, 0.3]],
              "cumulative_flops": [10, 30], "share_of_teacher": [0.1, 0.3]}
    frame = charts.prefix_predictions_frame(report, ["zero", "one"])
    assert list(frame["students used"]) == ["student 1", "students 1–2"]
    assert list(frame["together they say"]) == ["one", "zero"]
    assert list(frame["last student's own vote (alone)"]) == ["one", "zero"]
    assert list(frame["% of the teacher's"]) == ["10.00%", "30.00%"]


def test_step_frame_says_what_each_added_student_changed():
    report = {"prefix_probs": [[0.4, 0.6], [0.7, 0.3], [0.9, 0.1], [0.9, 0.1]],
              "student_probs": [[0.4, 0.6]] * 4, "cumulative_flops": [10, 30, 70, 150],
              "share_of_teacher": [0.01, 0.03, 0.07, 0.15]}
    frame = charts.step_frame(report, 3, ["zero", "one"])
    assert list(frame["step"]) == ["add student 1", "add student 2", "add student 3"]  # only the students added
    assert list(frame["answer so far"]) == ["one", "zero", "zero"]
    assert list(frame["what changed"]) == ["first answer", "changed its mind: one → zero",
                                           "same answer, more sure (+20.0 points)"]
    assert list(frame["added FLOPs"]) == ["10", "20", "40"] and list(frame["FLOPs so far"]) == ["10", "30", "70"]
    assert len(charts.step_frame(report, 4, ["zero", "one"])) == 4
    assert charts.change_text((0, 0.9), (0, 0.9), ["a"]) == "same answer, as sure"


# ------------------------------------------------------------------------------------------------ form

@pytest.mark.parametrize("kind,k,base,expected", [
    ("doubling", 3, 4, [4, 8, 16]), ("same size", 2, 8, [8, 8]), ("halving", 4, 8, [8, 4, 2, 1]),
])
def test_schedule_sizes(kind, k, base, expected):
    assert train_form.schedule_sizes(kind, k, base) == expected
    assert train_form.guess_schedule(expected) in (kind, "same size")


def test_schedule_sizes_rejects_bad_input():
    assert train_form.schedule_sizes("custom", 0, 1, "3, 5;7") == [3, 5, 7]
    with pytest.raises(ValueError, match="whole numbers"):
        train_form.schedule_sizes("custom", 0, 1, "4, x")
    with pytest.raises(ValueError, match="positive"):
        train_form.schedule_sizes("custom", 0, 1, "0")
    with pytest.raises(ValueError, match="unknown schedule"):
        train_form.schedule_sizes("random", 2, 4)


def test_form_defaults_and_overrides_only_for_changes():
    defaults = train_form.form_defaults(TINY_CONFIG)
    assert defaults["dataset"] == "mnist" and defaults["k"] >= 1
    assert train_form.build_overrides(dict(defaults), defaults) == []
    values = dict(defaults, alpha=0.7, mode="independent", schedule="same size", k=3, base=4, student_epochs=5)
    overrides = train_form.build_overrides(values, defaults)
    assert "distill.alpha=0.7" in overrides and "distill.mode=independent" in overrides
    assert "students.schedule=[{d_model: 4}, {d_model: 4}, {d_model: 4}]" in overrides
    assert "students.optim.epochs=5" in overrides
    from pkd.config import load_config

    cfg = load_config(TINY_CONFIG, overrides)  # the overrides are valid for the real config loader
    assert cfg.distill.alpha == 0.7 and cfg.students.k == 3
    # tiny.yaml learns the residual scale; independent mode has none, so the form turns it off
    assert defaults["learn_prev_scale"] is True and "distill.learn_prev_scale=false" in overrides
    assert not cfg.distill.learn_prev_scale
    plain = train_form.build_overrides(dict(defaults, learn_prev_scale=False), defaults)
    assert plain == ["distill.learn_prev_scale=false"]
    assert not load_config(TINY_CONFIG, plain).distill.learn_prev_scale


def test_changed_widths_keep_each_students_other_settings(tmp_path):
    from pkd.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text("students:\n  schedule:\n    - {d_model: 16, d_state: 4}\n"
                    "    - {d_model: 64, n_layers: 2, optim: {epochs: 3}}\n")
    defaults = train_form.form_defaults(path)
    values = dict(defaults, schedule="custom", custom="8, 32, 4")
    cfg = load_config(path, train_form.build_overrides(values, defaults))
    assert cfg.students.schedule == [{"d_model": 8, "d_state": 4},
                                     {"d_model": 32, "n_layers": 2, "optim": {"epochs": 3}}, {"d_model": 4}]


# ------------------------------------------------------------------------------------------------ prediction

class Pixels(nn.Module):
    """A toy student: a linear map of the flattened image (deterministic weights)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.fc = nn.Linear(28 * 28, 10)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(10, 28 * 28, generator=gen) * 0.05)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))  # (B, 10)


def test_predict_digit_matches_the_ensemble():
    spec = get_dataset_spec("mnist")
    ensemble = Ensemble([Pixels(0), Pixels(1), Pixels(2)], mode="residual", student_flops=[10, 20, 30]).eval()
    image = torch.zeros(1, 28, 28)
    image[0, 5:23, 13:15] = 1.0
    report = inference.predict_digit(ensemble, spec, image, teacher=Pixels(9), teacher_flops=600)
    with torch.no_grad():
        x = spec.normalize(image[None])
        expected = [lp.exp()[0] for lp in ensemble.all_prefixes(x)]
        solo = [torch.softmax(s(x), -1)[0] for s in ensemble.students]
    assert len(report.prefix_probs) == 3
    for got, want in zip(report.prefix_probs, expected):
        assert torch.tensor(got) == pytest.approx(want, abs=1e-6)
    for got, want in zip(report.student_probs, solo):
        assert torch.tensor(got) == pytest.approx(want, abs=1e-6)
    assert report.cumulative_flops == [10, 30, 60]
    assert report.share_of_teacher == pytest.approx([10 / 600, 30 / 600, 60 / 600])
    assert sum(report.teacher_probs) == pytest.approx(1.0)
    stop = inference.anytime_digit(ensemble, spec, image, flop_budget=35)
    assert stop["k_used"] == 2 and stop["flops"] == 30
    stop = inference.anytime_digit(ensemble, spec, image, confidence=1e-6)
    assert stop["k_used"] == 1


def test_prepare_canvas_blank_and_drawn():
    import numpy as np

    assert inference.prepare_canvas(None) is None
    blank = np.zeros((280, 280, 4), dtype=np.uint8)
    blank[..., 3] = 255
    assert inference.prepare_canvas(blank) is None
    blank[40:240, 130:150, :3] = 255
    image = inference.prepare_canvas(blank)
    assert image.shape == (1, 28, 28) and float(image.max()) > 0.5
    dot = np.zeros((280, 280, 4), dtype=np.uint8)
    dot[..., 3] = 255
    dot[138:144, 138:144, :3] = 255  # one brush dab: 6 px of 280
    with pytest.raises(ValueError, match="Too little ink"):
        inference.prepare_canvas(dot)


def test_labels_of_close_dots_go_to_opposite_sides():
    far = [(1e5, 96.0), (1e6, 98.0), (5e6, 99.2)]
    assert charts.label_positions(far, [(2.4e7, 99.3)], log_x=True) == ["bottom right"] * 3
    close = [(1.8e6, 97.26), (2.4e6, 97.31), (7e6, 97.51)]  # two dots a label's width apart on a linear axis
    assert charts.label_positions(close, [(2.4e7, 99.31)], log_x=False) == ["bottom right", "top left",
                                                                             "bottom right"]
    assert charts.label_positions([(1.0, 50.0)], [], log_x=True) == ["bottom right"]
