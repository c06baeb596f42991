"""The explorer in a real Chromium driven by Playwright: chart, drawing, live training, reload re-attach.

Screenshots of every page go to test-output/screenshots/ (look at them: they are what a class would see).
"""

from __future__ import annotations

import os
import re
import time

import pytest

from pkd.runs import Run, list_runs



def goto(page, server: str, path: str = "") -> None:
    page.goto(f"{server}/{path}")
    page.get_by_test_id("stApp").wait_for()
    page.locator("h1").first.wait_for()


def test_app_starts_on_the_pretrained_run_and_shows_the_chart(page, server, shipped_root, screenshots):
    goto(page, server)
    assert page.locator("h1").first.inner_text() == "Results"
    chart = page.get_by_test_id("stPlotlyChart").first
    chart.locator(".main-svg").first.wait_for()
    k = Run(shipped_root / "mnist").students_saved()
    assert chart.locator(".scatterlayer .trace").count() >= 2  # prefixes, students alone (+ early exit)
    traces = chart.locator(".scatterlayer .trace")
    assert traces.last.locator(".point").count() == k  # the ensemble's curve, drawn last (on top)
    picker = page.get_by_role("combobox", name="Run shown on Results and Playground")
    assert picker.input_value().startswith("mnist (")
    page.get_by_text("Download this table (CSV)").wait_for()
    page.screenshot(path=screenshots / "results.png")


def test_a_mouse_drawn_stroke_gets_a_prediction_for_every_k(page, server, shipped_root, screenshots):
    k = Run(shipped_root / "mnist").students_saved()
    goto(page, server, "playground")
    page.get_by_text("The canvas is blank").wait_for()
    canvas = page.locator("canvas.upper-canvas")
    canvas.wait_for()
    box = canvas.bounding_box()
    x, y = box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.15
    page.mouse.move(x, y)
    page.mouse.down()
    for step in range(1, 21):  # a vertical stroke, like a "1"
        page.mouse.move(x + step * 0.5, y + step * box["height"] * 0.035)
    page.mouse.up()
    rows = page.get_by_test_id("stTable").locator("tbody tr")
    deadline = time.time() + 30
    while rows.count() != k and time.time() < deadline:
        time.sleep(0.2)
    assert rows.count() == k, f"expected one prediction row per prefix k=1..{k}"
    for i in range(k):
        cells = rows.nth(i).locator("td, th")
        texts = [cells.nth(j).inner_text().strip() for j in range(cells.count())]
        assert str(i + 1) in texts[:2] and any(t.isdigit() and len(t) == 1 for t in texts[1:])
    page.get_by_text(f"Students 1..{k} say").wait_for()
    page.get_by_text("Teacher").first.wait_for()
    page.screenshot(path=screenshots / "playground.png")
    page.get_by_role("button", name="Clear").click()
    page.get_by_text("The canvas is blank").wait_for()


def test_runs_page_lists_the_shipped_run(page, server, screenshots):
    goto(page, server, "runs")
    page.get_by_text("Open in Results").wait_for()
    page.get_by_test_id("stDataFrame").wait_for()
    page.screenshot(path=screenshots / "runs.png")


def test_train_tiny_live_progress_reload_reattaches_then_curve(page, server, runs_dir, screenshots):
    goto(page, server, "train")
    page.get_by_role("combobox", name="Start from config").click()
    page.get_by_role("option", name="tiny", exact=True).click()
    page.wait_for_timeout(500)
    page.get_by_text("Build the fast CPU scan kernel").click()  # no one-minute compile inside a test
    page.get_by_label("Epochs per student").fill("1")  # the tiny config, one epoch per student: quicker
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Started").wait_for(timeout=90_000)
    (run,) = list_runs(runs_dir)
    assert run.config()["name"] == "tiny"
    assert run.config()["students"]["optim"]["epochs"] == 1  # the form's value reached the run

    # live: state, stage and per-student progress bars while it trains
    panel = page.get_by_test_id("stMain")
    panel.get_by_text("student 1:").first.wait_for()
    deadline = time.time() + 120
    while run.state() != "running" or "loss" not in run.status():
        assert time.time() < deadline, f"run never got going: {run.status()}"
        time.sleep(0.2)
    page.get_by_test_id("stMetricValue").filter(has_text="running").wait_for()
    page.get_by_text(re.compile(r"(teacher|student \d): \d+%")).first.wait_for()
    page.screenshot(path=screenshots / "train-live.png")

    # a reload is a new session: the page must find the running run by itself
    page.reload()
    page.get_by_test_id("stApp").wait_for()
    watching = page.get_by_role("combobox", name="Watching")
    watching.wait_for()
    assert watching.input_value().startswith(run.name)
    if run.state() == "running":
        page.get_by_test_id("stMetricValue").filter(has_text="running").wait_for()

    # finished: state done and the accuracy-vs-FLOPs curve in the live panel
    deadline = time.time() + 300
    while run.state() == "running":
        assert time.time() < deadline, "the tiny run did not finish in 5 minutes"
        time.sleep(0.5)
    assert run.state() == "done", run.status()
    page.get_by_test_id("stMetricValue").filter(has_text="done").wait_for(timeout=30_000)
    curve = page.get_by_test_id("stPlotlyChart").filter(has=page.locator(".scatterlayer .trace .point"))
    deadline = time.time() + 30
    while curve.count() < 2 and time.time() < deadline:  # training curves + accuracy vs FLOPs
        time.sleep(0.3)
    assert curve.count() >= 2
    page.get_by_text("student 2: done").wait_for()
    page.screenshot(path=screenshots / "train-done.png")


