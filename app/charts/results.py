"""The Results page's chart and table: accuracy vs cumulative FLOPs of every ensemble prefix (with the teacher, the
early-exit curves and other runs overlaid), and the per-student table of one run.

Nothing here imports Streamlit or touches files, so every function is unit-tested on plain dicts. Figures only
arrange numbers the library wrote (prefix.csv rows, summary.json). The Train page draws the same figure live.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from app.charts.format import COLORS, flops_ticks, human_flops, is_number, pct, share_ticks, students_text
from pkd.runs.schema import AnytimePoint, PrefixRow, Summary, TeacherFigures, ValFittedPoint, VideoFigures

TABLE_COLUMNS = ("student", "model", "parameters", "its FLOPs", "FLOPs so far", "% of the teacher's FLOPs",
                 "alone", "together", "scale s_k")


def prefix_frame(rows: list[dict], residual: bool = True) -> pd.DataFrame:
    """The per-student table of one run (one row per prefix k), with display column names.

    Args:
        rows: prefix.csv rows (k, arch, params, student_flops, cumulative_flops, share_of_teacher, solo_acc,
            prefix_acc, prev_scale).
        residual: a residual run; independent students have no scale s_k, so that column is left out.

    Returns:
        DataFrame with TABLE_COLUMNS (less "scale s_k" unless residual); accuracies and shares in percent (0..100).
    """
    records = []
    for row in rows:
        records.append({
            "student": int(row["k"]),
            "model": row.get("arch", ""),
            "parameters": row.get("params"),
            "its FLOPs": row.get(PrefixRow.STUDENT_FLOPS),
            "FLOPs so far": row.get(PrefixRow.CUMULATIVE_FLOPS),
            "% of the teacher's FLOPs": pct(row.get(PrefixRow.SHARE_OF_TEACHER)),
            "alone": pct(row.get(PrefixRow.SOLO_ACC)),
            "together": pct(row.get(PrefixRow.PREFIX_ACC)),
            # s_k of E_k = s_k * E_(k-1) + z_k; 1 for plain sums, blank where there is nothing before
            "scale s_k": (f"{row[PrefixRow.PREV_SCALE]:.2f}"
                          if int(row["k"]) > 1 and is_number(row.get(PrefixRow.PREV_SCALE)) else ""),
        })
    frame = pd.DataFrame.from_records(records, columns=list(TABLE_COLUMNS))
    return frame if residual else frame.drop(columns=["scale s_k"])


VIDEO_COLUMNS = ("who", "digit and motion", "digit identity", "changes when reversed")


def video_frame(teacher: dict, rows: list[dict], video: dict) -> pd.DataFrame:
    """A clip run's teacher and prefixes 1..K on digit-and-motion (prefix.csv / the teacher's test accuracy), digit
    identity and the reversal test (summary.json's "video"), as percentages."""
    digit, change = video.get(VideoFigures.PREFIX_DIGIT_ACC) or [], video.get(VideoFigures.PREFIX_REVERSAL_CHANGE) or []
    records = [{"who": "teacher", "digit and motion": pct(teacher.get(TeacherFigures.TEST_ACC)),
                "digit identity": pct(video.get(VideoFigures.TEACHER_DIGIT_ACC)),
                "changes when reversed": pct(video.get(VideoFigures.TEACHER_REVERSAL_CHANGE))}]
    for i, row in enumerate(rows):
        records.append({"who": students_text(row[PrefixRow.K]), "digit and motion": pct(row.get(PrefixRow.PREFIX_ACC)),
                        "digit identity": pct(digit[i]) if i < len(digit) else None,
                        "changes when reversed": pct(change[i]) if i < len(change) else None})
    return pd.DataFrame.from_records(records, columns=list(VIDEO_COLUMNS))


def noise_frame(tests: list) -> pd.DataFrame:
    """Each prefix k vs the teacher (pkd.stats.McNemar per k): the gap in points, the samples only one gets right,
    p and the verdict words."""
    from pkd.stats import describe

    return pd.DataFrame.from_records([{
        "students": students_text(k), "vs the teacher": describe(t.diff, t.verdict),
        "only the students right": t.a_only, "only the teacher right": t.b_only, "p (McNemar)": float(f"{t.p_value:.3g}"),
    } for k, t in enumerate(tests, start=1)])


def table_csv(frame: pd.DataFrame) -> bytes:
    """CSV bytes of a table (for st.download_button)."""
    return frame.to_csv(index=False).encode("utf-8")


def run_series(label: str, rows: list[dict], summary: dict, teacher: dict | None = None, unit: str = "image",
               val_fitted: Any = None, seeds: list | None = None) -> dict:
    """One run as accuracy_flops_figure draws it (one item of its `series`).

    Args:
        label: the run's name in legends.
        rows: its prefix.csv rows.
        summary: its summary.json ({} while it trains).
        teacher: the teacher dict to draw; default summary.json's.
        unit: what one FLOPs figure is per: "image" or "clip".
        val_fitted: summary.json's anytime_val_fitted to draw, or None for no such curve.
        seeds: when the run is a seed group's member, the group's pkd.groups.PrefixSpread per k (a band of
            mean ± SE over the seeds is drawn around its curve), else None.
    """
    return {"label": label, "rows": rows, "teacher": summary.get("teacher", {}) if teacher is None else teacher,
            Summary.ANYTIME: summary.get(Summary.ANYTIME, []), "mode": summary.get(Summary.MODE), "unit": unit,
            "val_fitted": val_fitted, "seeds": seeds}


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
    teacher_labels = _teacher_labels(series, many)
    for i, item in enumerate(series):
        color = COLORS[i % len(COLORS)]
        if show_solo:
            _add_solo(fig, item, color, many)
        if show_anytime:
            _add_anytime(fig, item, color, many)
            _add_val_fitted(fig, item, color, many)
        _add_seed_band(fig, item, color, many)
        _add_prefixes(fig, item, color, many, label_points=i == 0, log_x=log_x)
        _add_teacher(fig, item, color, many, teacher_labels.get(i))
    _layout(fig, series, log_x, show_anytime)
    return fig


TEACHER_LABEL_PLACES = ("top left", "bottom left", "top center", "bottom center")  # overlaid runs' labels apart


def _teacher_labels(series: list[dict], many: bool) -> dict[int, tuple[str, str]]:
    """The text and place of each run's teacher-accuracy label: runs whose teachers score the same (to 0.01%)
    share one label naming them all; different accuracies get different places, so no two labels overlap."""
    groups: dict[float, list[int]] = {}
    for i, item in enumerate(series):
        acc = (item.get("teacher") or {}).get(TeacherFigures.TEST_ACC)
        if is_number(acc):
            groups.setdefault(round(100 * acc, 2), []).append(i)
    out = {}
    for place, (acc, members) in enumerate(groups.items()):
        names = ", ".join(series[i]["label"] for i in members)
        out[members[0]] = (f"{names + ': ' if many else ''}teacher's accuracy {acc:.2f}%",
                           TEACHER_LABEL_PLACES[place % len(TEACHER_LABEL_PLACES)])
    return out


def _name(item: dict, many: bool, what: str) -> str:
    return f"{item['label']}: {what}" if many else what


def _add_solo(fig: go.Figure, item: dict, color: str, many: bool) -> None:
    """Each student alone at its own FLOPs (hidden at first in residual mode: later students are corrections)."""
    rows = item.get("rows") or []
    if not any(r.get(PrefixRow.SOLO_ACC) is not None for r in rows):
        return
    fig.add_trace(go.Scatter(
        visible="legendonly" if item.get("mode") == "residual" else True,
        x=[r[PrefixRow.STUDENT_FLOPS] for r in rows], y=[100 * (r.get(PrefixRow.SOLO_ACC) or 0) for r in rows],
        mode="markers", name=_name(item, many, "each student alone"), legendrank=4,
        marker={"size": 9, "color": "white", "line": {"color": color, "width": 2}, "symbol": "diamond"},
        customdata=[[r["k"], human_flops(r[PrefixRow.STUDENT_FLOPS])] for r in rows],
        hovertemplate="student %{customdata[0]} alone: %{y:.2f}%<br>%{customdata[1]} FLOPs<extra></extra>",
    ))


def _add_anytime(fig: go.Figure, item: dict, color: str, many: bool) -> None:
    """The fixed-confidence early-exit curve: each image stops at the first prefix that is sure enough."""
    anytime = [a for a in item.get(Summary.ANYTIME) or [] if is_number(a.get(AnytimePoint.ACC)) and
               is_number(a.get(AnytimePoint.MEAN_FLOPS))]
    if not anytime:
        return
    fig.add_trace(go.Scatter(
        x=[a[AnytimePoint.MEAN_FLOPS] for a in anytime], y=[100 * a[AnytimePoint.ACC] for a in anytime],
        mode="lines+markers",
        name=_name(item, many, "early exit: stop when sure"), legendrank=2,
        line={"color": color, "dash": "dot", "width": 1.5}, marker={"size": 6, "color": color},
        customdata=[[a.get(AnytimePoint.CONFIDENCE), human_flops(a[AnytimePoint.MEAN_FLOPS])] for a in anytime],
        hovertemplate=("stop once %{customdata[0]} sure: %{y:.2f}%<br>%{customdata[1]} FLOPs on average"
                       "<extra></extra>"),
    ))


def val_fitted_points(items: Any) -> list[dict]:
    """The points of summary.json's `anytime_val_fitted` that a log-FLOPs axis can draw (older summaries have none).
    Their fields were checked when the run read its summary (pkd.runs.validate: a summary with a bad point is a
    broken run, never drawn); a mean of 0 FLOPs passes that check but has no place on a log axis."""
    return [a for a in items or [] if a[ValFittedPoint.MEAN_FLOPS] > 0]


def _add_val_fitted(fig: go.Figure, item: dict, color: str, many: bool) -> None:
    """Early exit with one threshold fitted on validation per FLOP budget (MSDNet's protocol), shown on test."""
    points = val_fitted_points(item.get("val_fitted"))
    if not points:
        return
    fig.add_trace(go.Scatter(
        x=[a[ValFittedPoint.MEAN_FLOPS] for a in points], y=[100 * a[ValFittedPoint.ACC] for a in points],
        mode="lines+markers",
        name=_name(item, many, "early exit fitted on validation"), legendrank=3,
        line={"color": color, "dash": "dashdot", "width": 1.5}, opacity=0.7,
        marker={"size": 7, "color": color, "symbol": "square-open"},
        customdata=[[human_flops(a.get(ValFittedPoint.BUDGET)), human_flops(a[ValFittedPoint.MEAN_FLOPS])]
                    for a in points],
        hovertemplate=("budget %{customdata[0]} FLOPs: %{y:.2f}% on test<br>%{customdata[1]} FLOPs on average"
                       "<extra></extra>"),
    ))


def _add_seed_band(fig: go.Figure, item: dict, color: str, many: bool) -> None:
    """A seed group member's band: students 1..k together, mean ± SE over the group's seeds, at each k's FLOPs
    (drawn only where some k rests on two seeds or more: one seed has no spread to show)."""
    spreads = [p for p in item.get("seeds") or [] if p.n > 0]
    if not any(p.n > 1 for p in spreads):
        return
    xs = [p.cumulative_flops for p in spreads]
    upper = [100 * (p.test.mean + p.test.se) for p in spreads]
    lower = [100 * (p.test.mean - p.test.se) for p in spreads]
    seeds = max(p.n for p in spreads)
    fig.add_trace(go.Scatter(
        x=xs + xs[::-1], y=upper + lower[::-1], mode="lines", fill="toself", fillcolor=color, opacity=0.18,
        line={"width": 0}, hoverinfo="skip", legendrank=5,
        name=_name(item, many, f"students together over its {seeds} seeds: mean ± SE")))
    fig.add_trace(go.Scatter(
        x=xs, y=[100 * p.test.mean for p in spreads], mode="lines", line={"color": color, "width": 1, "dash": "dash"},
        showlegend=False, name=_name(item, many, "mean over the seeds"),
        customdata=[[students_text(p.k), 100 * p.test.se, p.n] for p in spreads],
        hovertemplate="%{customdata[0]}: %{y:.2f}% ± %{customdata[1]:.2f} (mean ± SE of %{customdata[2]} seeds)"
                      "<extra></extra>"))


def _add_prefixes(fig: go.Figure, item: dict, color: str, many: bool, label_points: bool, log_x: bool) -> None:
    """Students 1..k together for every k, each dot labelled with its accuracy (drawn after the curves: on top)."""
    rows = [r for r in item.get("rows") or [] if is_number(r.get(PrefixRow.PREFIX_ACC))]
    if not rows:
        return
    teacher = item.get("teacher") or {}
    extra = [(teacher["flops"], 100 * teacher[TeacherFigures.TEST_ACC])] if is_number(teacher.get("flops")) and \
        is_number(teacher.get(TeacherFigures.TEST_ACC)) and teacher["flops"] > 0 else []
    fig.add_trace(go.Scatter(
        x=[r[PrefixRow.CUMULATIVE_FLOPS] for r in rows], y=[100 * r[PrefixRow.PREFIX_ACC] for r in rows],
        mode="lines+markers+text" if label_points else "lines+markers",
        name=_name(item, many, "the first students together"), legendrank=1,
        text=[f"{100 * r[PrefixRow.PREFIX_ACC]:.2f}%" for r in rows],
        textposition=label_positions([(r[PrefixRow.CUMULATIVE_FLOPS], 100 * r[PrefixRow.PREFIX_ACC]) for r in rows],
                                     extra, log_x),
        textfont={"size": 14, "color": color}, marker={"size": 11, "color": color}, line={"color": color, "width": 3},
        customdata=[[students_text(r["k"]), human_flops(r[PrefixRow.CUMULATIVE_FLOPS]),
                     100 * (r.get(PrefixRow.SHARE_OF_TEACHER) or 0)] for r in rows],
        hovertemplate=(f"%{{customdata[0]}}: %{{y:.2f}}%<br>%{{customdata[1]}} FLOPs per {item.get('unit', 'image')}"
                       "<br>%{customdata[2]:.2f}% of the teacher's FLOPs<extra></extra>"),
    ))


def _add_teacher(fig: go.Figure, item: dict, color: str, many: bool, label: tuple[str, str] | None) -> None:
    """The teacher: a dashed line at its accuracy (with its label (text, place), unless another run's label already
    names it) and a star at its own cost (the students' target, far right)."""
    teacher = item.get("teacher") or {}
    if not is_number(teacher.get(TeacherFigures.TEST_ACC)):
        return
    acc = 100 * teacher[TeacherFigures.TEST_ACC]
    named = {"annotation_text": label[0], "annotation_position": label[1],
             "annotation_font": {"color": color, "size": 13}} if label else {}
    fig.add_hline(y=acc, line={"color": color, "dash": "dash", "width": 1}, **named)
    if is_number(teacher.get("flops")) and teacher["flops"] > 0:
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
    every = [(math.log10(x) if log_x else x, y) for x, y in points + others if is_number(x) and x > 0]
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


def _layout(fig: go.Figure, series: list[dict], log_x: bool, show_anytime: bool) -> None:
    """Axes with units: FLOPs in words below, % of the first run's teacher on top; y zoomed on the points."""
    xs = [x for trace in fig.data for x in (trace.x or []) if is_number(x) and x > 0]
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
    teacher_flops = next((s["teacher"]["flops"] for s in series[:1] if is_number((s.get("teacher") or {}).get(
        "flops")) and s["teacher"]["flops"] > 0), None)
    if teacher_flops:
        shares, labels = share_ticks(x_range, log_x, teacher_flops)
        fig.add_trace(go.Scatter(x=[low, high], y=[None, None], xaxis="x2", showlegend=False, hoverinfo="skip"))
        fig.update_layout(xaxis2={
            "title": {"text": "the same, as % of the teacher's FLOPs", "standoff": 4}, "overlaying": "x",
            "side": "top", "matches": "x", "type": "log" if log_x else "linear", "tickvals": shares,
            "ticktext": labels, "showgrid": False})


def _accuracy_range(series: list[dict], show_anytime: bool) -> list[float]:
    """y range (%) that zooms on the ensembles, early-exit curves and teachers, so 96% vs 99% is visible."""
    values = []
    for item in series:
        values += [100 * r[PrefixRow.PREFIX_ACC] for r in item.get("rows") or []
                   if is_number(r.get(PrefixRow.PREFIX_ACC))]
        if show_anytime:
            values += [100 * a["acc"] for a in (item.get(Summary.ANYTIME) or []) if is_number(a.get("acc"))]
            values += [100 * a["acc"] for a in val_fitted_points(item.get("val_fitted"))]
        if is_number((item.get("teacher") or {}).get(TeacherFigures.TEST_ACC)):
            values.append(100 * item["teacher"][TeacherFigures.TEST_ACC])
    if not values:
        return [0.0, 100.0]
    low, high = min(values), max(values)
    pad = max(0.5, 0.1 * (high - low))
    return [max(0.0, low - pad), min(100.0, high + pad) + 0.3]
