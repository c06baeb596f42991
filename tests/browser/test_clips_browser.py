"""The Clips page in a real Chromium: a test clip playing as an animated GIF, the backwards toggle, the frame slider,
a mouse-drawn digit set in motion, lesson mode; screenshots to test-output/screenshots/clips*.png (look at them)."""

from __future__ import annotations

import os
import time
from urllib.parse import urljoin

import pytest

from app.charts import clips as clip_charts
from pkd import inference
from pkd.artifacts import load_ensemble
from pkd.data import get_dataset_spec, load_split
from pkd.data.moving_mnist import reverse_clips
from pkd.runs import Run
from tests.browser.conftest import draw_stroke, wait_idle
from tests.video_run import video_run_path


@pytest.fixture(scope="module")
def clips_server(chromium, shipped_root, tmp_path_factory):  # noqa: ARG001 - no server without a browser
    """An app server of its own: the shipped image runs and, in its runs folder, the session's tiny video run."""
    from tests.app.trained import copy_run
    from tests.browser.conftest import ROOT, free_port, start_server

    runs = tmp_path_factory.mktemp("clips-runs")
    copy_run(video_run_path(tmp_path_factory), runs, "tiny-video")
    env = dict(os.environ, PKD_RUNS_DIR=str(runs), PKD_PRETRAINED_DIR=str(shipped_root), PYTHONPATH=str(ROOT),
               OMP_NUM_THREADS="1")
    port = free_port()
    proc = start_server(port, env, tmp_path_factory.mktemp("clips-server") / "streamlit.log")
    yield f"http://127.0.0.1:{port}", Run(runs / "tiny-video")
    proc.terminate()
    proc.wait(timeout=30)


def goto(page, url: str) -> None:
    page.goto(url)
    page.get_by_test_id("stApp").wait_for()
    page.locator("h1").first.wait_for()


def wait_for_url(page, *parts: str) -> None:
    deadline = time.time() + 40  # a rerun on a busy 2-core machine
    while not all(part in page.url for part in parts):
        assert time.time() < deadline, f"{page.url} lacks {parts}"
        page.wait_for_timeout(200)  # not time.sleep: page.url follows replaceState only while Playwright runs


def student_answers(page, frame: int) -> list[str]:
    """The answers column of the students' table once it is for `frame`."""
    table = page.get_by_test_id("stTable").filter(has_text=f"answer after frame {frame}")
    table.wait_for()
    rows = table.locator("tbody tr")
    return [rows.nth(i).locator("td").first.inner_text().strip() for i in range(rows.count())]


_MODELS: dict[str, tuple] = {}


def expected_answers(run: Run, clip, frame: int) -> list[str]:
    """The students' answers after `frame` as the library computes them (models loaded once per run)."""
    if str(run.path) not in _MODELS:
        _MODELS[str(run.path)] = (get_dataset_spec(run.setting("data", "dataset")), load_ensemble(run))
    spec, ensemble = _MODELS[str(run.path)]
    report = inference.clip_report(ensemble, spec, clip)
    return list(clip_charts.answers_frame(report, frame, list(spec.class_names), None)[f"answer after frame {frame}"])


def test_a_test_clip_plays_and_backwards_changes_the_students_not_the_teacher(page, clips_server, screenshots):
    server, run = clips_server
    spec = get_dataset_spec(run.setting("data", "dataset"))
    frames, test = spec.sample_shape[0], load_split(spec.name, "test")
    goto(page, f"{server}/clips?run=tiny-video&clip=3")
    page.get_by_text(f"After frame {frames} of {frames}").wait_for()
    assert page.locator("h1").first.inner_text() == "Clips"
    gif = page.get_by_test_id("stImage").first.locator("img")
    gif.wait_for()
    body = page.request.get(urljoin(page.url, gif.get_attribute("src"))).body()
    assert body[:6] == b"GIF89a" and body.count(b"\x21\xf9\x04") == frames  # animated: one control block a frame
    assert student_answers(page, frames) == expected_answers(run, test.inputs[3], frames)
    teacher = page.get_by_text("Played the other way round it says exactly the same").inner_text()
    chart = page.get_by_test_id("stPlotlyChart").first
    chart.locator(".scatterlayer .trace").first.wait_for()
    assert page.get_by_test_id("stException").count() == 0
    wait_idle(page)
    page.screenshot(path=screenshots / "clips.png", full_page=True)

    wait_idle(page)  # a click while the first run still draws can be lost
    page.get_by_text("Play it backwards").click()
    wait_for_url(page, "back=1")
    expected = expected_answers(run, reverse_clips(test.inputs[3]), frames)
    deadline = time.time() + 30
    while student_answers(page, frames) != expected:
        assert time.time() < deadline, (student_answers(page, frames), expected)
        time.sleep(0.2)
    assert page.get_by_text("Played the other way round it says exactly the same").inner_text() == teacher
    page.screenshot(path=screenshots / "clips-backwards.png", full_page=True)

    wait_idle(page)
    page.get_by_role("slider").first.focus()  # the frame slider: one frame back with the keyboard
    page.keyboard.press("ArrowLeft")
    page.get_by_text(f"After frame {frames - 1} of {frames}").wait_for()
    wait_for_url(page, f"frame={frames - 1}")
    assert student_answers(page, frames - 1) == expected_answers(run, reverse_clips(test.inputs[3]), frames - 1)
    page.reload()  # the link keeps the clip, the direction and the frame
    page.get_by_text(f"After frame {frames - 1} of {frames}").wait_for()
    assert page.get_by_role("switch", name="Play it backwards").is_checked()


def test_a_mouse_drawn_digit_becomes_a_moving_clip(page, clips_server, screenshots):
    server, _ = clips_server
    goto(page, f"{server}/clips?run=tiny-video")
    page.get_by_text("my drawing", exact=True).click()
    page.get_by_text("Draw a digit (white on black)").wait_for()
    draw_stroke(page)
    page.get_by_text("The right answer: your digit, moving left").wait_for()
    assert page.get_by_test_id("stException").count() == 0
    page.screenshot(path=screenshots / "clips-drawing.png", full_page=True)


def test_lesson_mode_keeps_the_story_on_a_classroom_screen(browser, clips_server, screenshots):
    server, _ = clips_server
    context = browser.new_context(viewport={"width": 1280, "height": 800})  # a projector, not a big monitor
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        goto(page, f"{server}/clips?run=tiny-video&lesson=1&clip=3")
        page.get_by_text("Played the other way round it says exactly the same").wait_for()
        page.get_by_test_id("stPlotlyChart").first.locator(".scatterlayer .trace").first.wait_for()
        assert page.get_by_text("Every frame, every number of students").count() == 0
        page.screenshot(path=screenshots / "clips-lesson.png", full_page=True)
    finally:
        context.close()
