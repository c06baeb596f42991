"""Pure helpers for the Sweeps page: a sweep's (run, k) points (as pkd.sweep reads them) -> plotly figures and
pandas tables. Nothing here imports Streamlit or touches files, so every function is unit-tested on plain dicts."""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.charts.format import COLORS, flops_ticks, human_flops, pct, percent, students_text

SPLITS = {"val": "validation", "test": "test"}
FRONT_COLOR = "#111111"


def point_key(point: dict) -> str:
    """The key a point is picked by (its run directory and k)."""
    return f"{point['run']}|{point['k']}"


def hover_text(point: dict) -> str:
    """What hovering a point shows: run, k, FLOPs, both accuracies and how the run's config differs from the base."""
    diff = point.get("diff") or ["(the base config)"]
    lines = [f"<b>{html.escape(point['name'])}</b>, {students_text(point['k'])}",
             f"{human_flops(point['flops'])} FLOPs ({percent(point.get('share'), 2)} of the teacher)",
             f"val {percent(point.get('val_acc'), 2)} · test {percent(point.get('test_acc'), 2)}"]
    return "<br>".join(lines + [html.escape(line) for line in diff[:8]] + (["..."] if len(diff) > 8 else []))


def sweep_figure(points: list[dict], front: list[dict], split: str = "val", log_x: bool = True) -> go.Figure:
    """Accuracy on `split` vs cumulative FLOPs of every (run, k) point, each run's prefixes joined by a faint line;
    the Pareto front on top in black. Every marker carries [run, k] as customdata (what a click selects)."""
    fig = go.Figure()
    runs: dict[str, list[dict]] = {}
    for point in points:
        if point.get(f"{split}_acc") is not None:
            runs.setdefault(point["run"], []).append(point)
    for i, (run, items) in enumerate(runs.items()):
        items = sorted(items, key=lambda p: p["k"])
        fig.add_trace(go.Scatter(
            x=[p["flops"] for p in items], y=[100 * p[f"{split}_acc"] for p in items], mode="lines+markers",
            name=items[0]["name"], line={"color": COLORS[i % len(COLORS)], "width": 1}, opacity=0.55,
            marker={"size": 8}, customdata=[[p["run"], p["k"]] for p in items],
            hovertext=[hover_text(p) for p in items], hoverinfo="text"))
    if front:
        fig.add_trace(go.Scatter(
            x=[p["flops"] for p in front], y=[100 * p[f"{split}_acc"] for p in front], mode="lines+markers",
            name="Pareto front", line={"color": FRONT_COLOR, "width": 2, "shape": "hv"},
            marker={"size": 13, "symbol": "diamond-open", "line": {"width": 2}},
            customdata=[[p["run"], p["k"]] for p in front], hovertext=[hover_text(p) for p in front],
            hoverinfo="text"))
    fig.update_layout(xaxis_title="FLOPs per image of the students used" + (" (log scale)" if log_x else ""),
                      yaxis_title=f"{SPLITS[split]} accuracy (%)", height=520, clickmode="event+select",
                      legend={"orientation": "h", "y": -0.2}, margin={"t": 30}, font={"size": 14})
    xs = [p["flops"] for p in points if p.get("flops")]
    if xs:
        low, high = (min(xs) / 1.5, max(xs) * 1.5) if log_x else (0.0, max(xs) * 1.08)
        values, texts = flops_ticks(low, high, log_x)
        fig.update_xaxes(range=[math.log10(low), math.log10(high)] if log_x else [low, high], tickvals=values,
                         ticktext=texts, tickangle=0)
    fig.update_xaxes(type="log" if log_x else "linear")
    ys = [100 * p[f"{split}_acc"] for p in points if p.get(f"{split}_acc") is not None]
    pad = max(0.3, 0.06 * (max(ys) - min(ys))) if ys else 0
    fig.update_yaxes(ticksuffix="%", range=[min(ys) - pad, min(100.0, max(ys) + pad)] if ys else None)  # no marker cut
    return fig


def front_frame(front: list[dict]) -> pd.DataFrame:
    """The front as a table, cheapest first."""
    return pd.DataFrame.from_records([{
        "run": p["name"], "students used": p["k"], "FLOPs per image": p["flops"],
        "% of the teacher's FLOPs": None if p.get("share") is None else round(100 * p["share"], 2),
        "val accuracy": _pct(p.get("val_acc")), "test accuracy": _pct(p.get("test_acc")),
        "differs from the base": "; ".join(p.get("diff") or [])} for p in front],
        columns=["run", "students used", "FLOPs per image", "% of the teacher's FLOPs", "val accuracy", "test accuracy",
                 "differs from the base"])


def trials_frame(trials: list[dict], objective_names: tuple[str, ...]) -> pd.DataFrame:
    """The study's trials: number, state, run, the objective values, the test accuracy, the error if it failed."""
    records = []
    for t in trials:
        row = {"trial": t["trial"], "state": t["state"], "run": t["run"]}
        for name, value in zip(objective_names, t["values"] or [None] * len(objective_names)):
            row[name] = round(100 * value, 2) if value is not None and "FLOPs" not in name else value  # % or FLOPs
        row["test accuracy"] = _pct(t.get("test_acc"))
        row["error"] = t.get("error", "")
        records.append(row)
    return pd.DataFrame.from_records(records, columns=["trial", "state", "run", *objective_names, "test accuracy",
                                                       "error"])


