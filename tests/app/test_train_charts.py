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


def test_training_curves_one_panel_per_stage_each_from_epoch_1():
    """Each stage has its own panel and epoch axis (a new student's higher loss is not a jump of one curve), and a
    stage of one epoch is a large labelled marker, not an invisible dot."""
    metrics = [{"event": "epoch", "stage": "teacher", "student": 0, "epoch": 1, "train_loss": 1.0, "val_acc": 0.5},
               {"event": "teacher_done"},
               {"event": "epoch", "stage": "student", "student": 1, "epoch": 1, "train_loss": 2.0, "val_acc": 0.6},
               {"event": "epoch", "stage": "student", "student": 1, "epoch": 2, "train_loss": 1.5, "val_acc": 0.7}]
    fig = train_charts.training_curves_figure(metrics)
    names = [t.name for t in fig.data]
    assert names == ["teacher", "teacher", "student 1", "student 1"]
    assert list(fig.data[2].x) == [1, 2] and list(fig.data[3].y) == pytest.approx([60.0, 70.0])
    assert fig.data[0].xaxis != fig.data[2].xaxis and fig.data[0].yaxis != fig.data[2].yaxis  # separate panels
    assert fig.data[0].mode == "markers+text" and fig.data[0].marker.size >= 12 and list(fig.data[0].text) == ["1"]
    assert fig.data[2].mode == "lines+markers"
    assert len(train_charts.epoch_frame(metrics)) == 3


def test_elapsed_and_time_left_per_stage_and_for_the_run():
    """The stage in progress is projected from its own pace, a waiting student from the seconds per epoch of the
    latest student epoch; finished stages show how long they took."""
    config = {"teacher": {"optim": {"epochs": 0}},
              "students": {"optim": {"epochs": 2}, "schedule": [{}, {"optim": {"epochs": 3}}, {}]}}
    plan = train_charts.stage_plan(config)
    assert plan == [("teacher", 0), ("student 1", 2), ("student 2", 3), ("student 3", 2)]
    metrics = [{"event": "teacher_loaded", "time": 110.0},
               {"event": "epoch", "stage": "student", "student": 1, "epoch": 1, "seconds": 10.0, "time": 120.0},
               {"event": "epoch", "stage": "student", "student": 1, "epoch": 2, "seconds": 10.0, "time": 130.0},
               {"event": "student_done", "k": 1, "time": 131.0}]
    status = {"state": "running", "stage": "student", "student": 2, "progress": 0.25, "started": 100.0}
    times = train_charts.stage_times(status, metrics, plan, now=141.0)
    stages = times["stages"]
    assert stages["teacher"] == {"elapsed": 10.0, "left": 0.0} and stages["student 1"] == {"elapsed": 21.0, "left": 0.0}
    assert stages["student 2"] == {"elapsed": 10.0, "left": pytest.approx(30.0)}  # 10 s for 25%: 30 s to go
    assert stages["student 3"] == {"elapsed": None, "left": pytest.approx(20.0)}  # 2 epochs at 10 s
    assert times["elapsed"] == 41.0 and times["left"] == pytest.approx(50.0)
    parts = train_charts.stage_progress(status, metrics, 3, times)
    assert parts[1]["text"] == "student 1: done in 21 s"
    assert parts[2]["text"].endswith("10 s so far, about 30 s left")
    early = train_charts.stage_times({**status, "progress": 0.0}, metrics, plan, now=141.0)
    assert early["stages"]["student 2"]["left"] == pytest.approx(20.0)  # 3 epochs at 10 s, 10 s spent
    done = train_charts.stage_times({**status, "state": "done", "updated": 200.0}, metrics, plan, now=500.0)
    assert done["elapsed"] == 100.0 and done["left"] is None
    assert [train_charts.clock(s) for s in (45, 125, 3800)] == ["0:45", "2:05", "1:03:20"]
    assert [train_charts.duration(s) for s in (45, 125, None)] == ["45 s", "2 min 05 s", "?"]
