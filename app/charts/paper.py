"""Charts as paper figures: a preset (serif font, white background, one column of a two-column paper wide) and the
files made from it (SVG, PNG, PDF) by kaleido, which drives a headless Chrome/Chromium.

kaleido is optional at run time: `export_problem()` says in one line why files cannot be made here (kaleido not
installed, no Chrome/Chromium found), and the pages then offer plotly's own PNG/SVG button on the chart instead.
No Streamlit here: figures in, bytes out.
"""

from __future__ import annotations

import copy
import importlib.util
import shutil
import threading
import warnings

import plotly.graph_objects as go

COLUMN_WIDTH_IN = 3.25  # one column of a two-column paper (ICML, NeurIPS, CVPR): 3.25 in
CSS_DPI = 96  # kaleido's page pixels per inch
WIDTH = round(COLUMN_WIDTH_IN * CSS_DPI)  # 312 px = 3.25 in at 96 dpi
HEIGHT = round(0.75 * WIDTH)
PNG_SCALE = 300 / CSS_DPI  # PNG at 300 dpi at the column width
FONT = {"family": "Times New Roman, Times, DejaVu Serif, serif", "size": 8, "color": "black"}
FORMATS = {"svg": "image/svg+xml", "png": "image/png", "pdf": "application/pdf"}
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")

_server_lock = threading.Lock()
_server_started = False


def paper_figure(fig: go.Figure, height: int | None = None) -> go.Figure:
    """A copy of `fig` for a paper: serif 8 pt, white background, thin black axes, one column wide, the legend
    below the plot, no chart title (the paper's caption says it), text labels on points kept small."""
    out = go.Figure(copy.deepcopy(fig.to_dict()))
    out.update_layout(template="simple_white", font=FONT, width=WIDTH, height=height or HEIGHT,
                      paper_bgcolor="white", plot_bgcolor="white", title=None,
                      margin={"l": 44, "r": 8, "t": 14, "b": 40},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.42, "x": 0, "font": {"size": 7}})
    out.update_xaxes(showline=True, linecolor="black", linewidth=0.6, ticks="outside", tickwidth=0.6, mirror=False,
                     title_font={"size": 8}, tickfont={"size": 7})
    out.update_yaxes(showline=True, linecolor="black", linewidth=0.6, ticks="outside", tickwidth=0.6,
                     title_font={"size": 8}, tickfont={"size": 7})
    out.update_traces(textfont_size=6, marker_size=4, selector={"type": "scatter"})
    out.update_traces(line_width=1, selector=lambda t: t.type == "scatter" and t.fill != "toself")
    out.update_annotations(font_size=7)
    return out


def export_problem() -> str | None:
    """Why figure files cannot be made here (one line with the fix), or None when they can."""
    if importlib.util.find_spec("kaleido") is None:
        return "paper figure files need kaleido: pip install kaleido==1.5.2 (requirements.txt pins it)"
    if not any(shutil.which(name) for name in BROWSERS):
        return ("paper figure files need Chrome or Chromium for kaleido (e.g. apt-get install chromium), "
                "or plotly_get_chrome")
    return None


def figure_bytes(fig: go.Figure, fmt: str) -> bytes:
    """The paper figure of `fig` as SVG, PNG (300 dpi) or PDF bytes (kaleido; one browser kept for later calls)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown figure format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    problem = export_problem()
    if problem:
        raise RuntimeError(problem)
    paper = paper_figure(fig)
    with _server_lock:
        _start_server()
        with warnings.catch_warnings():  # "kopts ... ignored if using a server": we pass none
            warnings.simplefilter("ignore", UserWarning)
            return paper.to_image(format=fmt, width=paper.layout.width, height=paper.layout.height,
                                  scale=PNG_SCALE if fmt == "png" else 1)


def _start_server() -> None:
    """Keep one headless browser for every figure (its start costs seconds; each file after it, a fraction)."""
    global _server_started
    if not _server_started:
        import kaleido

        kaleido.start_sync_server(silence_warnings=True)
        _server_started = True


def modebar_config(name: str) -> dict:
    """st.plotly_chart's config: the chart's camera button saves an SVG at the column width (works without
    kaleido: the browser draws it)."""
    return {"toImageButtonOptions": {"format": "svg", "filename": name, "width": WIDTH * 2, "height": HEIGHT * 2},
            "displaylogo": False}
