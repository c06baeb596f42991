"""The Compare page's table and charts: runs' differing settings and figures (pkd.compare) -> a pandas table, and
plotly figures of prefix curves grouped by one setting (with bands), the (run, k) Pareto plane, parallel
coordinates and a per-sample diff of two prefixes.

Nothing here imports Streamlit or touches files, so every function is unit-tested on plain values.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.charts.format import COLORS, flops_ticks, human_flops, is_number, students_text

PERCENT_FIGURES = ("test accuracy", "val accuracy", "% of the teacher's FLOPs", "teacher's accuracy",
                   "anytime AUC (test)")
DOMINATED = "#bbbbbb"
FRONT = "#111111"


def table_frame(rows: list[dict]) -> pd.DataFrame:
    """The run table: one row per run, shares shown as percentages (0..100, two decimals), lists as text."""
    frame = pd.DataFrame.from_records(rows)
    for column in frame.columns:
        if column in PERCENT_FIGURES:
            frame[column] = [None if not is_number(v) else round(100 * v, 2) for v in frame[column]]
        elif frame[column].map(lambda v: isinstance(v, (list, dict, tuple))).any():
            frame[column] = frame[column].map(str)
    return frame


def filter_frame(frame: pd.DataFrame, text: str) -> pd.DataFrame:
    """The rows where any cell contains every word of `text` (case-insensitive); all rows for empty text."""
    words = text.lower().split()
    if not words:
        return frame
    cells = frame.apply(lambda row: " ".join(str(v) for v in row).lower(), axis=1)
    keep = cells.map(lambda line: all(word in line for word in words))
    return frame[keep]


def group_label(setting: str, value: Any, n: int) -> str:
    return f"{setting} = {value} ({n} run{'s' if n != 1 else ''})"


def groups_figure(groups: list, setting: str, x: str = "flops", log_x: bool = True) -> go.Figure:
    """Test accuracy of students 1..k per group of runs sharing one value of `setting`: the group's mean, a band of
    mean ± SE where a group has several runs (seeds), x either the mean cumulative FLOPs or k.

    Args:
        groups: pkd.side_by_side.Group items (value, names, prefixes: pkd.groups.PrefixSpread per k).
        x: "flops" or "k".
    """
    fig = go.Figure()
    for i, group in enumerate(groups):
        color = COLORS[i % len(COLORS)]
        ks, acc = [p.k for p in group.prefixes], [p.test for p in group.prefixes]
        flops = [p.cumulative_flops for p in group.prefixes]
        xs = flops if x == "flops" else ks
        means = [100 * s.mean for s in acc]
        name = group_label(setting, group.value, len(group.names))
        if len(group.names) > 1:
            upper = [100 * (s.mean + s.se) for s in acc]
            lower = [100 * (s.mean - s.se) for s in acc]
            fig.add_trace(go.Scatter(x=xs + xs[::-1], y=upper + lower[::-1], mode="lines", fill="toself", fillcolor=color,
                                     opacity=0.2, line={"width": 0}, hoverinfo="skip", showlegend=False,
                                     name=f"{name}: mean ± SE"))
        fig.add_trace(go.Scatter(
            x=xs, y=means, mode="lines+markers", name=name, line={"color": color, "width": 2},
            marker={"size": 7, "color": color},
            customdata=[[students_text(k), 100 * s.se, s.n, human_flops(f)] for k, s, f in zip(ks, acc, flops)],
            hovertemplate=("%{customdata[0]}: %{y:.2f}% ± %{customdata[1]:.2f} (mean ± SE of %{customdata[2]} "
                           "runs)<br>%{customdata[3]} FLOPs<extra>" + name + "</extra>")))
    _flops_axis(fig, [p.cumulative_flops for g in groups for p in g.prefixes], log_x) if x == "flops" else fig.update_xaxes(
        title_text="students used together (k)", dtick=1)
    fig.update_layout(yaxis={"title": {"text": "test accuracy (%)"}, "ticksuffix": "%"}, height=460,
                      legend={"orientation": "h", "y": -0.22}, margin={"t": 30}, font={"size": 14})
    return fig


def groups_frame(groups: list, setting: str) -> pd.DataFrame:
    """Per k, each group's test accuracy as 'mean ± SE (n runs)' in percent (pkd.stats.format_spread)."""
    from pkd.stats import format_spread

    ks = sorted({p.k for g in groups for p in g.prefixes})
    records = []
    for k in ks:
        row = {"students": students_text(k)}
        for g in groups:
            found = next((p for p in g.prefixes if p.k == k), None)
            row[f"{setting} = {g.value}"] = "" if found is None else f"{format_spread(found.test)}% (n = {found.n})"
        records.append(row)
    return pd.DataFrame.from_records(records)


def pareto_figure(points: list[dict], log_x: bool = True) -> go.Figure:
    """Every (run, k) point at (cumulative FLOPs, test accuracy): the Pareto front in black and joined, the points
    it dominates in grey (a cheaper-or-equal point is at least as accurate)."""
    fig = go.Figure()
    for on, color, name in ((False, DOMINATED, "dominated"), (True, FRONT, "Pareto front")):
        chosen = sorted((p for p in points if p["front"] == on), key=lambda p: (p["flops"], -p["acc"]))
        if not chosen:
            continue
        fig.add_trace(go.Scatter(
            x=[p["flops"] for p in chosen], y=[100 * p["acc"] for p in chosen],
            mode="lines+markers" if on else "markers", name=name,
            line={"color": color, "width": 1.5, "shape": "hv"} if on else None,
            marker={"size": 9 if on else 7, "color": color, "symbol": "diamond" if on else "circle"},
            customdata=[[p["run"], students_text(p["k"]), human_flops(p["flops"])] for p in chosen],
            hovertemplate="%{customdata[0]}, %{customdata[1]}: %{y:.2f}%<br>%{customdata[2]} FLOPs<extra></extra>"))
    _flops_axis(fig, [p["flops"] for p in points], log_x)
    fig.update_layout(yaxis={"title": {"text": "test accuracy (%)"}, "ticksuffix": "%"}, height=460,
                      legend={"orientation": "h", "y": -0.22}, margin={"t": 30}, font={"size": 14})
    return fig


