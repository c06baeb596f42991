"""The Train page's live view (app/charts/train.py): stage progress and training curves on plain records."""

from __future__ import annotations

import pytest

from app.charts import train as train_charts


def test_stage_progress_follows_status_and_events():
    running = {"state": "running", "stage": "student", "student": 2, "progress": 0.5, "epoch": 1, "epochs": 2}
    metrics = [{"event": "teacher_done"}, {"event": "student_done", "k": 1}]
    parts = train_charts.stage_progress(running, metrics, 3)
    assert [p["fraction"] for p in parts] == [1.0, 1.0, 0.5, 0.0]
    assert "epoch 1/2" in parts[2]["text"] and parts[3]["text"] == "student 3: waiting"
    teacher = train_charts.stage_progress({"state": "running", "stage": "teacher", "progress": 0.25}, [], 1)
    assert [p["fraction"] for p in teacher] == [0.25, 0.0]
    done = train_charts.stage_progress({"state": "done", "stage": "student", "student": 1}, [], 2)
    assert [p["fraction"] for p in done] == [1.0, 1.0, 1.0]


def test_training_curves_one_line_per_stage_in_order():
    metrics = [{"event": "epoch", "stage": "teacher", "student": 0, "epoch": 1, "train_loss": 1.0, "val_acc": 0.5},
               {"event": "teacher_done"},
               {"event": "epoch", "stage": "student", "student": 1, "epoch": 1, "train_loss": 2.0, "val_acc": 0.6},
               {"event": "epoch", "stage": "student", "student": 1, "epoch": 2, "train_loss": 1.5, "val_acc": 0.7}]
    fig = train_charts.training_curves_figure(metrics)
    names = [t.name for t in fig.data]
    assert names == ["teacher", "teacher", "student 1", "student 1"]
    assert list(fig.data[2].x) == [2, 3] and list(fig.data[3].y) == pytest.approx([60.0, 70.0])
    assert len(train_charts.epoch_frame(metrics)) == 3
