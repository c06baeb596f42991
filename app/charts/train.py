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
from pkd.runs.schema import Metric, MetricEvent, PrefixRow

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
    """Training loss and validation accuracy per epoch, one line per stage (teacher, student 1..K).

    The x axis counts epochs across the whole run, so the stages follow each other left to right.
    """
    frame = epoch_frame(metrics)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss", "validation accuracy (%)"))
    step = 0
    for i, (label, part) in enumerate(frame.groupby("stage", sort=False)):
        color = "#444444" if label == "teacher" else COLORS[(i - 1) % len(COLORS)]
        xs = list(range(step + 1, step + len(part) + 1))
        step += len(part)
        fig.add_trace(go.Scatter(x=xs, y=part["train loss"], mode="lines+markers", name=label,
                                 line={"color": color}, legendgroup=label), row=1, col=1)
        fig.add_trace(go.Scatter(x=xs, y=part["val accuracy"], mode="lines+markers", name=label,
                                 line={"color": color}, legendgroup=label, showlegend=False), row=1, col=2)
    fig.update_xaxes(title_text="epoch (all stages in order)", rangemode="tozero")
    fig.update_layout(height=320, margin={"l": 50, "r": 20, "t": 40, "b": 40},
                      legend={"orientation": "h", "yanchor": "bottom", "y": -0.45, "x": 0})
    return fig


def stage_progress(status: dict, metrics: list[dict], k_planned: int) -> list[dict]:
    """Progress of each stage of a run: teacher then students 1..K.

    Args:
        status: Run.status() (stage, student, progress within the current stage, state).
        metrics: Run.metrics() records (teacher_done / teacher_loaded / student_done events).
        k_planned: number of students in the config.

    Returns:
        One dict per stage: label, fraction in [0, 1], text.
    """
    teacher_done = any(r.get(Metric.EVENT) in (MetricEvent.TEACHER_DONE, MetricEvent.TEACHER_LOADED) for r in metrics)
    students_done = {int(r["k"]) for r in metrics if r.get(Metric.EVENT) == MetricEvent.STUDENT_DONE and "k" in r}
    finished = status.get("state") in FINISHED
    stage, current, frac = status.get("stage"), int(status.get("student") or 0), float(status.get("progress") or 0)
    out = []
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
    return out


def _progress_text(label: str, status: dict, running: bool, value: float) -> str:
    if not running:
        return f"{label}: waiting"
    epoch, epochs = status.get("epoch"), status.get("epochs")
    where = f", epoch {epoch}/{epochs}" if epoch and epochs else ""
    loss = status.get("loss")
    loss_text = f", loss {loss:.4f}" if isinstance(loss, (int, float)) else ""
    return f"{label}: {100 * value:.0f}%{where}{loss_text}"
