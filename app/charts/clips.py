"""The Clips page's tables and chart, as pure functions of a pkd.inference.ClipReport (no Streamlit; unit-tested).

Shape letters: T frames, K students, C classes.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from app.charts.format import COLORS, human_flops, students_text
from pkd.inference import ClipReport


def answer(probs, class_names: list[str]) -> tuple[str, float]:
    """(class name, probability) of the top class of one (C,) probability vector."""
    cls = int(probs.argmax())
    return class_names[cls], float(probs[cls])


def answers_frame(report: ClipReport, frame: int, class_names: list[str], teacher_flops: int | None) -> pd.DataFrame:
    """One row per prefix: its answer after `frame` frames (1-based), how sure, and the FLOPs spent so far."""
    rows = []
    for k in range(1, report.prefix_probs.shape[1] + 1):
        name, p = answer(report.prefix_probs[frame - 1, k - 1], class_names)
        flops = report.cumulative_flops[frame - 1][k - 1]
        rows.append({"students used": students_text(k), f"answer after frame {frame}": name,
                     "how sure": f"{100 * p:.1f}%", "FLOPs so far": human_flops(flops),
                     "% of the teacher's FLOPs": f"{100 * flops / teacher_flops:.1f}%" if teacher_flops else "-"})
    return pd.DataFrame(rows)


def every_frame_frame(report: ClipReport, class_names: list[str]) -> pd.DataFrame:
    """Rows 'after frame t', one column per prefix: its answer and sureness after each frame."""
    rows = []
    for t in range(report.frames):
        row = {"after frame": t + 1}
        for k in range(1, report.prefix_probs.shape[1] + 1):
            name, p = answer(report.prefix_probs[t, k - 1], class_names)
            row[students_text(k)] = f"{name} ({100 * p:.0f}%)"
        rows.append(row)
    return pd.DataFrame(rows)


def confidence_figure(report: ClipReport, class_names: list[str], frame: int | None = None) -> go.Figure:
    """How sure each prefix is of its answer after each frame (a line per prefix, its answers on hover), the
    teacher's sureness on the whole clip as a dashed line, and the chosen frame as a dotted one."""
    fig = go.Figure()
    frames = list(range(1, report.frames + 1))
    for k in range(1, report.prefix_probs.shape[1] + 1):
        picks = [answer(report.prefix_probs[t, k - 1], class_names) for t in range(report.frames)]
        fig.add_trace(go.Scatter(
            x=frames, y=[100 * p for _, p in picks], mode="lines+markers", name=students_text(k).capitalize(),
            line={"color": COLORS[(k - 1) % len(COLORS)]}, customdata=[name for name, _ in picks],
            hovertemplate=f"{students_text(k)}, after frame %{{x}}: %{{customdata}} (%{{y:.1f}}%)<extra></extra>"))
    top = float(report.prefix_probs.max())
    if report.teacher_probs is not None:
        name, p = answer(report.teacher_probs, class_names)
        top = max(top, p)
        fig.add_trace(go.Scatter(x=[frames[0], frames[-1]], y=[100 * p, 100 * p], mode="lines",
                                 name=f"Teacher, whole clip: {name}", line={"color": "#555", "dash": "dash"},
                                 hovertemplate=f"teacher, all frames at once: {name} ({100 * p:.1f}%)<extra></extra>"))
    if frame is not None:
        fig.add_vline(x=frame, line_dash="dot", line_color="#999")
    fig.update_layout(height=320, margin={"l": 50, "r": 10, "t": 40, "b": 40},
                      legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
                      xaxis={"title": "after frame", "tickmode": "array", "tickvals": frames,
                             "range": [0.8, report.frames + 0.2]},
                      yaxis={"title": "how sure of its answer (%)", "range": [0, min(100.0, 100 * top * 1.25 + 2)]})
    return fig
