"""The Compare page in a real Chromium against a real server: the run table's filter, the CSV it downloads, a paper
figure downloaded as SVG that parses, and the per-sample diff of two prefixes of a trained tiny run."""

from __future__ import annotations

import csv
import io
import os
import shutil
import time
import xml.etree.ElementTree as ET

import pytest

from pkd import stats
from pkd.compare import run_answers, teacher_right
from pkd.runs import Run
from tests.browser.conftest import wait_idle


@pytest.fixture(scope="module")
def compare_server(chromium, shipped_root, tiny_run, tmp_path_factory):  # noqa: ARG001 - no server without a browser
    """An app server of its own: the shipped runs, and a copy of the tiny run in its runs folder."""
    from tests.browser.conftest import ROOT, free_port, start_server

    runs = tmp_path_factory.mktemp("compare-runs")
    shutil.copytree(tiny_run.path, runs / "tiny")
    env = dict(os.environ, PKD_RUNS_DIR=str(runs), PKD_PRETRAINED_DIR=str(shipped_root), PYTHONPATH=str(ROOT))
    port = free_port()
    proc = start_server(port, env, tmp_path_factory.mktemp("compare-server") / "streamlit.log")
    yield f"http://127.0.0.1:{port}", Run(runs / "tiny")
    proc.terminate()
    proc.wait(timeout=30)


def open_compare(page, url: str, runs: str) -> None:
    page.goto(f"{url}/compare?runs={runs}")
    page.locator("h1", has_text="Compare").wait_for()
    page.get_by_test_id("stDataFrame").first.wait_for(timeout=180_000)  # a busy machine: other jobs beside


def wait_for(condition, what: str, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, what
        time.sleep(0.2)


def test_filter_then_csv_holds_exactly_the_rows_shown(page, compare_server, shipped_root, screenshots):
    url, _ = compare_server
    if not (shipped_root / "mnist-independent").is_dir():
        pytest.skip("needs the shipped mnist and mnist-independent runs")
    open_compare(page, url, "mnist,mnist-independent")
    page.get_by_role("button", name="Download these 2 rows (CSV)").wait_for()
    page.screenshot(path=screenshots / "compare.png")
    box = page.get_by_role("textbox", name="Filter rows")
    box.fill("independent")
    box.press("Enter")
    button = page.get_by_role("button", name="Download these 1 rows (CSV)")
    button.wait_for()
    with page.expect_download() as download:
        button.click()
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    assert [r["run"] for r in rows] == ["mnist-independent"]
    assert rows[0]["distill.mode"] == "independent"
    summary = Run(shipped_root / "mnist-independent").prefix_table()[-1]
    assert float(rows[0]["test accuracy"]) == pytest.approx(round(100 * summary["prefix_acc"], 2))


def test_pareto_figure_downloads_as_svg_that_parses(page, compare_server, shipped_root):
    url, _ = compare_server
    open_compare(page, url, "mnist,mnist-independent")
    button = page.locator(".st-key-compare_pareto_file_svg").get_by_role("button")
    button.wait_for()
    with page.expect_download(timeout=120_000) as download:
        button.click()
    assert download.value.suggested_filename == "pareto-front.svg"
    root = ET.fromstring(download.value.path().read_bytes())
    assert root.tag.endswith("svg")
    assert float(root.get("width")) == pytest.approx(312)  # one column: 3.25 in at 96 dpi
    text = " ".join(t for t in root.itertext())
    assert "test accuracy" in text and "Pareto front" in text
    assert "Times New Roman" in download.value.path().read_text()  # the paper preset's serif font


def choose(page, label: str, option: str) -> None:
    """Pick `option` in the selectbox `label` (again if a rerun closed the list before the click landed)."""
    box = page.get_by_role("combobox", name=label)
    for _ in range(3):
        wait_idle(page)
        box.click()
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=10_000)
        except Exception:  # noqa: BLE001 - playwright's TimeoutError: the list closed under a rerun; try again
            page.keyboard.press("Escape")
            continue
        wait_for(lambda: box.input_value() == option, f"{label} did not take {option}", 20)
        return
    raise AssertionError(f"could not pick {option} in {label}")


def test_per_sample_diff_shows_the_samples_one_prefix_gets_right_and_the_other_wrong(page, compare_server,
                                                                                      screenshots):
    url, tiny = compare_server
    open_compare(page, url, "tiny")
    choose(page, "A: students", "student 1")
    choose(page, "B: students", "the teacher")
    wait_idle(page)
    page.locator(".st-key-compare_diff_on").get_by_text("Compare them sample by sample").click()
    answers = run_answers(tiny)
    test = stats.mcnemar(answers.right[0].tolist(), teacher_right(tiny, answers.split).tolist())
    summary = page.get_by_text("is right where B is wrong on")
    summary.wait_for(timeout=300_000)
    words = summary.inner_text()
    assert f"wrong on {test.a_only}, B" in words and f"wrong on {test.b_only}." in words
    assert stats.describe(test.diff, test.verdict) in words
    grids = page.get_by_test_id("stPlotlyChart")
    wait_for(lambda: grids.count() >= 2 + (test.a_only > 0) + (test.b_only > 0), "the sample grids are not drawn")
    if test.b_only:  # each image titled with its true class and both answers
        page.get_by_text("B right, A wrong").wait_for()
        assert page.locator(".gtitle, .annotation-text").filter(has_text="true").count() >= 1
    page.screenshot(path=screenshots / "compare-diff.png")


def test_parallel_coordinates_wait_for_their_toggle(page, compare_server, shipped_root, screenshots):
    """Off by default, the page draws no parallel-coordinates chart (WebGL: software rendering, about 1 s of CPU per
    open on a laptop without a graphics card); turned on, Plotly draws it with one line per run."""
    url, _ = compare_server
    if not (shipped_root / "mnist-independent").is_dir():
        pytest.skip("needs the shipped mnist and mnist-independent runs")
    open_compare(page, url, "mnist,mnist-independent")
    toggle = page.locator(".st-key-compare_parallel_on")
    toggle.get_by_text("Show parallel coordinates").wait_for()
    wait_idle(page)
    assert page.locator(".parcoords").count() == 0
    page.get_by_role("heading", name="Parallel coordinates").scroll_into_view_if_needed()
    page.screenshot(path=screenshots / "compare-parallel-off.png")
    toggle.get_by_text("Show parallel coordinates").click()
    page.locator(".parcoords").first.wait_for(timeout=120_000)
    wait_idle(page)
    assert "parallel=1" in page.url
    assert page.locator(".parcoords .axis-title").count() >= 2  # one title per axis
    page.get_by_role("heading", name="Parallel coordinates").scroll_into_view_if_needed()
    page.screenshot(path=screenshots / "compare-parallel-on.png")
