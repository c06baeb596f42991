"""The Clips page's tables and chart, as pure functions of a pkd.inference.ClipReport (no Streamlit; unit-tested).

Shape letters: T frames, K students, C classes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch

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


TRAIL = np.array([0.30, 0.60, 1.00])  # the colour of the frames before the latest one (blue), latest = white
TRAIL_FADE = 0.85  # each older frame of a trail is drawn this much fainter than the next


def average_frame(clip: torch.Tensor) -> np.ndarray:
    """What the video teacher's temporal mean amounts to, as a picture: the clip's frames averaged, (S, S) in [0, 1].

    Args:
        clip: (T, 1, S, S) frames in [0, 1].
    """
    return clip[:, 0].float().mean(0).clamp(0, 1).numpy()


def onion_skin(clip: torch.Tensor, upto: int) -> np.ndarray:
    """Frames 1..upto drawn on top of each other: the latest white, the ones before it ever fainter blue, so the
    trail points back to where the digit came from. (S, S, 3) float in [0, 1].

    Args:
        clip: (T, 1, S, S) frames in [0, 1].
        upto: how many frames (1..T).
    """
    frames = clip[:upto, 0].float().clamp(0, 1).numpy()  # (upto, S, S)
    out = np.zeros((*frames.shape[1:], 3))
    for i, frame in enumerate(frames):
        age = upto - 1 - i
        colour = np.ones(3) if age == 0 else TRAIL * TRAIL_FADE ** (age - 1)
        out = np.maximum(out, frame[..., None] * colour)
    return out


def enlarge(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement by a whole factor (crisp pixels on screen): (H, W[, 3]) -> (H f, W f[, 3])."""
    return image.repeat(factor, 0).repeat(factor, 1)


def frame_row(clip: torch.Tensor, read: int, factor: int, gap: int = 6) -> np.ndarray:
    """The clip's frames in one row, each with the trail of the frames before it (onion_skin); the frames after
    `read` dimmed. (S f, T (S f + gap) - gap, 3) uint8, the gaps white."""
    frames, side = clip.shape[0], clip.shape[-1] * factor
    row = np.full((side, frames * (side + gap) - gap, 3), 255, dtype=np.uint8)
    for i in range(frames):
        cell = onion_skin(clip, i + 1) if i < read else 0.25 * clip[i, 0].float().clamp(0, 1).numpy()[..., None]
        cell = np.broadcast_to(enlarge(cell, factor), (side, side, 3))
        row[:, i * (side + gap):i * (side + gap) + side] = (255 * cell).round().astype(np.uint8)
    return row
