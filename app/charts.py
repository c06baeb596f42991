"""Pure helpers for the app: run data (as `pkd.runs` reads it) -> plotly figures and pandas tables.

Nothing here imports Streamlit or touches files, so every function is unit-tested on plain dicts. Figures only
arrange numbers the library wrote (prefix.csv rows, summary.json, metrics.jsonl records, status.json).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pkd.runs import State

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
TABLE_COLUMNS = ("student", "model", "parameters", "its FLOPs", "FLOPs so far", "% of the teacher's FLOPs",
                 "alone", "together", "scale s_k")
# columns of the app's tables that hold percentages (0..100): shown with a % sign (st.column_config)
PERCENT_COLUMNS = frozenset({"% of the teacher's FLOPs", "alone", "together",
                             "teacher's accuracy", "final accuracy", "val accuracy", "test accuracy",
                             "solo val accuracy"})
COUNT_COLUMNS = frozenset({"parameters", "its FLOPs", "FLOPs so far", "FLOPs per image"})  # shown as 1,234,567
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
FINISHED = (State.DONE,)


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
            "student": int(row["k"]),
            "model": row.get("arch", ""),
            "parameters": row.get("params"),
            "its FLOPs": row.get("student_flops"),
            "FLOPs so far": row.get("cumulative_flops"),
            "% of the teacher's FLOPs": _pct(row.get("share_of_teacher")),
            "alone": _pct(row.get("solo_acc")),
            "together": _pct(row.get("prefix_acc")),
            # s_k of E_k = s_k * E_(k-1) + z_k; 1 for plain sums, blank where there is nothing before
            "scale s_k": f"{row['prev_scale']:.2f}" if int(row["k"]) > 1 and _number(row.get("prev_scale")) else "",
        })
    return pd.DataFrame.from_records(records, columns=list(TABLE_COLUMNS))


def _pct(value: Any) -> float | None:
    return None if value is None else round(100.0 * float(value), 2)


def table_csv(frame: pd.DataFrame) -> bytes:
    """CSV bytes of a table (for st.download_button)."""
    return frame.to_csv(index=False).encode("utf-8")


def runs_frame(infos: list[dict], locations: dict[str, str] | None = None,
               names: dict[str, str] | None = None) -> pd.DataFrame:
    """The Runs page table from Run.info() dicts (newest first as given); `problem` says why a run is broken.

    Args:
        infos: Run.info() dicts.
        locations: path -> "pretrained" or "runs folder".
        names: path -> the name to show (a sweep's trial as "sweep / trial-002"); default the run's name.
    """
    locations, names = locations or {}, names or {}
    records = []
    for info in infos:
        created = info.get("created")
        records.append({
            "run": names.get(info.get("path", ""), info.get("name")),
            "state": info.get("state"),
            "dataset": info.get("dataset"),
            "mode": info.get("mode"),
            "students": f"{info.get('k_done', 0)}/{info.get('k_planned', 0)}",
            "teacher's accuracy": _pct(info.get("teacher_acc")),
            "final accuracy": _pct(info.get("final_acc")),
            "% of the teacher's FLOPs": _pct(info.get("final_share")),
            "started": dt.datetime.fromtimestamp(created).strftime("%Y-%m-%d %H:%M") if created else "",
            "where": locations.get(info.get("path", ""), ""),
            "problem": info.get("problem") or "",
        })
    columns = ["run", "state", "dataset", "mode", "students", "teacher's accuracy", "final accuracy",
               "% of the teacher's FLOPs", "started", "where", "problem"]
    return pd.DataFrame.from_records(records, columns=columns)


def run_label(info: dict) -> str:
    """Short label for pickers and legends: name, mode and state."""
    state = info.get("state", "?")
    mode = info.get("mode", "?")
    return f"{info.get('name', '?')} ({mode}, {state})"


def accuracy_flops_figure(series: list[dict], log_x: bool = False, show_solo: bool = True,
                          show_anytime: bool = True) -> go.Figure:
    """Accuracy vs cumulative FLOPs per image: one labelled point per ensemble prefix, the teacher as a point at
    its own cost, for one or several runs; a second x axis on top gives FLOPs as % of the (first) teacher's.

    Args:
        series: one dict per run: label, rows (prefix.csv rows), teacher (summary teacher dict or {}),
            anytime (summary anytime list or []), val_fitted (summary anytime_val_fitted list, optional), mode,
            unit (optional: "image" or "clip", what one FLOPs figure is per).
        log_x: logarithmic FLOPs axis.
        show_solo: add each student's accuracy alone, at its own FLOPs (hollow markers).
        show_anytime: add the early-exit curves (accuracy vs mean FLOPs spent).

    Returns:
        The figure; y in percent.
    """
    fig = go.Figure()
    many = len(series) > 1
    for i, item in enumerate(series):
        color = COLORS[i % len(COLORS)]
        if show_solo:
            _add_solo(fig, item, color, many)
        if show_anytime:
            _add_anytime(fig, item, color, many)
            _add_val_fitted(fig, item, color, many)
        _add_prefixes(fig, item, color, many, label_points=i == 0, log_x=log_x)
        _add_teacher(fig, item, color, many)
    _layout(fig, series, log_x, show_anytime)
    return fig


def _name(item: dict, many: bool, what: str) -> str:
    return f"{item['label']}: {what}" if many else what


def _add_solo(fig: go.Figure, item: dict, color: str, many: bool) -> None:
    """Each student alone at its own FLOPs (hidden at first in residual mode: later students are corrections)."""
    rows = item.get("rows") or []
    if not any(r.get("solo_acc") is not None for r in rows):
        return
    fig.add_trace(go.Scatter(
        visible="legendonly" if item.get("mode") == "residual" else True,
        x=[r["student_flops"] for r in rows], y=[100 * (r.get("solo_acc") or 0) for r in rows],
        mode="markers", name=_name(item, many, "each student alone"), legendrank=4,
        marker={"size": 9, "color": "white", "line": {"color": color, "width": 2}, "symbol": "diamond"},
        customdata=[[r["k"], human_flops(r["student_flops"])] for r in rows],
        hovertemplate="student %{customdata[0]} alone: %{y:.2f}%<br>%{customdata[1]} FLOPs<extra></extra>",
    ))


def _add_anytime(fig: go.Figure, item: dict, color: str, many: bool) -> None:
    """The fixed-confidence early-exit curve: each image stops at the first prefix that is sure enough."""
    anytime = [a for a in item.get("anytime") or [] if _number(a.get("acc")) and _number(a.get("mean_flops"))]
    if not anytime:
        return
    fig.add_trace(go.Scatter(
        x=[a["mean_flops"] for a in anytime], y=[100 * a["acc"] for a in anytime], mode="lines+markers",
        name=_name(item, many, "early exit: stop when sure"), legendrank=2,
        line={"color": color, "dash": "dot", "width": 1.5}, marker={"size": 6, "color": color},
        customdata=[[a.get("confidence"), human_flops(a["mean_flops"])] for a in anytime],
        hovertemplate=("stop once %{customdata[0]} sure: %{y:.2f}%<br>%{customdata[1]} FLOPs on average"
                       "<extra></extra>"),
    ))


def val_fitted_points(items: Any) -> list[dict]:
    """The usable points of summary.json's `anytime_val_fitted` (older summaries have none; bad items dropped)."""
    if not isinstance(items, list):
        return []
    return [a for a in items if isinstance(a, dict) and _number(a.get("acc")) and 0 <= a["acc"] <= 1
            and _number(a.get("mean_flops")) and a["mean_flops"] > 0]


def _add_val_fitted(fig: go.Figure, item: dict, color: str, many: bool) -> None:
    """Early exit with one threshold fitted on validation per FLOP budget (MSDNet's protocol), shown on test."""
    points = val_fitted_points(item.get("val_fitted"))
    if not points:
        return
    fig.add_trace(go.Scatter(
        x=[a["mean_flops"] for a in points], y=[100 * a["acc"] for a in points], mode="lines+markers",
        name=_name(item, many, "early exit fitted on validation"), legendrank=3,
        line={"color": color, "dash": "dashdot", "width": 1.5}, opacity=0.7,
        marker={"size": 7, "color": color, "symbol": "square-open"},
        customdata=[[human_flops(a.get("budget")), human_flops(a["mean_flops"])] for a in points],
        hovertemplate=("budget %{customdata[0]} FLOPs: %{y:.2f}% on test<br>%{customdata[1]} FLOPs on average"
                       "<extra></extra>"),
    ))


def _add_prefixes(fig: go.Figure, item: dict, color: str, many: bool, label_points: bool, log_x: bool) -> None:
    """Students 1..k together for every k, each dot labelled with its accuracy (drawn after the curves: on top)."""
    rows = [r for r in item.get("rows") or [] if _number(r.get("prefix_acc"))]
    if not rows:
        return
    teacher = item.get("teacher") or {}
    extra = [(teacher["flops"], 100 * teacher["test_acc"])] if _number(teacher.get("flops")) and \
        _number(teacher.get("test_acc")) and teacher["flops"] > 0 else []
    fig.add_trace(go.Scatter(
        x=[r["cumulative_flops"] for r in rows], y=[100 * r["prefix_acc"] for r in rows],
        mode="lines+markers+text" if label_points else "lines+markers",
        name=_name(item, many, "the first students together"), legendrank=1,
        text=[f"{100 * r['prefix_acc']:.2f}%" for r in rows],
        textposition=label_positions([(r["cumulative_flops"], 100 * r["prefix_acc"]) for r in rows], extra, log_x),
        textfont={"size": 14, "color": color}, marker={"size": 11, "color": color}, line={"color": color, "width": 3},
        customdata=[[students_text(r["k"]), human_flops(r["cumulative_flops"]),
                     100 * (r.get("share_of_teacher") or 0)] for r in rows],
        hovertemplate=(f"%{{customdata[0]}}: %{{y:.2f}}%<br>%{{customdata[1]}} FLOPs per {item.get('unit', 'image')}"
                       "<br>%{customdata[2]:.2f}% of the teacher's FLOPs<extra></extra>"),
    ))


def _add_teacher(fig: go.Figure, item: dict, color: str, many: bool) -> None:
    """The teacher: a dashed line at its accuracy and a star at its own cost (the students' target, far right)."""
    teacher = item.get("teacher") or {}
    if not _number(teacher.get("test_acc")):
        return
    acc = 100 * teacher["test_acc"]
    fig.add_hline(y=acc, line={"color": color, "dash": "dash", "width": 1}, annotation_text=(
        f"{item['label'] + ': ' if many else ''}teacher's accuracy {acc:.2f}%"), annotation_position="top left",
        annotation_font={"color": color, "size": 13})
    if _number(teacher.get("flops")) and teacher["flops"] > 0:
        fig.add_trace(go.Scatter(
            x=[teacher["flops"]], y=[acc], mode="markers+text", name=_name(item, many, "teacher"), legendrank=0,
            text=[f"teacher: {human_flops(teacher['flops'])} FLOPs"], textposition="top left",
            textfont={"size": 14, "color": color}, marker={"size": 18, "color": color, "symbol": "star"},
            hovertemplate=(f"teacher {teacher.get('arch', '')}: %{{y:.2f}}%<br>{human_flops(teacher['flops'])} "
                           f"FLOPs per {item.get('unit', 'image')}<extra></extra>"),
        ))


def label_positions(points: list[tuple[float, float]], others: list[tuple[float, float]], log_x: bool) -> list[str]:
    """Where each dot's label goes: below right, or above left when the dot before is close by (its label would
    overlap); "close" is within 8% of the x span (in log space on a log axis) and 12% of the y span."""
    every = [(math.log10(x) if log_x else x, y) for x, y in points + others if _number(x) and x > 0]
    if len(every) < 2:
        return ["bottom right"] * len(points)
    xs, ys = [p[0] for p in every], [p[1] for p in every]
    x_span, y_span = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    out, before = [], None
    for x, y in points:
        here = (math.log10(x) if log_x and x > 0 else x, y)
        close = before is not None and abs(here[0] - before[0]) < 0.08 * x_span and abs(here[1] - before[1]) < \
            0.12 * y_span
        out.append("top left" if close and out[-1] == "bottom right" else "bottom right")
        before = here
    return out


def students_text(k: int) -> str:
    """'student 1' or 'students 1–3' (never 'k=3': k also reads as 'thousand')."""
    return "student 1" if int(k) == 1 else f"students 1–{int(k)}"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _layout(fig: go.Figure, series: list[dict], log_x: bool, show_anytime: bool) -> None:
    """Axes with units: FLOPs in words below, % of the first run's teacher on top; y zoomed on the points."""
    xs = [x for trace in fig.data for x in (trace.x or []) if _number(x) and x > 0]
    low, high = (min(xs), max(xs)) if xs else (1.0, 10.0)
    x_range = [math.log10(low / 1.6), math.log10(high * 1.6)] if log_x else [0.0, high * 1.08]
    values, texts = flops_ticks(low / 1.6 if log_x else 0.0, high * 1.6 if log_x else high * 1.08, log_x)
    fig.update_layout(
        xaxis={"title": {"text": f"FLOPs per {series[0].get('unit', 'image') if series else 'image'} of the "
                                 "students used" + (" (log scale)" if log_x else "")},
               "type": "log" if log_x else "linear", "range": x_range, "tickvals": values, "ticktext": texts,
               "tickangle": 0},
        yaxis={"title": {"text": "test accuracy (%)"}, "range": _accuracy_range(series, show_anytime),
               "ticksuffix": "%"},
        hovermode="closest", height=560, font={"size": 14},
        legend={"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0},
        margin={"l": 70, "r": 30, "t": 70, "b": 40},
    )
    teacher_flops = next((s["teacher"]["flops"] for s in series[:1] if _number((s.get("teacher") or {}).get(
        "flops")) and s["teacher"]["flops"] > 0), None)
    if teacher_flops:
        shares, labels = share_ticks(x_range, log_x, teacher_flops)
        fig.add_trace(go.Scatter(x=[low, high], y=[None, None], xaxis="x2", showlegend=False, hoverinfo="skip"))
        fig.update_layout(xaxis2={
            "title": {"text": "the same, as % of the teacher's FLOPs", "standoff": 4}, "overlaying": "x",
            "side": "top", "matches": "x", "type": "log" if log_x else "linear", "tickvals": shares,
            "ticktext": labels, "showgrid": False})


def flops_ticks(low: float, high: float, log_x: bool) -> tuple[list[float], list[str]]:
    """Tick positions and labels with units ('200 thousand', '1 million') for a FLOPs axis from low to high."""
    if log_x:
        decades = math.log10(high / max(low, 1e-9))
        steps = (1, 2, 5) if decades <= 1.6 else (1, 3) if decades <= 4 else (1,)  # at most ~8 labels
        values = [m * 10 ** e for e in range(int(math.floor(math.log10(max(low, 1e-9)))),
                                             int(math.ceil(math.log10(high))) + 1) for m in steps]
        values = [v for v in values if low <= v <= high]
    else:
        step = _nice_step(high / 6)
        values = [i * step for i in range(int(high // step) + 1)]
    return values, [human_flops(v).replace(" ", "<br>", 1) if v else "0" for v in values]  # two short lines


def share_ticks(x_range: list[float], log_x: bool, teacher_flops: float) -> tuple[list[float], list[str]]:
    """Tick positions (in FLOPs) and labels ('1%', '25%') of the top axis: % of the teacher's FLOPs."""
    low, high = (10 ** x_range[0], 10 ** x_range[1]) if log_x else tuple(x_range)
    if log_x:
        shares = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500]
    else:
        step = _nice_step(100 * high / teacher_flops / 6)
        shares = [i * step for i in range(int(100 * high / teacher_flops // step) + 1)]
    kept = [s for s in shares if low <= s / 100 * teacher_flops <= high]
    return [s / 100 * teacher_flops for s in kept], [f"{s:g}%" for s in kept]


def _nice_step(raw: float) -> float:
    """The 1, 2 or 5 times a power of ten just above `raw` (a readable tick step)."""
    if raw <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _accuracy_range(series: list[dict], show_anytime: bool) -> list[float]:
    """y range (%) that zooms on the ensembles, early-exit curves and teachers, so 96% vs 99% is visible."""
    values = []
    for item in series:
        values += [100 * r["prefix_acc"] for r in item.get("rows") or [] if _number(r.get("prefix_acc"))]
        if show_anytime:
            values += [100 * a["acc"] for a in (item.get("anytime") or []) if _number(a.get("acc"))]
            values += [100 * a["acc"] for a in val_fitted_points(item.get("val_fitted"))]
        if _number((item.get("teacher") or {}).get("test_acc")):
            values.append(100 * item["teacher"]["test_acc"])
    if not values:
        return [0.0, 100.0]
    low, high = min(values), max(values)
    pad = max(0.5, 0.1 * (high - low))
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
    """The Playground table: for each number of students, what they say together, the last one's own vote (alone)
    and the FLOPs spent.

    Args:
        report: app.inference.DigitReport as a dict (prefix_probs, student_probs, cumulative_flops,
            share_of_teacher).
        class_names: the dataset's class names.
    """
    records = []
    for j, (prefix, solo) in enumerate(zip(report["prefix_probs"], report["student_probs"])):
        p_cls, s_cls = _top(prefix), _top(solo)
        records.append({
            "students used": students_text(j + 1),
            "together they say": class_names[p_cls],
            "confidence": f"{100 * prefix[p_cls]:.1f}%",
            "last student's own vote (alone)": class_names[s_cls],
            "its own confidence": f"{100 * solo[s_cls]:.1f}%",
            "FLOPs so far": human_flops(report["cumulative_flops"][j]),
            "% of the teacher's": percent(report["share_of_teacher"][j], 2),
        })
    return pd.DataFrame.from_records(records)


def _top(probs: list[float]) -> int:
    return max(range(len(probs)), key=probs.__getitem__)


def step_frame(report: dict, k: int, class_names: list[str]) -> pd.DataFrame:
    """The Playground's step-through: one row per student added (1..k) with the answer so far, how sure it is,
    what changed, and the cost so far.

    Args:
        report: app.inference.DigitReport as a dict.
        k: students added so far (1..K).
        class_names: the dataset's class names.
    """
    records, before = [], None
    for j in range(k):
        probs = report["prefix_probs"][j]
        cls = _top(probs)
        records.append({
            "step": f"add student {j + 1}",
            "answer so far": class_names[cls],
            "confidence": f"{100 * probs[cls]:.1f}%",
            "what changed": change_text(before, (cls, probs[cls]), class_names),
            "added FLOPs": human_flops(report["cumulative_flops"][j] - (report["cumulative_flops"][j - 1] if j
                                                                          else 0)),
            "FLOPs so far": human_flops(report["cumulative_flops"][j]),
            "% of the teacher's": percent(report["share_of_teacher"][j], 2),
        })
        before = (cls, probs[cls])
    return pd.DataFrame.from_records(records)


def change_text(before: tuple[int, float] | None, after: tuple[int, float], class_names: list[str]) -> str:
    """'first answer', 'changed its mind: 6 → 7', 'more sure (+12.3 points)' or 'less sure (-3.0 points)'."""
    if before is None:
        return "first answer"
    if before[0] != after[0]:
        return f"changed its mind: {class_names[before[0]]} → {class_names[after[0]]}"
    points = 100 * (after[1] - before[1])
    if abs(points) < 0.05:
        return "same answer, as sure"
    return f"same answer, {'more' if points > 0 else 'less'} sure ({points:+.1f} points)"
