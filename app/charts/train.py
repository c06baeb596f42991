"""The Train page's live view of a run: the progress of each stage and the training curves, from status.json and
metrics.jsonl records (as `pkd.runs` reads them).

Nothing here imports Streamlit or touches files, so every function is unit-tested on plain dicts.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.charts.format import COLORS, pct
from pkd.runs import State
from pkd.runs.schema import Metric, MetricEvent, PrefixRow, Stage, Status

FINISHED = (State.DONE,)


def epoch_frame(metrics: list[dict]) -> pd.DataFrame:
    """Epoch records of metrics.jsonl as a table: stage label, epoch, train loss, val accuracy (%)."""
    records = []
    for record in metrics:
        if record.get(Metric.EVENT) != MetricEvent.EPOCH:
            continue
        stage = record.get("stage", "?")
        k = record.get("student", 0)
        label = "teacher" if stage == "teacher" else f"student {k}"
        records.append({"stage": label, "k": k, "epoch": record.get("epoch"),
                        "train loss": record.get("train_loss"),
                        "val accuracy": pct(record.get(f"val{Metric.ACC_SUFFIX}")),
                        "solo val accuracy": pct(record.get(PrefixRow.SOLO_VAL_ACC))})
    return pd.DataFrame.from_records(records, columns=["stage", "k", "epoch", "train loss", "val accuracy",
                                                        "solo val accuracy"])


def training_curves_figure(metrics: list[dict]) -> go.Figure:
    """Training loss (top row) and validation accuracy (bottom row) per epoch, one small panel per stage (teacher,
    student 1..K), each with its own epoch axis: a student's loss is its own (it learns what the students before it
    got wrong), so the panels must not read as one curve falling across students. A stage of one epoch is a large
    labelled marker, not an invisible dot."""
    frame = epoch_frame(metrics)
    stages = list(dict.fromkeys(frame["stage"]))
    fig = make_subplots(rows=2, cols=max(1, len(stages)), horizontal_spacing=0.05,
                        vertical_spacing=0.12, column_titles=stages or None,
                        row_titles=["training loss", "val. accuracy (%)"])
    for i, label in enumerate(stages):
        part = frame[frame["stage"] == label]
        color = "#444444" if label == "teacher" else COLORS[(int(part["k"].iloc[0]) - 1) % len(COLORS)]
        single = len(part) == 1
        for row, column, fmt in ((1, "train loss", "{:.3g}"), (2, "val accuracy", "{:.1f}")):
            fig.add_trace(go.Scatter(
                x=part["epoch"], y=part[column], name=label, legendgroup=label, showlegend=False,
                mode="markers+text" if single else "lines+markers", line={"color": color, "width": 3},
                marker={"size": 14 if single else 7, "color": color},
                text=[fmt.format(v) if v == v else "" for v in part[column]] if single else None,
                textposition="top center", hovertemplate=f"{label}, epoch %{{x}}: %{{y:.4g}}<extra></extra>"),
                row=row, col=i + 1)
        epochs = int(part["epoch"].max())
        fig.update_xaxes(range=[0.5, epochs + 0.5], dtick=max(1, epochs // 4), row=1, col=i + 1)
        fig.update_xaxes(range=[0.5, epochs + 0.5], dtick=max(1, epochs // 4), title_text="epoch", row=2, col=i + 1)
    fig.update_layout(height=420, margin={"l": 50, "r": 30, "t": 40, "b": 40})
    return fig


def stage_plan(config: dict) -> list[tuple[str, int]]:
    """(label, epochs) of every stage of a run's resolved config: the teacher (0 epochs when it is loaded), then
    students 1..K (a schedule entry's own optim.epochs, else the students' common one)."""
    teacher = int(((config.get("teacher") or {}).get("optim") or {}).get("epochs") or 0)
    students = config.get("students") or {}
    common_epochs = int((students.get("optim") or {}).get("epochs") or 1)
    plan = [("teacher", teacher)]
    for k, entry in enumerate(students.get("schedule") or [], 1):
        plan.append((f"student {k}", int(((entry or {}).get("optim") or {}).get("epochs") or common_epochs)))
    return plan


def stage_times(status: dict, metrics: list[dict], plan: list[tuple[str, int]], now: float) -> dict:
    """Seconds spent and, while a run trains, about how many are left, per stage and for the whole run.

    The stage in progress is projected from its own pace (seconds so far / its progress); a stage still waiting
    from the seconds per epoch of the latest student epoch (or of the stage in progress), times its epochs: later
    students are wider, so the run's estimate is rather low than high. Unknown figures are None.

    Args:
        status: Run.status() (state, stage, student, progress, started, updated).
        metrics: metrics.jsonl records (epoch, teacher_done/teacher_loaded and student_done events, with times).
        plan: stage_plan of the run's config.
        now: the current time (time.time()).

    Returns:
        {"stages": {label: {"elapsed": s | None, "left": s | None}}, "elapsed": s | None, "left": s | None}.
    """
    ends: dict[int, float] = {}  # stage index (0 teacher, k student k) -> time it ended
    per_epoch = None
    for record in metrics:
        event, when = record.get(Metric.EVENT), record.get(Metric.TIME)
        if event in (MetricEvent.TEACHER_DONE, MetricEvent.TEACHER_LOADED) and when:
            ends[0] = float(when)
        elif event == MetricEvent.STUDENT_DONE and when and record.get(PrefixRow.K):
            ends[int(record[PrefixRow.K])] = float(when)
        elif event == MetricEvent.EPOCH and record.get(Metric.STAGE) == Stage.STUDENT and record.get(Metric.SECONDS):
            per_epoch = float(record[Metric.SECONDS])
    started = status.get(Status.STARTED)
    running = State.of(status.get(Status.STATE)) == State.RUNNING
    current = None
    if running:
        current = 0 if status.get(Status.STAGE) == Stage.TEACHER else int(status.get(Status.STUDENT) or 0)
    stages, left_total, start = {}, 0.0, float(started) if started else None
    for index, (label, epochs) in enumerate(plan):
        elapsed = left = None
        if index in ends:
            elapsed, left = (ends[index] - start if start else None), 0.0
            start = ends[index]
        elif index == current and start is not None:
            elapsed = max(0.0, now - start)
            progress = float(status.get(Status.PROGRESS) or 0.0)
            if progress >= 0.05:
                left = elapsed * (1 - progress) / progress
                per_epoch = per_epoch or (elapsed / progress / max(1, epochs) if index else None)
            elif per_epoch and index:
                left = max(0.0, per_epoch * epochs - elapsed)
        elif running and current is not None and index > current:
            left = per_epoch * epochs if per_epoch and index else (0.0 if index == 0 else None)
        stages[label] = {"elapsed": elapsed, "left": left}
        if running and index >= (current or 0) and index not in ends:
            left_total = None if left is None or left_total is None else left_total + left
    end_time = now if running else status.get(Status.UPDATED)
    total = float(end_time) - float(started) if started and end_time else None
    return {"stages": stages, "elapsed": total, "left": left_total if running else None}


def clock(seconds: float | None) -> str:
    """'0:45', '2:05', '1:03:20' (what a metric tile has room for; '?' for None)."""
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


def duration(seconds: float | None) -> str:
    """'45 s', '2 min 05 s', '1 h 03 min' ('?' for None)."""
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def stage_progress(status: dict, metrics: list[dict], k_planned: int, times: dict | None = None) -> list[dict]:
    """Progress of each stage of a run: teacher then students 1..K.

    Args:
        status: Run.status() (stage, student, progress within the current stage, state).
        metrics: Run.metrics() records (teacher_done / teacher_loaded / student_done events).
        k_planned: number of students in the config.
        times: stage_times of the run (adds "done in 14 s", "12 s so far, about 20 s left"), optional.

    Returns:
        One dict per stage: label, fraction in [0, 1], text.
    """
    teacher_done = any(r.get(Metric.EVENT) in (MetricEvent.TEACHER_DONE, MetricEvent.TEACHER_LOADED) for r in metrics)
    students_done = {int(r["k"]) for r in metrics if r.get(Metric.EVENT) == MetricEvent.STUDENT_DONE and "k" in r}
    finished = status.get("state") in FINISHED
    stage, current, frac = status.get("stage"), int(status.get("student") or 0), float(status.get("progress") or 0)
    out = []
    timed = (times or {}).get("stages", {})
    if teacher_done or finished or stage == "student":
        out.append({"label": "teacher", "fraction": 1.0, "text": "teacher: done"})
    else:
        running = stage == "teacher"
        value = min(max(frac, 0.0), 1.0) if running else 0.0
        out.append({"label": "teacher", "fraction": value, "text": _progress_text("teacher", status, running, value)})
    for k in range(1, k_planned + 1):
        label = f"student {k}"
        if k in students_done or finished:
            out.append({"label": label, "fraction": 1.0, "text": f"{label}: done"})
        elif stage == "student" and current == k:
            value = min(max(frac, 0.0), 0.999)
            out.append({"label": label, "fraction": value, "text": _progress_text(label, status, True, value)})
        else:
            out.append({"label": label, "fraction": 0.0, "text": f"{label}: waiting"})
    for item in out:
        item["text"] += _time_text(timed.get(item["label"]), item["fraction"])
    return out


def _time_text(times: dict | None, fraction: float) -> str:
    if not times or times.get("elapsed") is None:
        return ""
    if fraction >= 1.0:
        return f" in {duration(times['elapsed'])}"
    left = times.get("left")
    return f" · {duration(times['elapsed'])} so far" + (f", about {duration(left)} left" if left is not None else
                                                         ", estimating the time left ...")


def _progress_text(label: str, status: dict, running: bool, value: float) -> str:
    if not running:
        return f"{label}: waiting"
    epoch, epochs = status.get("epoch"), status.get("epochs")
    where = f", epoch {epoch}/{epochs}" if epoch and epochs else ""
    loss = status.get("loss")
    loss_text = f", loss {loss:.4f}" if isinstance(loss, (int, float)) else ""
    return f"{label}: {100 * value:.0f}%{where}{loss_text}"
