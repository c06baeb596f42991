"""AppTest of the Sweeps page: the shipped sweep's points and front, a point opened on Results and Playground,
a sweep started from the page and stopped (widgets selected by key)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pkd import sweep as pkd_sweep
from pkd.runs import Run
from tests.app.trained import ROOT

streamlit_testing = pytest.importorskip("streamlit.testing.v1")
MAIN = str(ROOT / "app" / "main.py")
SHIPPED_SWEEP = "sweep-quick"


@pytest.fixture
def shipped_sweep(shipped_root) -> pkd_sweep.Sweep:
    path = shipped_root / SHIPPED_SWEEP
    if not (path / "sweep.json").is_file():
        pytest.skip(f"no shipped sweep in {path}")
    return pkd_sweep.Sweep(path)


def open_sweeps(timeout: float = 90):
    at = streamlit_testing.AppTest.from_file(MAIN, default_timeout=timeout).run()
    assert not at.exception, at.exception
    at.switch_page("app_pages/sweeps.py").run()
    assert not at.exception, at.exception
    return at


def chart(at) -> dict:
    return json.loads(at.get("plotly_chart")[0].proto.spec)


def test_page_refuses_to_rank_settings_on_few_trials_and_never_ranks_alpha_for_flops(app_env, shipped_sweep):
    """6 trials: no importance ranking (it fits noise: alpha came first for FLOPs, which it cannot change), each
    setting against each objective instead, and alpha / temperature left out of FLOPs with the reason said."""
    complete = sum(t["state"] == "complete" for t in pkd_sweep.trial_table(shipped_sweep))
    assert 2 <= complete < pkd_sweep.MIN_TRIALS_FOR_IMPORTANCE
    found = pkd_sweep.param_importances(shipped_sweep)
    assert "distill.alpha" in found["val accuracy"]
    assert found["cumulative FLOPs"] and all(p.startswith("schedule.") for p in found["cumulative FLOPs"])
    at = open_sweeps()
    assert any("not reliable" in w.value and f"{complete} complete trials" in w.value for w in at.warning)
    specs = {c.proto.id: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    assert not any("importance" in json.dumps(s["layout"].get("xaxis", {})) for s in specs.values())
    (settings,) = [s for s in specs.values() if "cannot change" in json.dumps(s["layout"].get("annotations", []))]
    notes = [a["text"] for a in settings["layout"]["annotations"]]
    assert "distill.alpha cannot change cumulative FLOPs" in notes
    assert "distill.temperature cannot change cumulative FLOPs" in notes
    assert not any(n.startswith("schedule.") and "cannot" in n for n in notes)  # sizes do change FLOPs
    assert any("`distill.alpha`" in c.value and "cannot change cumulative FLOPs" in c.value for c in at.caption)


def test_page_shows_every_point_of_the_shipped_sweep_and_its_front(app_env, shipped_sweep):
    at = open_sweeps()
    assert at.title[0].value == "Sweeps"
    assert at.session_state["sweeps_pick"] == str(shipped_sweep.path)
    points = pkd_sweep.sweep_points(shipped_sweep)
    front = pkd_sweep.front(points, "val")
    traces = chart(at)["data"]
    runs = [t for t in traces if t["name"] != "Pareto front"]
    assert sum(len(t["x"]) for t in runs) == len(points) and len(runs) == len(shipped_sweep.runs())
    (line,) = [t for t in traces if t["name"] == "Pareto front"]
    assert line["x"] == [p["flops"] for p in front]
    assert [tuple(c) for c in line["customdata"]] == [(p["run"], p["k"]) for p in front]
    hover = " ".join(h for t in runs for h in t["hovertext"])
    assert "trial-000" in hover and "distill.alpha = " in hover  # run, k and how it differs from the base
    assert len(at.dataframe[0].value) == len(front)
    assert len(at.get("plotly_chart")) == 2, "no chart of the settings against the objectives"

    at.radio(key="sweeps_split").set_value("test").run()
    (line,) = [t for t in chart(at)["data"] if t["name"] == "Pareto front"]
    assert line["x"] == [p["flops"] for p in pkd_sweep.front(points, "test")]


def test_a_point_opens_its_run_on_results_and_playground(app_env, shipped_sweep):
    points = pkd_sweep.sweep_points(shipped_sweep)
    off_front = next(p for p in points if p not in pkd_sweep.front(points, "val"))
    for button, title in (("sweeps_open_results", "Results"), ("sweeps_open_playground", "Playground")):
        at = open_sweeps()
        at.selectbox(key="sweeps_point").set_value(f"{off_front['run']}|{off_front['k']}").run()
        assert "How this run differs from the sweep's base: " + "; ".join(off_front["diff"]) in \
            [c.value for c in at.caption]
        at.button(key=button).click().run()
        assert not at.exception, at.exception
        assert at.title[0].value == title
        assert at.session_state["run"] == off_front["run"]


def test_a_sweep_started_from_the_page_runs_detached_and_stops(app_env):
    at = open_sweeps()
    at.selectbox(key="sweeps_base").set_value("tiny")
    at.selectbox(key="sweeps_space").set_value("sweep-tiny")
    at.number_input(key="sweeps_trials").set_value(1)
    at.checkbox(key="sweeps_build_kernel").uncheck()
    at.button(key="sweeps_start").click().run(timeout=240)
    assert not at.exception, at.exception
    (found,) = pkd_sweep.find_sweeps([app_env])
    try:
        assert "Started" in " ".join(str(s.value) for s in at.success), [e.value for e in at.error]
        assert at.session_state["sweeps_pick"] == str(found.path)
        deadline = time.time() + 120
        while not found.active() and time.time() < deadline:  # its worker holds the base run (the teacher)
            time.sleep(0.3)
        at.run()
        assert "**running**" in " ".join(c.value for c in at.caption)
        at.button(key="sweeps_stop").click().run()
        assert "Asked 1 worker" in " ".join(str(i.value) for i in at.info)
    finally:
        pkd_sweep.stop_sweep(found)
        deadline = time.time() + 120
        while found.active() and time.time() < deadline:
            time.sleep(0.3)
    assert not found.active()
    base = Run(Path(found.path) / "base")
    assert not base.is_active()


def test_a_hostile_sweep_folder_gets_one_line_and_never_blocks_the_page(app_env, shipped_sweep):
    """Issue 31: a foreign line in one sweep's journal is a one-line error on the page, not an exception; FIFOs in
    another's sweep.log, stop-request and lock files are shown as unreadable, never read (the page finishes)."""
    import os
    import shutil

    foreign = Path(shutil.copytree(shipped_sweep.path, app_env / "foreign"))
    with open(foreign / "journal.log", "ab") as fh:
        fh.write(b"not optuna\n")
    fifos = Path(shutil.copytree(shipped_sweep.path, app_env / "fifos"))
    (fifos / ".locks").mkdir(exist_ok=True)
    for name in ("sweep.log", "stop-request", ".locks/trial-009.lock"):
        (fifos / name).unlink(missing_ok=True)
        os.mkfifo(fifos / name)
    at = open_sweeps()
    at.selectbox(key="sweeps_pick").set_value(str(foreign)).run()
    assert not at.exception, at.exception
    assert len(at.error) == 1 and "journal.log line" in at.error[0].value and "not an Optuna journal record" in \
        at.error[0].value and "start a new sweep" in at.error[0].value
    at.selectbox(key="sweeps_pick").set_value(str(fifos)).run()
    assert not at.exception and not at.error, (at.exception, at.error)
    assert "not running" in " ".join(c.value for c in at.caption)
    assert any("sweep.log cannot be read" in c.value for c in at.code)
