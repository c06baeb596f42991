"""pkd explorer: `streamlit run app/main.py` (router + shared sidebar; the pages live in app_pages/)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` puts only app/ on sys.path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app import common, lesson, warmup, widgets  # noqa: E402

# No torch here: a page that only reads run records (Results, Runs, Sweeps, Compare) draws without importing it (2-3 s
# of CPU on a fresh server); models are loaded through app.common's cached_* functions, which set the thread count.
st.set_page_config(page_title="pkd explorer", page_icon=":material/scatter_plot:", layout="wide")

PAGES = {  # the names are the URL-state keys of app/url_state.PAGE_FIELDS
    "results": st.Page("app_pages/results.py", title="Results", icon=":material/show_chart:", default=True),
    "playground": st.Page("app_pages/playground.py", title="Playground", icon=":material/draw:"),
    "clips": st.Page("app_pages/clips.py", title="Clips", icon=":material/movie:"),
    "how": st.Page("app_pages/how_it_works.py", title="How it works", icon=":material/school:"),
    "train": st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
    "runs": st.Page("app_pages/runs.py", title="Runs", icon=":material/folder_open:"),
    "sweeps": st.Page("app_pages/sweeps.py", title="Sweeps", icon=":material/scatter_plot:"),
    "compare": st.Page("app_pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
}

page = st.navigation(list(PAGES.values()))
name = next((n for n, p in PAGES.items() if p.url_path == page.url_path), "results")
goto = st.session_state.pop(common.GOTO_KEY, None)
if goto in PAGES:
    if common.LESSON_KEY in st.session_state:  # this run ends before the sidebar's toggle: keep lesson mode on
        st.session_state[common.LESSON_KEY] = st.session_state[common.LESSON_KEY]
    st.switch_page(PAGES[goto])
common.read_url(name)  # a shared link or a reload: the URL's state first
widgets.sidebar()
link_slot = st.sidebar.empty()  # 'Copy link', filled last: the link then holds what the page itself set
common.write_url(name)  # the widgets' values are already in session state: the link holds them if a page ends early
lesson_card = st.container()  # lesson mode's step card, at the top; filled once the page has run (its ticks)
try:
    page.run()
except common.PageEnd:  # the page said why it shows no more; the shared end below still runs
    pass
finally:  # what the page itself set (a default number of students, a clamped value)
    with lesson_card:
        lesson.card(name)
    common.write_url(name)
    widgets.copy_link(link_slot, page.url_path)
    warmup.start(st.session_state.get(common.RUN_KEY))  # the first page has run: load the next pages' models
    common.release_freed_memory()