HOSTILE = ["manifest-deep", "status-pid-list", "prefix-text-cell", "summary-teacher-text", "metrics-megabyte-line"]


@pytest.fixture
def hostile_server(chromium, shipped_root, tmp_path):  # noqa: ARG001 - no server without a browser
    """An app server of its own whose runs folder holds a good run beside damaged ones and odd names."""
    from tests.app.trained import copy_run
    from tests.browser.conftest import ROOT, free_port, start_server
    from tests.hostile_runs import BREAKERS, make_runs

    runs = tmp_path / "runs"
    runs.mkdir()
    copy_run(shipped_root / "mnist", runs, "good-copy")
    make_runs(runs, breakers=[b for b in BREAKERS if b.name in HOSTILE], odd_names=["odd\nnewline", "odd\x1b[31m"])
    env = dict(os.environ, PKD_RUNS_DIR=str(runs), PKD_PRETRAINED_DIR=str(shipped_root), PYTHONPATH=str(ROOT))
    port = free_port()
    proc = start_server(port, env, tmp_path / "streamlit.log")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)


def test_hostile_runs_beside_good_ones_are_listed_with_their_reasons(page, hostile_server):
    """Every page renders with damaged runs in the runs folder; the Runs page offers the good runs and each broken
    one with its one-line reason."""
    for path in ("", "playground", "train", "runs"):
        goto(page, hostile_server, path)
        page.wait_for_timeout(500)
        assert page.get_by_test_id("stException").count() == 0, path
    page.get_by_test_id("stDataFrame").wait_for()
    page.get_by_role("combobox", name="Run", exact=True).click()
    options = page.get_by_role("option").all_inner_texts()
    assert any(o.startswith("good-copy (done, ") for o in options), options
    assert any(o.startswith("odd\\nnewline (") for o in options), options
    assert any(o.startswith("manifest-deep (broken: manifest.json: JSON nested too deeply") for o in options)
    assert any(o.startswith("prefix-text-cell (broken: prefix.csv row 2: cumulative_flops 'abc' is not") for o in
               options), options
    assert any(o.startswith("metrics-megabyte-line (done, ") for o in options), options
    page.keyboard.press("Escape")


def test_sweeps_page_shows_the_front_and_a_clicked_point_opens_its_run(page, server, shipped_root, screenshots):
    """The shipped sweep's points with the front on top; clicking a front point picks it; Open in Results."""
    from pkd import sweep as pkd_sweep

    shipped = shipped_root / "sweep-quick"
    if not (shipped / "sweep.json").is_file():
        pytest.skip(f"no shipped sweep in {shipped}")
    points = pkd_sweep.sweep_points(pkd_sweep.Sweep(shipped))
    front = pkd_sweep.front(points, "val")
    goto(page, server, "sweeps")
    assert page.locator("h1").first.inner_text() == "Sweeps"
    chart = page.get_by_test_id("stPlotlyChart").first
    chart.locator(".main-svg").first.wait_for()
    traces = chart.locator(".scatterlayer .trace")
    assert traces.count() == len({p["run"] for p in points}) + 1  # one per run, the front on top
    assert traces.last.locator(".point").count() == len(front)
    page.screenshot(path=screenshots / "sweeps.png")

    target = front[-1]  # the most accurate point of the front
    traces.last.locator(".point").last.click(force=True)
    picker = page.get_by_role("combobox", name="Point")
    deadline = time.time() + 20
    while not picker.input_value().startswith(f"{target['name']} k={target['k']} "):
        assert time.time() < deadline, f"the click did not pick {target['name']} k={target['k']}: " \
                                       f"{picker.input_value()}"
        time.sleep(0.3)
    page.get_by_role("button", name="Open in Results").click()
    page.locator("h1", has_text="Results").wait_for()
    run_picker = page.get_by_role("combobox", name="Run shown on Results and Playground")
    assert run_picker.input_value().startswith(f"{target['name']} (")
    page.screenshot(path=screenshots / "sweeps-open-results.png")
