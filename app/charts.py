"""Pure helpers for the app: run data (as `pkd.runs` reads it) -> plotly figures and pandas tables.

Nothing here imports Streamlit or touches files, so every function is unit-tested on plain dicts. Figures only
arrange numbers the library wrote (prefix.csv rows, summary.json, metrics.jsonl records, status.json).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pkd.runs import State

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
TABLE_COLUMNS = ("k", "student", "params", "FLOPs", "cumulative FLOPs", "% of teacher FLOPs", "solo accuracy",
                 "prefix accuracy", "scale of students before")
FINISHED = (State.DONE,)


def human_flops(value: float | int | None) -> str:
    """1234567 -> '1.23 M' (FLOPs per sample)."""
    if value is None:
        return "-"
    value = float(value)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.0f}"


def percent(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * float(value):.{digits}f}%"


def prefix_frame(rows: list[dict]) -> pd.DataFrame:
    """The per-student table of one run (one row per prefix k), with display column names.

    Args:
        rows: prefix.csv rows (k, arch, params, student_flops, cumulative_flops, share_of_teacher, solo_acc,
            prefix_acc, prev_scale).

    Returns:
        DataFrame with TABLE_COLUMNS; accuracies and shares as percentages (0..100).
    """
    records = []
    for row in rows:
        records.append({
            "k": int(row["k"]),
            "student": row.get("arch", ""),
            "params": row.get("params"),
            "FLOPs": row.get("student_flops"),
            "cumulative FLOPs": row.get("cumulative_flops"),
            "% of teacher FLOPs": _pct(row.get("share_of_teacher")),
            "solo accuracy": _pct(row.get("solo_acc")),
            "prefix accuracy": _pct(row.get("prefix_acc")),
            # s_k of E_k = s_k * E_(k-1) + z_k; 1 for plain sums, blank where there is nothing before
            "scale of students before": row.get("prev_scale") if int(row["k"]) > 1 else None,
        })
    return pd.DataFrame.from_records(records, columns=list(TABLE_COLUMNS))


def _pct(value: Any) -> float | None:
    return None if value is None else round(100.0 * float(value), 2)


def table_csv(frame: pd.DataFrame) -> bytes:
    """CSV bytes of a table (for st.download_button)."""
    return frame.to_csv(index=False).encode("utf-8")


def runs_frame(infos: list[dict], locations: dict[str, str] | None = None) -> pd.DataFrame:
    """The Runs page table from Run.info() dicts (newest first as given); `problem` says why a run is broken."""
    locations = locations or {}
    records = []
    for info in infos:
        created = info.get("created")
        records.append({
            "run": info.get("name"),
            "state": info.get("state"),
            "dataset": info.get("dataset"),
            "mode": info.get("mode"),
            "students": f"{info.get('k_done', 0)}/{info.get('k_planned', 0)}",
            "teacher accuracy": _pct(info.get("teacher_acc")),
            "final accuracy": _pct(info.get("final_acc")),
            "% of teacher FLOPs": _pct(info.get("final_share")),
            "started": dt.datetime.fromtimestamp(created).strftime("%Y-%m-%d %H:%M") if created else "",
            "where": locations.get(info.get("path", ""), ""),
            "problem": info.get("problem") or "",
        })
    columns = ["run", "state", "dataset", "mode", "students", "teacher accuracy", "final accuracy",
               "% of teacher FLOPs", "started", "where", "problem"]
    return pd.DataFrame.from_records(records, columns=columns)


def run_label(info: dict) -> str:
    """Short label for pickers and legends: name, mode and state."""
    state = info.get("state", "?")
    mode = info.get("mode", "?")
    return f"{info.get('name', '?')} ({mode}, {state})"


def accuracy_flops_figure(series: list[dict], log_x: bool = False, show_solo: bool = True,
                          show_anytime: bool = True) -> go.Figure:
    """Accuracy vs cumulative FLOPs per sample: one point per ensemble prefix k, for one or several runs.

    Args:
        series: one dict per run: label, rows (prefix.csv rows), teacher (summary teacher dict or {}),
            anytime (summary anytime list or []).
        log_x: logarithmic FLOPs axis.
        show_solo: add each student's accuracy alone, at its own FLOPs (hollow markers).
        show_anytime: add the confidence early-exit curve (accuracy vs mean FLOPs spent).

    Returns:
        The figure; y in percent.
    """
    fig = go.Figure()
    for i, item in enumerate(series):
        color = COLORS[i % len(COLORS)]
        label = item["label"]
        rows = item.get("rows") or []
        teacher = item.get("teacher") or {}
        if rows and show_solo and any(r.get("solo_acc") is not None for r in rows):
            residual = item.get("mode") == "residual"  # later residual students are corrections, not classifiers
            fig.add_trace(go.Scatter(
                visible="legendonly" if residual else True,
                x=[r["student_flops"] for r in rows], y=[100 * (r.get("solo_acc") or 0) for r in rows],
                mode="markers", name=f"{label}: student k alone" if len(series) > 1 else "each student alone",
                marker={"size": 9, "color": "white", "line": {"color": color, "width": 2}, "symbol": "diamond"},
                legendrank=2,
                customdata=[[r["k"], r.get("arch", "")] for r in rows],
                hovertemplate=("student %{customdata[0]} alone: %{y:.2f}%<br>%{x:,.0f} FLOPs"
                               "<extra>" + label + "</extra>"),
            ))
        anytime = item.get("anytime") or []
        if show_anytime and anytime:
            fig.add_trace(go.Scatter(
                x=[a["mean_flops"] for a in anytime], y=[100 * a["acc"] for a in anytime], mode="lines+markers",
                name=f"{label}: early exit" if len(series) > 1 else "early exit (stop when confident)",
                line={"color": color, "dash": "dot", "width": 1.5}, marker={"size": 6, "color": color}, legendrank=3,
                customdata=[[a["confidence"]] for a in anytime],
                hovertemplate=("stop at confidence %{customdata[0]}: %{y:.2f}%<br>%{x:,.0f} FLOPs on average"
                               "<extra>" + label + "</extra>"),
            ))
        if rows:  # drawn last: on top of the other traces
            fig.add_trace(go.Scatter(
                x=[r["cumulative_flops"] for r in rows], y=[100 * r["prefix_acc"] for r in rows],
                mode="lines+markers+text", name=f"{label}: ensemble of first k" if len(series) > 1 else
                "ensemble of the first k students",
                text=[f"k={r['k']}" for r in rows], textposition="top left", textfont={"size": 11, "color": color},
                marker={"size": 10, "color": color}, line={"color": color, "width": 3}, legendrank=1,
                customdata=[[r["k"], 100 * (r.get("share_of_teacher") or 0), r.get("student_flops")] for r in rows],
                hovertemplate=("k=%{customdata[0]}: accuracy %{y:.2f}%<br>%{x:,.0f} FLOPs per sample"
                               "<br>%{customdata[1]:.2f}% of the teacher's FLOPs<extra>" + label + "</extra>"),
            ))
        if teacher.get("test_acc") is not None:
            fig.add_hline(y=100 * teacher["test_acc"], line={"color": color, "dash": "dash", "width": 1.5},
                          annotation_text=(f"teacher {teacher.get('arch', '')}: {100 * teacher['test_acc']:.2f}% "
                                           f"at {human_flops(teacher.get('flops'))} FLOPs"),
                          annotation_position="top left", annotation_font_color=color)
    fig.update_layout(
        xaxis_title="cumulative FLOPs per sample (students 1..k)", yaxis_title="test accuracy (%)",
        xaxis_type="log" if log_x else "linear", hovermode="closest", height=480,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        margin={"l": 60, "r": 20, "t": 40, "b": 50},
    )
    if not log_x:
        fig.update_xaxes(rangemode="tozero")
    fig.update_yaxes(range=_accuracy_range(series, show_anytime))
    return fig


def _accuracy_range(series: list[dict], show_anytime: bool) -> list[float]:
    """y range (%) that zooms on the ensembles, early-exit curves and teachers, so 96% vs 99% is visible."""
    values = []
    for item in series:
        values += [100 * r["prefix_acc"] for r in item.get("rows") or [] if r.get("prefix_acc") is not None]
        values += [100 * a["acc"] for a in (item.get("anytime") or []) if show_anytime]
        if (item.get("teacher") or {}).get("test_acc") is not None:
            values.append(100 * item["teacher"]["test_acc"])
    if not values:
        return [0.0, 100.0]
    low, high = min(values), max(values)
    pad = max(0.5, 0.08 * (high - low))
    return [max(0.0, low - pad), min(100.0, high + pad) + 0.3]


def epoch_frame(metrics: list[dict]) -> pd.DataFrame:
    """Epoch records of metrics.jsonl as a table: stage label, epoch, train loss, val accuracy (%)."""
    records = []
    for record in metrics:
        if record.get("event") != "epoch":
            continue
        stage = record.get("stage", "?")
        k = record.get("student", 0)
        label = "teacher" if stage == "teacher" else f"student {k}"
        records.append({"stage": label, "k": k, "epoch": record.get("epoch"),
                        "train loss": record.get("train_loss"),
                        "val accuracy": _pct(record.get("val_acc")),
                        "solo val accuracy": _pct(record.get("solo_val_acc"))})
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
    teacher_done = any(r.get("event") in ("teacher_done", "teacher_loaded") for r in metrics)
    students_done = {int(r["k"]) for r in metrics if r.get("event") == "student_done" and "k" in r}
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


def probabilities_figure(probs: list[float], class_names: list[str], highlight: int | None = None) -> go.Figure:
    """Bar chart of one prediction's class probabilities (in percent), the chosen class highlighted."""
    colors = ["#d62728" if i == highlight else "#1f77b4" for i in range(len(probs))]
    fig = go.Figure(go.Bar(x=list(class_names), y=[100 * p for p in probs], marker_color=colors,
                           text=[f"{100 * p:.0f}%" for p in probs], textposition="outside",
                           hovertemplate="%{x}: %{y:.1f}%<extra></extra>"))
    fig.update_layout(height=260, yaxis={"range": [0, 115], "title": "probability (%)", "showticklabels": False},
                      xaxis={"type": "category", "title": None}, margin={"l": 40, "r": 10, "t": 10, "b": 30})
    return fig


def prefix_predictions_frame(report: dict, class_names: list[str]) -> pd.DataFrame:
    """The Playground table: for each k, the ensemble's answer, each student's own vote and the FLOPs spent.

    Args:
        report: app.inference.DigitReport as a dict (prefix_probs, student_probs, cumulative_flops,
            share_of_teacher).
        class_names: the dataset's class names.
    """
    records = []
    for j, (prefix, solo) in enumerate(zip(report["prefix_probs"], report["student_probs"])):
        p_cls = max(range(len(prefix)), key=prefix.__getitem__)
        s_cls = max(range(len(solo)), key=solo.__getitem__)
        records.append({
            "k": j + 1,
            "ensemble 1..k says": class_names[p_cls],
            "ensemble confidence": f"{100 * prefix[p_cls]:.1f}%",
            "student k votes": class_names[s_cls],
            "student k confidence": f"{100 * solo[s_cls]:.1f}%",
            "cumulative FLOPs": human_flops(report["cumulative_flops"][j]),
            "% of teacher": percent(report["share_of_teacher"][j], 2),
        })
    return pd.DataFrame.from_records(records)
