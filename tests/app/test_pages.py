"""AppTest tests for every page of the explorer (no browser): widgets are selected by key."""

from __future__ import annotations

import base64
import io
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pkd import launch
from pkd.data import get_dataset_spec
from pkd.artifacts import load_ensemble
from pkd.preprocess import prepare_drawing
from pkd.runs import Run, list_runs
from tests.app.trained import ROOT, copy_run
from tests.hostile_runs import BREAKERS, make_runs

streamlit_testing = pytest.importorskip("streamlit.testing.v1")
AppTest = streamlit_testing.AppTest
MAIN = str(ROOT / "app" / "main.py")
TIMEOUT = 60


def open_app(page: str | None = None) -> "AppTest":
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, at.exception
    return at


def texts(at, kind: str) -> str:
    return "\n".join(str(e.value) for e in getattr(at, kind))


def table_with(at, column: str):
    """The st.table holding `column` (the Playground has the step-through table and the all-at-once table)."""
    return next(t.value for t in at.table if column in t.value.columns)


def canvas_value(pixels: np.ndarray) -> dict:
    """What the canvas component sends: its drawing as a PNG data URL (RGBA, 280x280)."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    return {"drawing": {"raw": {"objects": [{"type": "path"}]}, "data": url}, "backgroundFit": None}


def drawn_one() -> np.ndarray:
    """A white vertical stroke on black, like a '1' drawn with the mouse."""
    pixels = np.zeros((280, 280, 4), dtype=np.uint8)
    pixels[..., 3] = 255
    pixels[50:230, 130:150, :3] = 255
    return pixels


def shipped_run(shipped_root: Path) -> Run:
    return Run(shipped_root / "mnist")


# ------------------------------------------------------------------------------------------------ Results

def test_results_opens_on_shipped_run_with_chart_table_and_csv(app_env, shipped_root):
    at = open_app()
    assert at.title[0].value == "Results"
    assert at.session_state["run"] == str(shipped_run(shipped_root).path)
    charts = at.get("plotly_chart")
    assert charts, "no chart on the Results page"
    spec = json.loads(charts[0].proto.spec)
    rows = shipped_run(shipped_root).prefix_table()
    ensemble_trace = next(t for t in spec["data"] if t.get("name") == "the first students together")
    assert len(ensemble_trace["x"]) == len(rows)
    assert ensemble_trace["x"][-1] == rows[-1]["cumulative_flops"]
    assert ensemble_trace["text"] == [f"{100 * r['prefix_acc']:.2f}%" for r in rows]  # a number beside each dot
    teacher = shipped_run(shipped_root).summary()["teacher"]
    star = next(t for t in spec["data"] if t.get("name") == "teacher")  # the teacher at its real cost
    assert star["x"] == [teacher["flops"]] and star["y"] == [pytest.approx(100 * teacher["test_acc"])]
    assert any("teacher's accuracy" in str(a.get("text", "")) for a in spec["layout"].get("annotations", []))
    assert all("thousand" in t or "million" in t for t in spec["layout"]["xaxis"]["ticktext"])  # units
    assert all(t.endswith("%") for t in spec["layout"]["xaxis2"]["ticktext"])  # % of the teacher's FLOPs
    frame = at.dataframe[0].value
    assert list(frame["student"]) == [r["k"] for r in rows]
    assert at.get("download_button"), "no CSV download button"
    assert "ensemble of the first students" in texts(at, "markdown")
    assert "Dotted line: early exit" in texts(at, "markdown")


def test_results_log_axis_and_overlay(app_env, shipped_root):
    copy_run(shipped_run(shipped_root).path, app_env, "other-run")
    at = open_app()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["layout"]["xaxis"]["type"] == "log"  # the default: FLOPs span orders of magnitude
    at.radio(key="results_xscale").set_value("linear").run()
    assert not at.exception
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["layout"]["xaxis"]["type"] == "linear"
    other = str(app_env / "other-run")
    at.multiselect(key="results_compare").set_value([other]).run()
    assert not at.exception
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    names = " ".join(trace.get("name", "") for trace in spec["data"])
    assert "other-run" in names and "mnist" in names
    link = at.get("code")[-1].value  # the sidebar's 'Copy link': this view, overlay and axis included
    assert link.startswith("/?") and "compare=other-run" in link and "axis=linear" in link


def test_results_without_runs_says_where_to_start(monkeypatch, tmp_path):
    monkeypatch.setenv("PKD_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("PKD_PRETRAINED_DIR", str(tmp_path / "none"))
    at = open_app()
    assert "Train" in texts(at, "info")
    # the page ended early (common.end_page), and the end every page shares still ran: the sidebar's 'Copy link'
    assert [c.value for c in at.get("code")] == ["/"]


# ------------------------------------------------------------------------------------------------ Playground

def test_playground_blank_canvas_shows_a_note_not_a_guess(app_env):
    at = open_app("playground")
    assert "blank" in texts(at, "info")
    assert not at.table


def test_playground_drawn_digit_predicts_every_prefix_like_the_library(app_env, shipped_root):
    run = shipped_run(shipped_root)
    at = open_app("playground")
    at.session_state["canvas"] = canvas_value(drawn_one())
    at.run()
    assert not at.exception, at.exception
    table = table_with(at, "together they say")
    ensemble = load_ensemble(run)
    spec = get_dataset_spec(run.config()["data"]["dataset"])
    x = prepare_drawing(drawn_one())
    with torch.no_grad():
        expected = [spec.class_names[int(lp.argmax())] for lp in ensemble.all_prefixes(spec.normalize(x[None]))]
    assert len(table) == ensemble.k
    assert list(table["together they say"]) == expected
    assert f"Student 1 says **{expected[0]}**" in texts(at, "markdown")  # the step-through starts at student 1
    assert "Teacher" in texts(at, "markdown")
    assert "blank" not in texts(at, "info")


def test_playground_slider_anytime_and_clear(app_env, shipped_root):
    run = shipped_run(shipped_root)
    k_total = run.students_saved()
    at = open_app("playground")
    at.session_state["canvas"] = canvas_value(drawn_one())
    at.run()
    if k_total > 1:
        at.slider(key="pg_k").set_value(1).run()
        assert "Student 1 says" in texts(at, "markdown")
    at.radio(key="pg_anytime").set_value("budget").run()
    first = load_ensemble(run).cumulative_flops()[0]
    at.select_slider(key="pg_budget").set_value(first).run()
    assert not at.exception, at.exception
    assert f"stopped after 1 of {k_total} students" in " ".join(p.proto.text for p in at.get("progress"))
    at.button(key="pg_clear_btn").click().run()
    assert "blank" in texts(at, "info")


def test_playground_full_white_canvas_is_refused_with_advice(app_env):
    at = open_app("playground")
    white = np.full((280, 280, 4), 255, dtype=np.uint8)
    at.session_state["canvas"] = canvas_value(white)
    at.run()
    assert not at.exception
    assert "white strokes on a black" in texts(at, "warning")


def test_playground_single_dot_is_refused_not_classified(app_env):
    at = open_app("playground")
    dot = np.zeros((280, 280, 4), dtype=np.uint8)
    dot[..., 3] = 255
    dot[138:144, 138:144, :3] = 255
    at.session_state["canvas"] = canvas_value(dot)
    at.run()
    assert not at.exception
    assert "Too little ink" in texts(at, "warning")
    assert not at.table and "blank" not in texts(at, "info")


def test_playground_random_test_digit_shows_true_label(app_env):
    at = open_app("playground")
    at.button(key="pg_random").click().run()
    assert not at.exception, at.exception
    assert "true label" in texts(at, "caption").lower() or "True label" in texts(at, "caption")
    assert at.table, "no predictions for the test digit"


# ------------------------------------------------------------------------------------------------ Train

def test_train_page_shows_device_and_rejects_bad_sizes(app_env):
    at = open_app("train")
    assert "GPU:" in texts(at, "caption")
    at.selectbox(key="train_config").set_value("tiny").run()
    at.selectbox(key="train_schedule").set_value("custom")
    at.text_input(key="train_custom").set_value("4, x")
    at.button(key="train_start").click().run()
    assert "whole numbers" in texts(at, "error")
    assert list_runs(app_env) == []


def test_train_page_starts_a_run_and_lists_it(app_env):
    at = open_app("train")
    at.selectbox(key="train_config").set_value("tiny").run()
    at.checkbox(key="train_build_kernel").uncheck()
    at.number_input(key="train_student_epochs").set_value(1)
    at.button(key="train_start").click().run(timeout=90)
    assert not at.exception, at.exception
    runs = list_runs(app_env)
    try:
        assert len(runs) == 1, texts(at, "error")
        run = runs[0]
        assert run.config()["students"]["optim"]["epochs"] == 1  # the form's change reached the run
        assert "Started" in texts(at, "success")
        assert at.button(key="train_start").disabled  # a second press cannot start a second run
        assert "launched from this browser, is training" in texts(at, "info")  # not "started": a browser test waits for the one "Started" line
        assert [m.label for m in at.metric[3:5]] == ["time so far", "about left"]
        assert at.session_state["train_pick"] == str(run.path)  # the live panel follows the new run
        assert run.name in " ".join(str(o) for o in at.selectbox(key="train_pick").options)
        deadline = time.time() + 90
        while "loss" not in run.status() and time.time() < deadline:  # inside the training loop
            time.sleep(0.2)
        at.run()
        assert at.metric[0].value == "running"
        at.button(key="train_stop").click().run()
        deadline = time.time() + 60
        while run.state() == "running" and time.time() < deadline:
            time.sleep(0.2)
        assert run.state() == "stopped"
        at.run()
        assert not at.button(key="train_start").disabled and at.metric[4].value == "-"
        assert re.fullmatch(r"\d+:\d\d", at.metric[3].value)  # the time it trained
    finally:
        for run in runs:
            launch.stop_run(run)
            proc = launch.child_process(run)
            if proc is not None:
                proc.wait(timeout=60)


def test_train_page_leads_to_the_finished_run_and_offers_the_toy_config_first(app_env, shipped_root):
    run = Run(copy_run(shipped_run(shipped_root).path, app_env, "finished"))
    at = open_app("train")
    assert at.selectbox(key="train_config").value == "mnist-toy" == at.selectbox(key="train_config").options[0]
    assert "trains in seconds" in texts(at, "caption")
    assert "**finished** is done" in texts(at, "success") and not at.button(key="train_start").disabled
    at.button(key="train_open_playground").click().run()
    assert not at.exception, at.exception
    assert at.session_state["run"] == str(run.path) and at.title[0].value == "Playground"


def test_train_page_says_when_another_run_trains_with_its_time_left(app_env, shipped_root):
    """A run this browser did not start (its process alive: this one) leaves Start on, with a line saying so; the
    panel shows its time so far and about how long is left."""
    import os

    from pkd.procs import proc_start_time

    run = Run(copy_run(shipped_run(shipped_root).path, app_env, "elsewhere"))
    run.write_status(state="running", pid=os.getpid(), pid_start=proc_start_time(os.getpid()), stage="student",
                     student=2, progress=0.5, started=time.time() - 30)
    at = open_app("train")
    assert "Another run is training on this machine (**elsewhere**)" in texts(at, "warning")
    assert not at.button(key="train_start").disabled
    assert at.metric[0].value == "running" and at.metric[4].label == "about left"
    assert re.fullmatch(r"\d+:\d\d", at.metric[3].value) and at.metric[4].value != "-"


def test_train_page_shows_a_dead_run_as_died_with_resume(app_env, shipped_root):
    run = Run(copy_run(shipped_run(shipped_root).path, app_env, "crashed"))
    run.write_status(state="running", pid=2 ** 22 + 4321, pid_start=1, stage="student", student=2, progress=0.5)
    at = open_app("train")
    assert at.session_state["train_pick"] == str(run.path)
    assert at.metric[0].value == "died"
    assert "Resume" in texts(at, "error")
    assert not at.button(key="train_resume").disabled
    assert at.button(key="train_stop").disabled


def test_resume_refuses_a_console_log_that_links_out_of_the_run(app_env, shipped_root, tmp_path):
    """Issue 31: Resume appends to console.log before the training process starts; a link there is refused in one
    line and the file it points to is not touched (no process is started)."""
    run = Run(copy_run(shipped_run(shipped_root).path, app_env, "crashed"))
    run.write_status(state="stopped")
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    (run.path / "console.log").unlink(missing_ok=True)
    (run.path / "console.log").symlink_to(precious)
    at = open_app("train")
    at.button(key="train_resume").click().run()
    assert not at.exception, at.exception
    assert "console.log is a symbolic link" in texts(at, "error"), texts(at, "error")
    assert precious.read_text() == "keep me" and launch.child_process(run) is None


# ------------------------------------------------------------------------------------------------ Runs

def test_runs_page_lists_opens_and_deletes_with_confirmation(app_env, shipped_root):
    victim = copy_run(shipped_run(shipped_root).path, app_env, "victim")
    at = open_app("runs")
    frame = at.dataframe[0].value
    assert "victim" in list(frame["run"]) and "mnist" in list(frame["run"])
    assert "problem" not in frame.columns and "started" not in frame.columns  # fits a laptop's screen
    at.selectbox(key="runs_pick").set_value(str(victim)).run()
    assert "in your runs folder" in texts(at, "caption")  # when and where, for the chosen run
    at.button(key="runs_delete").click().run()
    assert victim.is_dir(), "deleted without confirmation"
    assert "cannot be undone" in texts(at, "warning")
    at.button(key="runs_delete_confirm").click().run()
    assert not victim.exists()
    assert "Deleted run victim" in texts(at, "success")


def test_runs_page_cannot_delete_shipped_run_and_opens_it_in_results(app_env, shipped_root):
    at = open_app("runs")
    shipped = str(shipped_run(shipped_root).path)
    at.selectbox(key="runs_pick").set_value(shipped).run()
    assert at.button(key="runs_delete").disabled
    at.button(key="runs_open").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Results"
    assert at.session_state["run"] == shipped


# ------------------------------------------------------------------------------------------------ hostile runs

@pytest.fixture
def hostile(app_env, shipped_root) -> dict[str, Run]:
    """A good copy of the shipped run beside one damaged run per breaker of tests/hostile_runs.py (and odd names)."""
    copy_run(shipped_run(shipped_root).path, app_env, "good-copy")
    return make_runs(app_env)


@pytest.mark.parametrize("page", ["results", "playground", "train", "runs", "how_it_works"])
def test_every_page_works_with_hostile_runs_beside_good_ones(hostile, page):
    at = open_app(page)  # no exception on the page or in the sidebar
    options = [str(o) for o in at.selectbox(key="run").options]
    assert "good-copy" in options and "mnist" in options  # a finished run: its name (the caption says the rest)
    for breaker in BREAKERS:
        (label,) = [o for o in options if o == breaker.name or o.startswith((breaker.name + " (", breaker.name + " · "))]
        assert label.startswith(f"{breaker.name} (broken: ") == (breaker.problem is not None), label


def test_runs_page_lists_every_run_and_each_broken_one_with_its_reason(hostile, shipped_root):
    at = open_app("runs")
    frame = at.dataframe[0].value.set_index("run")
    assert frame.loc["good-copy", "state"] == "done" and frame.loc["mnist", "state"] == "done"
    assert len(frame) == len(hostile) + 1 + len(list_runs(shipped_root))
    for breaker in BREAKERS:
        row = frame.loc[breaker.name]
        if breaker.problem is None:
            assert row["state"] != "broken" and row["problem"] == "", breaker.name
        else:
            assert row["state"] == "broken" and re.search(breaker.problem, row["problem"]), (breaker.name, row["problem"])
    assert "odd\\nnewline" in frame.index  # escaped, on one line


@pytest.mark.parametrize("page", ["results", "playground"])
@pytest.mark.parametrize("breaker", ["manifest-deep", "prefix-text-cell", "summary-teacher-text", "status-pid-list"])
def test_a_broken_run_chosen_in_the_sidebar_shows_its_reason(hostile, page, breaker):
    at = open_app()
    at.selectbox(key="run").set_value(str(hostile[breaker].path)).run()
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    problem = hostile[breaker].info()["problem"]
    assert f"Cannot show run {breaker}: {problem}" in texts(at, "error")
    assert not at.get("plotly_chart") and not at.table


def test_a_broken_run_can_be_deleted_from_the_runs_page(hostile):
    victim = hostile["manifest-deep"].path
    at = open_app("runs")
    at.selectbox(key="runs_pick").set_value(str(victim)).run()
    assert "is broken: manifest.json: JSON nested too deeply" in texts(at, "error")
    at.button(key="runs_delete").click().run()
    at.button(key="runs_delete_confirm").click().run()
    assert not at.exception, at.exception
    assert not victim.exists() and "Deleted run manifest-deep" in texts(at, "success")


def test_train_page_watching_a_broken_run_says_why(hostile):
    at = open_app("train")
    at.selectbox(key="train_pick").set_value(str(hostile["summary-teacher-text"].path)).run()
    assert not at.exception, at.exception
    assert "summary-teacher-text is broken: summary.json: teacher is 'x', not a mapping" in texts(at, "warning")
