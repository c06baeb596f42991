"""How it works' reading view: a student's memory (its first layer's SSM state, ED x N numbers) as a heatmap, and
the image with the rows read so far lit. Pure: arrays in, a plotly Figure or an RGB array out."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

MEMORY_SCALE = "RdBu"  # blue negative, red positive, white 0


def memory_figure(state: np.ndarray, limit: float) -> go.Figure:
    """The state (ED, N) as a heatmap whose colour range [-limit, limit] stays fixed while the slider moves."""
    fig = go.Figure(go.Heatmap(z=state, zmin=-limit, zmax=limit, zmid=0.0, colorscale=MEMORY_SCALE,
                               colorbar={"thickness": 10, "len": 0.9},
                               hovertemplate="channel %{y}, state %{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(height=300, margin={"l": 40, "r": 10, "t": 10, "b": 40},
                      xaxis={"title": f"state (N = {state.shape[1]})"},
                      yaxis={"title": f"channel (ED = {state.shape[0]})", "autorange": "reversed"})
    return fig


def lit_rows(pixels: np.ndarray, read: int, per_token: int, scale: int = 6) -> np.ndarray:
    """The grey image (H, W) in [0, 1] as RGB, enlarged: rows not read yet dimmed, the row just read marked red.

    Args:
        read: tokens read so far (1..L). per_token: image rows per token.
    Returns:
        (H * scale, W * scale, 3) floats in [0, 1].
    """
    rgb = np.repeat(np.clip(pixels, 0.0, 1.0)[..., None], 3, axis=-1)  # (H, W, 3)
    seen = read * per_token
    rgb[seen:] *= 0.25  # not read yet
    last = slice(max(seen - per_token, 0), seen)
    rgb[last, :, 0] = np.maximum(rgb[last, :, 0], 0.85)  # the row just read, in red
    rgb[last, :, 1:] *= 0.4
    return np.kron(rgb, np.ones((scale, scale, 1)))