def importance_figure(importances: dict[str, dict[str, float]]) -> go.Figure:
    """Optuna's parameter importances, one group of horizontal bars per objective."""
    fig = go.Figure()
    params = sorted({p for values in importances.values() for p in values},
                    key=lambda p: -max(v.get(p, 0.0) for v in importances.values()))
    for i, (objective, values) in enumerate(importances.items()):
        fig.add_trace(go.Bar(y=params, x=[values.get(p, 0.0) for p in params], name=objective, orientation="h",
                             marker_color=COLORS[i % len(COLORS)]))
    fig.update_layout(barmode="group", height=120 + 40 * max(len(params), 1), xaxis_title="importance (PED-ANOVA)",
                      yaxis={"autorange": "reversed"}, margin={"t": 30}, legend={"orientation": "h", "y": -0.25})
    return fig


def settings_figure(trials: list[dict], objective_names: tuple[str, ...], drawn: dict[str, list[str]]) -> go.Figure:
    """Each searched setting (a row) against each objective (a column) over the complete trials: one dot per trial
    and its trend (a least-squares line for a number with 3 or more distinct values, else the mean per value).

    Args:
        trials: pkd.sweep.trial_table rows (state, values, params).
        drawn: objective name -> the settings to draw against it (the ones that can change it); a panel whose
            setting cannot change its objective is left empty and says so.
    """
    done = [t for t in trials if t["state"] == "complete" and t["values"]]
    params = list(dict.fromkeys(p for names in drawn.values() for p in names))
    fig = make_subplots(rows=max(1, len(params)), cols=len(objective_names), horizontal_spacing=0.12,
                        vertical_spacing=min(0.3 / max(1, len(params)), 0.06), column_titles=list(objective_names))
    for row, param in enumerate(params, start=1):
        for col, name in enumerate(objective_names, start=1):
            if param not in drawn.get(name, []):
                ref = fig.get_subplot(row, col)  # paper coordinates: an axis without traces is not drawn
                fig.add_annotation(text=f"{html.escape(param)} cannot change {name}", showarrow=False,
                                   xref="paper", yref="paper", x=sum(ref.xaxis.domain) / 2,
                                   y=sum(ref.yaxis.domain) / 2, font={"size": 12, "color": "#888888"})
                fig.update_xaxes(visible=False, row=row, col=col)
                fig.update_yaxes(visible=False, row=row, col=col)
                continue
            pairs = [(t["params"][param], _objective(t["values"][col - 1], name)) for t in done if param in t["params"]]
            _add_setting_panel(fig, pairs, row, col, param, name)
        fig.update_xaxes(title_text=param, title_standoff=2, row=row)
    fig.update_layout(height=60 + 190 * max(1, len(params)), showlegend=False, margin={"t": 40},
                      font={"size": 12})
    return fig


def _objective(value: float, name: str) -> float:
    """An objective as drawn: accuracies in percent, FLOPs as they are."""
    return value if "FLOPs" in name else 100 * value


def _add_setting_panel(fig: go.Figure, pairs: list[tuple], row: int, col: int, param: str, name: str) -> None:
    xs, ys = [x for x, _ in pairs], [y for _, y in pairs]
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
    shown = xs if numeric else [str(x) for x in xs]
    fig.add_trace(go.Scatter(x=shown, y=ys, mode="markers", marker={"size": 8, "color": COLORS[0]},
                             hovertemplate=f"{html.escape(param)} = %{{x}}<br>{name}: %{{y:.4g}}<extra></extra>"),
                  row=row, col=col)
    if numeric and len(set(xs)) >= 3:
        slope, intercept = np.polyfit(np.asarray(xs, dtype=float), np.asarray(ys, dtype=float), 1)
        line_x = [min(xs), max(xs)]
        fig.add_trace(go.Scatter(x=line_x, y=[slope * x + intercept for x in line_x], mode="lines",
                                 line={"color": COLORS[1], "width": 1.5, "dash": "dash"}, hoverinfo="skip"),
                      row=row, col=col)
    else:
        values = sorted(set(shown), key=lambda v: (isinstance(v, str), v))
        means = [float(np.mean([y for x, y in zip(shown, ys) if x == v])) for v in values]
        fig.add_trace(go.Scatter(x=values, y=means, mode="lines+markers", marker={"symbol": "line-ew-open",
                                 "size": 16, "color": COLORS[1]}, line={"color": COLORS[1], "width": 1.5,
                                 "dash": "dash"}, hovertemplate="mean %{y:.4g}<extra></extra>"), row=row, col=col)
    fig.update_yaxes(type="log", row=row, col=col) if "FLOPs" in name else fig.update_yaxes(
        ticksuffix="%", row=row, col=col)


def _pct(value: Any) -> float | None:
    """format.pct, with NaN and infinity shown as an empty cell too."""
    return None if value is None or not math.isfinite(value) else pct(value)
