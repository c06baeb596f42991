"""The explorer in a real Chromium driven by Playwright: chart, drawing, live training, reload re-attach.

Screenshots of every page go to test-output/screenshots/ (look at them: they are what a class would see).
"""

from __future__ import annotations

import os
import re
import time

import pytest

from app.charts.format import students_text
from pkd.runs import Run, list_runs
from tests.browser.conftest import draw_stroke



def goto(page, server: str, path: str = "") -> None:
    page.goto(f"{server}/{path}")
    page.get_by_test_id("stApp").wait_for()
    page.locator("h1").first.wait_for()


def drawn_traces(chart, at_least: int = 1):
    """The chart's scatter traces once Plotly has drawn at least `at_least` of them (the SVG frame comes first,
    the traces a moment later on a loaded machine)."""
    traces = chart.locator(".scatterlayer .trace")
    deadline = time.time() + 30
    while traces.count() < at_least:
        assert time.time() < deadline, f"only {traces.count()} traces drawn, expected at least {at_least}"
        time.sleep(0.2)
    return traces


def test_app_starts_on_the_pretrained_run_and_shows_the_chart(page, server, shipped_root, screenshots):
    goto(page, server)
    assert page.locator("h1").first.inner_text() == "Results"
    chart = page.get_by_test_id("stPlotlyChart").first
    chart.locator(".main-svg").first.wait_for()
    rows = Run(shipped_root / "mnist").prefix_table()
    traces = drawn_traces(chart, 3)  # prefixes, teacher, students alone (+ early exit)
    assert len(rows) in [traces.nth(i).locator(".point").count() for i in range(traces.count())]
    for row in rows:  # every dot carries its accuracy, readable without hovering
        chart.locator(".textpoint", has_text=f"{100 * row['prefix_acc']:.2f}%").first.wait_for()
    chart.locator(".textpoint", has_text="teacher:").wait_for()  # the teacher, at its own cost
    chart.locator(".xtick", has_text="million").first.wait_for()  # FLOPs with units
    chart.locator(".x2tick", has_text="%").first.wait_for()  # and as % of the teacher's
    picker = page.get_by_role("combobox", name="Run shown on Results and Playground")
    assert picker.input_value() == "mnist"
    page.get_by_text("Download this table (CSV)").wait_for()
    page.screenshot(path=screenshots / "results.png")


def test_a_mouse_drawn_stroke_gets_a_prediction_for_every_k(page, server, shipped_root, screenshots):
    k = Run(shipped_root / "mnist").students_saved()
    goto(page, server, "playground")
    page.get_by_text("The canvas is blank").wait_for()
    draw_stroke(page)
    rows = page.get_by_test_id("stTable").last.locator("tbody tr")  # every number of students at once
    wait_for_count(rows, k, 30)
    assert rows.count() == k, f"expected one prediction row per prefix k=1..{k}"
    for i in range(k):
        cells = rows.nth(i).locator("td, th")
        texts = [cells.nth(j).inner_text().strip() for j in range(cells.count())]
        assert str(i + 1) in texts[0] and any(t.isdigit() and len(t) == 1 for t in texts[1:])
    page.get_by_text("Student 1 says").wait_for()  # a new drawing: the step-through starts at student 1
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
    page.get_by_text("Fast CPU kernel").click()  # no one-minute compile inside a test
    epochs = page.get_by_role("spinbutton", name="Epochs per student")
    deadline = time.time() + 60  # a rerun may briefly show the stale input beside the new one
    while epochs.count() != 1:
        assert time.time() < deadline, f"{epochs.count()} 'Epochs per student' inputs on the Train page"
        page.wait_for_timeout(200)
    epochs.fill("1")  # the tiny config, one epoch per student: quicker
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Started").wait_for(timeout=90_000)
    (run,) = [r for r in list_runs(runs_dir) if r.config()["name"] == "tiny"]  # other tests copy runs here too
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
    page.get_by_text("student 2: done").first.wait_for()  # a rerun may briefly show a stale copy too
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

    def options(typed: str) -> list[str]:
        """The picker's options for what a user types (the list is long: the shipped runs, seed groups and
        sweeps are in it, and the dropdown renders only a window of it)."""
        page.get_by_role("combobox", name="Run", exact=True).click()
        page.keyboard.type(typed)
        page.get_by_role("option").first.wait_for()
        shown = page.get_by_role("option").all_inner_texts()
        page.keyboard.press("Escape")
        return shown

    assert "good-copy" in options("good-copy")
    assert any(o.startswith("odd\\nnewline") for o in options("odd")), options("odd")
    assert any(o.startswith("manifest-deep (broken: manifest.json: JSON nested too deeply")
               for o in options("manifest-deep"))
    assert any(o.startswith("prefix-text-cell (broken: prefix.csv row 2: cumulative_flops 'abc' is not")
               for o in options("prefix-text-cell"))
    assert "metrics-megabyte-line" in options("metrics-megabyte")


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
    traces = drawn_traces(chart, len({p["run"] for p in points}) + 1)
    assert traces.count() == len({p["run"] for p in points}) + 1  # one per run, the front on top
    assert traces.last.locator(".point").count() == len(front)
    page.screenshot(path=screenshots / "sweeps.png")

    target = front[-1]  # the most accurate point of the front
    traces.last.locator(".point").last.click(force=True)
    picker = page.get_by_role("combobox", name="Point")
    deadline = time.time() + 20
    picked = f"{target['name']} · {students_text(target['k'])} · "
    while not picker.input_value().startswith(picked):
        assert time.time() < deadline, f"the click did not pick {picked}: " \
                                       f"{picker.input_value()}"
        time.sleep(0.3)
    page.get_by_role("button", name="Open in Results").click()
    page.locator("h1", has_text="Results").wait_for()
    run_picker = page.get_by_role("combobox", name="Run shown on Results and Playground")
    assert run_picker.input_value() == f"{shipped.name} / {target['name']}"  # a trial, named with its sweep
    page.screenshot(path=screenshots / "sweeps-open-results.png")


