"""Reusable UI pieces that draw (Streamlit side): the shared sidebar (lesson mode and the run picker) and the app's
tables with their number formats and column tooltips. What they read comes from app/common.py."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import streamlit as st

from app import common
from app.charts import format as fmt
from pkd.runs import Run
from pkd.runs.schema import RunInfo


def sidebar() -> Run | None:
    """The shared run picker in the sidebar; returns the chosen run (None when there are no runs)."""
    runs = common.all_runs()
    infos = {str(run.path): common.run_info(run) for run in runs}
    labels = {str(run.path): common.label(run, infos[str(run.path)]) for run in runs}
    with st.sidebar:
        st.toggle("Lesson mode", key=common.LESSON_KEY, help="For a class: a numbered path through the pages, one thing "
                  "to do at each step, ticked off when done; hides the advanced controls (overlays, α and "
                  "temperature, devices, export, sweeps). The step and the ticks are kept in the page's link.")
        st.markdown("### Run")
        if not runs:
            st.info("No runs yet. Start one on the **Train** page.")
            return None
        if st.session_state.get(common.RUN_KEY) not in infos:
            st.session_state[common.RUN_KEY] = str(common.default_run(runs, infos).path)
        st.selectbox("Run shown on Results and Playground", list(infos), key=common.RUN_KEY,
                     format_func=lambda p: labels.get(p, p))
        run = Run(Path(st.session_state[common.RUN_KEY]))
        info = infos[str(run.path)]
        where = "shipped with pkd" if common.location(run) == "pretrained" else "in your runs folder"
        st.caption(f"{info['dataset']} · {info['mode']} ensemble of "
                   f"{info[RunInfo.K_DONE]}/{info[RunInfo.K_PLANNED]} students · "
                   f"state **{info['state']}** · {where}"
                   + ("" if common.lesson_mode() else f"  \n`{run.path}`"))
        if info[RunInfo.PROBLEM]:
            st.caption(f":warning: {info[RunInfo.PROBLEM]}")
        if not common.lesson_mode():
            st.caption(f"New runs go to `{common.runs_dir()}`")
    return run


def copy_link(slot, url_path: str) -> None:
    """'Copy link' in the sidebar: the address of this exact view (page, run and settings, as the URL keeps them)
    in a box with a copy button, for a teacher to share with the class."""
    base = (st.context.url or "").rstrip("/")  # None in a test harness: the link is then relative
    query = urllib.parse.urlencode(st.query_params.to_dict())
    link = f"{base}/{url_path}" + (f"?{query}" if query else "")
    with slot.container(), st.popover("Copy link", icon=":material/link:", width="stretch",
                                      help="The link to exactly this view, to share with a class."):
        st.caption("This view's link: the page, the run and its settings. Copy it with the icon at its right, "
                   "then paste it in a chat or on the board.")
        st.code(link, language=None, wrap_lines=True)


def show_table(frame, key: str) -> None:
    """st.dataframe with a % sign on the percentage columns, a tooltip on each column that has one, and each column
    as wide as its content (fmt.column_widths), so a wide table is not cut off on the right of a laptop's screen."""
    config = {}
    widths = fmt.column_widths(frame)
    for column in frame.columns:
        help_text, width = fmt.COLUMN_HELP.get(column), widths[column]
        if column in fmt.PERCENT_COLUMNS:
            config[column] = st.column_config.NumberColumn(column, format="%.2f%%", help=help_text, width=width)
        elif column in fmt.COUNT_COLUMNS:
            config[column] = st.column_config.NumberColumn(column, format="localized", help=help_text, width=width)
        else:
            config[column] = st.column_config.Column(column, help=help_text, width=width)
    st.dataframe(frame, hide_index=True, width="stretch", key=key, column_config=config)


def canvas_data_url(key: str) -> str | None:
    """The PNG data URL the drawing canvas under session-state `key` last sent (None before the first stroke)."""
    value = st.session_state.get(key)
    try:
        return value["drawing"]["data"]
    except (TypeError, KeyError):
        return None


def figure_downloads(fig, name: str, key: str) -> None:
    """SVG, PNG and PDF buttons for a chart in the paper preset (serif, white, one column wide: app/charts/paper);
    each file is made when its button is clicked. Without kaleido or a Chrome, one line says what to install."""
    from app.charts import paper

    problem = paper.export_problem()
    if problem:
        st.caption(f"Paper figure: the chart's camera button saves an SVG; {problem}.")
        return
    cols = st.columns([1, 1, 1, 4])
    for col, fmt in zip(cols, paper.FORMATS):
        col.download_button(f"{fmt.upper()}", lambda fmt=fmt: paper.figure_bytes(fig, fmt), file_name=f"{name}.{fmt}",
                            mime=paper.FORMATS[fmt], key=f"{key}_{fmt}", on_click="ignore", icon=":material/download:",
                            help=f"This chart as a paper figure ({fmt.upper()}): serif font, white background, "
                                 f"{paper.COLUMN_WIDTH_IN} in wide (one column)"
                                 + (", 300 dpi" if fmt == "png" else "") + ".")
    cols[3].caption(f"paper figure: serif, white, {paper.COLUMN_WIDTH_IN} in wide")
