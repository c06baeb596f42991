"""The Playground's chart and tables: one drawn digit's prediction by every ensemble prefix (an
pkd.inference.DigitReport as a dict) -> a plotly bar chart and pandas tables.

Nothing here imports Streamlit or runs a model, so every function is unit-tested on plain dicts.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from app.charts.format import human_flops, percent, students_text


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
        report: pkd.inference.DigitReport as a dict (prefix_probs, student_probs, cumulative_flops,
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
        report: pkd.inference.DigitReport as a dict.
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