# ------------------------------------------------------------------------------------------------ lesson tools

def wait_for_count(rows, n: int, seconds: float) -> None:
    """Until the locator matches n elements or `seconds` pass (the caller asserts the count)."""
    deadline = time.time() + seconds
    while rows.count() != n and time.time() < deadline:
        rows.page.wait_for_timeout(200)


def wait_for_url(page, *parts: str) -> None:
    """The address bar (the link a teacher shares) holds every part, e.g. 'k=2'."""
    deadline = time.time() + 20
    while not all(part in page.url for part in parts):
        assert time.time() < deadline, f"{page.url} lacks {parts}"
        time.sleep(0.2)


def test_a_shared_link_opens_that_exact_state_and_a_reload_keeps_it(page, server, shipped_root, screenshots):
    k_total = Run(shipped_root / "mnist").students_saved()
    k = min(2, k_total)
    said = "Student 1 says" if k == 1 else f"Students 1–{k} together say"
    goto(page, server, f"playground?run=mnist&k={k}&digit=17")
    page.get_by_text("test digit #17").wait_for()
    page.get_by_text(said).wait_for()
    wait_for_url(page, "run=mnist", f"k={k}", "digit=17")
    page.reload()
    page.get_by_text("test digit #17").wait_for()
    page.get_by_text(said).wait_for()
    goto(page, server, "?axis=linear&early=0&k=abc&run=nope")  # bad values: the defaults, no traceback
    page.get_by_test_id("stPlotlyChart").first.locator(".main-svg").first.wait_for()
    assert page.get_by_test_id("stException").count() == 0
    assert page.get_by_role("radio", name="linear").is_checked()
    assert not page.get_by_role("switch", name="early-exit curve").is_checked()
    wait_for_url(page, "axis=linear", "early=0", "run=mnist")
    page.screenshot(path=screenshots / "results-link-linear.png")


def test_step_through_adds_students_one_click_at_a_time(page, server, shipped_root, screenshots):
    k_total = Run(shipped_root / "mnist").students_saved()
    if k_total < 2:
        pytest.skip("one student: nothing to step through")
    goto(page, server, "playground?digit=17")
    page.get_by_text("Student 1 says").wait_for()  # the step-through starts at student 1
    assert page.get_by_role("button", name="Reset to student 1").is_disabled()
    steps = page.get_by_test_id("stTable").first.locator("tbody tr")
    for k in range(2, k_total + 1):
        page.get_by_role("button", name="Add the next student").click()
        page.get_by_text(f"Students 1–{k} together say").wait_for()
        wait_for_url(page, f"k={k}")
        wait_for_count(steps, k, 20)  # the heading can arrive before the table's new row on a busy machine
        assert steps.count() == k
    assert page.get_by_role("button", name="Add the next student").is_disabled()
    page.get_by_text("corrects the running sum").wait_for()
    page.screenshot(path=screenshots / "playground-step-through.png", full_page=True)


def test_lesson_mode_hides_the_advanced_controls_and_is_kept_in_the_link(page, server, screenshots):
    goto(page, server, "?lesson=1")
    page.get_by_test_id("stPlotlyChart").first.locator(".main-svg").first.wait_for()
    assert page.get_by_role("switch", name="Lesson mode").is_checked()
    assert page.get_by_text("Overlay other runs").count() == 0 and page.get_by_text("Export this prefix").count() == 0
    page.screenshot(path=screenshots / "results-lesson.png", full_page=True)
    page.reload()
    page.get_by_test_id("stPlotlyChart").first.wait_for()
    assert page.get_by_role("switch", name="Lesson mode").is_checked()
    page.get_by_text("Lesson mode").click()
    page.get_by_text("Overlay other runs").wait_for()
    deadline = time.time() + 20
    while "lesson=1" in page.url:
        assert time.time() < deadline, page.url
        time.sleep(0.2)
    goto(page, server, "train?lesson=1")
    page.get_by_text("Epochs per student").wait_for()
    assert page.get_by_text("Temperature T").count() == 0 and page.get_by_text("GPU:").count() == 0
    page.screenshot(path=screenshots / "train-lesson.png", full_page=True)


def test_how_it_works_draws_the_ensemble(page, server, shipped_root, screenshots):
    k_total = Run(shipped_root / "mnist").students_saved()
    goto(page, server, "how_it_works")
    svg = page.locator("svg[aria-label^='residual ensemble']")
    svg.wait_for()
    assert svg.locator("rect").count() >= k_total + 1  # the image and every student
    page.get_by_text("What a FLOP is here").wait_for()
    page.get_by_test_id("stMarkdown").filter(has=page.locator(".katex")).first.wait_for()  # the loss, offline KaTeX
    page.get_by_text("Glossary: every word the app uses").click()
    page.get_by_text("One pass over all the training images").wait_for()
    page.screenshot(path=screenshots / "how-it-works.png", full_page=True)
