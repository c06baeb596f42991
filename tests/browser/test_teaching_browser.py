"""Teaching distillation in a real Chromium (issue 29): the soft-target panel's bars are softmax(logits / T) of the
teacher on the digit shown, 'Show me a hard digit' opens one the numbers of students disagree on, and the guided
lesson walked end to end (each card ticks off when its action is done; a reload keeps the step).

Screenshots of each lesson step go to test-output/screenshots/lesson-*.png.
"""

from __future__ import annotations

import re
import time

import pytest
import torch

from pkd.artifacts import load_ensemble, load_teacher
from pkd.data import get_dataset_spec, load_split
from pkd.runs import Run
from tests.browser.test_browser import goto

DIGIT = 17
DONE = re.compile("Done:")  # the card's tick (case-sensitive: the path line says "steps done")


def chart_data(page, title_part: str) -> dict[str, list[float]]:
    """{trace name: y} of the Plotly chart whose title holds `title_part`, read from the drawn figure itself."""
    deadline = time.time() + 30
    while time.time() < deadline:
        found = page.evaluate("""(part) => {
            for (const gd of document.querySelectorAll('.js-plotly-plot')) {
                const title = gd.layout && gd.layout.title && gd.layout.title.text || '';
                if (title.includes(part)) return Object.fromEntries(gd.data.map(t => [t.name, Array.from(t.y)]));
            }
            return null; }""", title_part)
        if found:
            return found
        page.wait_for_timeout(300)
    raise AssertionError(f"no chart titled ...{title_part}...")


def slider(page, label: str):
    """The thumb of the Streamlit slider labelled `label` (keyboard: arrows step, End goes to the maximum)."""
    return page.get_by_test_id("stSlider").filter(has_text=label).get_by_role("slider")


def wait_for_url(page, part: str) -> None:
    deadline = time.time() + 30
    while part not in page.url:
        assert time.time() < deadline, f"{page.url} lacks {part}"
        page.wait_for_timeout(200)


def test_soft_target_bars_are_the_teachers_softmax_at_t(page, server, shipped_root, screenshots):
    run = Run(shipped_root / "mnist")
    spec = get_dataset_spec(run.setting("data", "dataset"))
    with torch.no_grad():
        logits = load_teacher(run)(spec.normalize(load_split(spec.name, "test").inputs[DIGIT][None].float()))[0]
    goto(page, server, f"playground?digit={DIGIT}&T=4")
    page.get_by_text("What the teacher teaches").wait_for()
    for temperature in (4.0, 4.5, 5.0):
        if temperature > 4:
            slider(page, "Temperature T").press("ArrowRight")  # one step of 0.5
            wait_for_url(page, f"T={temperature:g}")
        bars = chart_data(page, f"softened by T = {temperature:g}")
        want = 100 * torch.softmax(logits / temperature, -1)
        assert torch.tensor(bars[f"teacher at T = {temperature:g} (soft targets)"]) == pytest.approx(want, abs=1e-3)
        assert torch.tensor(bars["teacher at T = 1"]) == pytest.approx(100 * torch.softmax(logits, -1), abs=1e-3)
    page.get_by_text(re.compile(r"KL = [0-9.e-]+")).first.wait_for()
    page.get_by_test_id("stHeading").filter(has_text="soft targets").scroll_into_view_if_needed()
    page.screenshot(path=screenshots / "playground-soft-targets.png")


def test_show_me_a_hard_digit_opens_one_the_students_disagree_on(page, server, shipped_root, screenshots):
    run = Run(shipped_root / "mnist")
    spec = get_dataset_spec(run.setting("data", "dataset"))
    goto(page, server, "playground")
    page.get_by_role("button", name="Show me a hard digit").click()
    page.get_by_text("A hard digit:").wait_for()
    wait_for_url(page, "digit=")
    index = int(re.search(r"digit=(\d+)", page.url).group(1))
    page.get_by_text(f"test digit #{index}").wait_for()
    with torch.no_grad():
        x = spec.normalize(load_split(spec.name, "test").inputs[index][None].float())
        assert len({int(lp.argmax()) for lp in load_ensemble(run).all_prefixes(x)}) > 1
    page.get_by_text("Show them (asks every number of students").click()
    page.get_by_text("Stopped after student 1, and wrong").wait_for()
    page.get_by_test_id("stHeading").filter(has_text="Digits the students get wrong").scroll_into_view_if_needed()
    page.screenshot(path=screenshots / "playground-hard-digits.png")


def draw_a_seven(page) -> None:
    canvas = page.locator("canvas.upper-canvas")
    canvas.wait_for()
    box = canvas.bounding_box()
    points = [(0.25, 0.2), (0.75, 0.2), (0.6, 0.5), (0.45, 0.85)]
    page.mouse.move(box["x"] + box["width"] * points[0][0], box["y"] + box["height"] * points[0][1])
    page.mouse.down()
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        for step in range(1, 11):
            f = step / 10
            page.mouse.move(box["x"] + box["width"] * (x0 + f * (x1 - x0)),
                            box["y"] + box["height"] * (y0 + f * (y1 - y0)))
    page.mouse.up()


def step_done(page, n: int, screenshots) -> None:
    """Step n's card shows its tick; screenshot; on to the next step."""
    card = page.locator(".st-key-lesson_card")
    card.get_by_text(f"Step {n} of 7").wait_for()
    card.get_by_text(DONE).wait_for()
    wait_for_url(page, "ticked=")
    card.scroll_into_view_if_needed()
    page.screenshot(path=screenshots / f"lesson-{n}.png")
    if n < 7:
        card.get_by_role("button", name="Next step →").click()
        page.locator(".st-key-lesson_card").get_by_text(f"Step {n + 1} of 7").wait_for()


def test_the_lesson_walked_end_to_end(page, server, shipped_root, screenshots):
    if not (shipped_root / "moving-mnist" / "summary.json").is_file():
        pytest.skip("the Clips step needs the shipped moving-mnist run")
    goto(page, server, "?lesson=1")
    card = page.locator(".st-key-lesson_card")
    card.get_by_text("Step 1 of 7").wait_for()
    card.get_by_text(re.compile("Do this:")).wait_for()
    page.get_by_test_id("stRadioOption").filter(has_text="linear").click()  # (the card names it too)
    step_done(page, 1, screenshots)

    page.locator("h1", has_text="Playground").wait_for()
    draw_a_seven(page)
    step_done(page, 2, screenshots)

    page.get_by_role("button", name="Add the next student").click()
    card.get_by_text(DONE).wait_for()
    page.reload()  # a shared link / reload keeps the step and its tick
    page.locator(".st-key-lesson_card").get_by_text("Step 3 of 7").wait_for()
    step_done(page, 3, screenshots)
    page.get_by_role("button", name="Random digit").click()  # a reload forgets the drawing (it is not in the link)
    page.get_by_text(re.compile(r"test digit #\d+")).wait_for()

    slider(page, "at least this sure").press("End")
    step_done(page, 4, screenshots)

    slider(page, "Temperature T").press("End")
    step_done(page, 5, screenshots)

    page.locator("h1", has_text="Clips").wait_for()
    page.locator(".st-key-clips_back").get_by_text("Play it backwards").click()  # (the card names it too)
    step_done(page, 6, screenshots)

    page.locator("h1", has_text="How it works").wait_for()
    slider(page, "Reading:").press("End")
    step_done(page, 7, screenshots)
    card.get_by_text("7 of 7 steps done").wait_for()