def _flops_axis(fig: go.Figure, values: list[float], log_x: bool) -> None:
    xs = [v for v in values if is_number(v) and v > 0]
    if not xs:
        return
    low, high = (min(xs) / 1.5, max(xs) * 1.5) if log_x else (0.0, max(xs) * 1.08)
    ticks, texts = flops_ticks(low, high, log_x)
    fig.update_xaxes(title_text="FLOPs per sample of the students used" + (" (log scale)" if log_x else ""),
                     type="log" if log_x else "linear",
                     range=[math.log10(low), math.log10(high)] if log_x else [low, high],
                     tickvals=ticks, ticktext=texts, tickangle=0)


def axis_values(values: list[Any]) -> tuple[list[float], list | None, list | None]:
    """One parallel-coordinates axis: numbers as they are; anything else (text, booleans, None) as the position of
    its value among the sorted distinct values, with those values as the tick labels."""
    if all(is_number(v) for v in values):
        return [float(v) for v in values], None, None
    distinct = sorted({str(v) for v in values})
    return [float(distinct.index(str(v))) for v in values], list(range(len(distinct))), distinct


def parallel_figure(rows: list[dict], columns: list[str], color_by: str | None = None,
                    log_axes: tuple = (), flipped: tuple = ()) -> go.Figure:
    """One line per run across `columns` (settings and figures of the run table).

    Args:
        rows: the run table's rows (pkd.compare.run_table).
        columns: the axes, left to right.
        color_by: a numeric column the lines are coloured by (a colour bar beside).
        log_axes: columns drawn on a log10 scale (positive numbers only; the ticks give the values themselves).
        flipped: columns drawn upside down (high values at the bottom).
    """
    dims = []
    for column in columns:
        values, ticks, texts = axis_values([row.get(column) for row in rows])
        label = column
        if column in log_axes and ticks is None and values and min(values) > 0:
            values = [math.log10(v) for v in values]
            ticks = _log_ticks(min(values), max(values))
            texts = [_short(10 ** t) for t in ticks]
            label += " (log)"
        low, high = (min(values), max(values)) if values else (0.0, 1.0)
        if low == high:
            low, high = low - 0.5, high + 0.5
        dim = {"label": label + (" ↓" if column in flipped else ""), "values": values,
               "range": [high, low] if column in flipped else [low, high]}
        if ticks is not None:
            dim.update(tickvals=ticks, ticktext=texts)
        dims.append(dim)
    line: dict = {"color": COLORS[0]}
    if color_by is not None:
        colors, _, _ = axis_values([row.get(color_by) for row in rows])
        line = {"color": colors, "colorscale": "Viridis", "showscale": True,
                "colorbar": {"title": {"text": color_by, "side": "right"}, "thickness": 12}}
    fig = go.Figure(go.Parcoords(dimensions=dims, line=line, labelangle=-20, labelside="bottom"))
    fig.update_layout(height=420, margin={"l": 60, "r": 60, "t": 40, "b": 90}, font={"size": 13})
    return fig


def _log_ticks(low: float, high: float) -> list[float]:
    """log10 positions of 1, 2, 5 x 10^n between low and high (log10 values); the ends when there are none."""
    ticks = [math.log10(m * 10 ** e) for e in range(math.floor(low), math.ceil(high) + 1) for m in (1, 2, 5)]
    inside = [t for t in ticks if low - 1e-9 <= t <= high + 1e-9]
    return inside if len(inside) >= 2 else [low, high]


def _short(value: float) -> str:
    return human_flops(value) if value >= 1000 else f"{value:.3g}"


def diff_figure(images: np.ndarray, labels: list[int], answers: list[tuple[int, int]], names: tuple[str, str],
                columns: int = 8) -> go.Figure:
    """A grid of samples, each titled with its true class and both answers ("7 · A 7 · B 1").

    Args:
        images: (M, H, W) grey images in [0, 1] (a clip's middle frame).
        labels: (M,) true classes; answers: M pairs (A's class, B's class); names: what A and B are.
    """
    m = len(labels)
    rows = max(1, math.ceil(m / columns))
    titles = [f"true {labels[i]}<br>A {answers[i][0]} · B {answers[i][1]}" for i in range(m)]
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=titles, horizontal_spacing=0.01,
                        vertical_spacing=0.3 / rows if rows > 1 else 0.0)
    for i in range(m):
        fig.add_trace(go.Heatmap(z=images[i][::-1], colorscale="gray_r", showscale=False, zmin=0, zmax=1,
                                 hoverinfo="skip"), row=i // columns + 1, col=i % columns + 1)
    fig.update_xaxes(visible=False, scaleanchor=None)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=11)
    fig.update_layout(height=30 + 125 * rows, margin={"l": 5, "r": 5, "t": 30, "b": 5},
                      meta={"A": names[0], "B": names[1]})  # what A and B are (the page says it above)
    return fig
