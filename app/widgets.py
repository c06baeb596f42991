"""Reusable UI pieces that draw (Streamlit side): the shared sidebar (lesson mode and the run picker) and the app's
tables with their number formats and column tooltips. What they read comes from app/common.py."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import common
from app.charts import format as fmt
from pkd.runs import Run
from pkd.runs.schema import RunInfo


def sidebar() -> Run | None:
    """The shared run picker in the sidebar; returns the chosen run (None when there are no runs)."""
    runs = common.all_runs()
    infos = {str(run.path): run.info() for run in runs}
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


def show_table(frame, key: str) -> None:
    """st.dataframe with a % sign on the percentage columns and a tooltip on each column that has one."""
    config = {}
    for column in frame.columns:
        help_text = fmt.COLUMN_HELP.get(column)
        if column in fmt.PERCENT_COLUMNS:
            config[column] = st.column_config.NumberColumn(column, format="%.2f%%", help=help_text)
        elif column in fmt.COUNT_COLUMNS:
            config[column] = st.column_config.NumberColumn(column, format="localized", help=help_text)
        elif help_text:
            config[column] = st.column_config.Column(column, help=help_text)
    st.dataframe(frame, hide_index=True, width="stretch", key=key, column_config=config)


def canvas_data_url(key: str) -> str | None:
    """The PNG data URL the drawing canvas under session-state `key` last sent (None before the first stroke)."""
    value = st.session_state.get(key)
    try:
        return value["drawing"]["data"]
    except (TypeError, KeyError):
        return None
