"""The Playground on a Fashion-MNIST run in a real Chromium: pick a test image, a hard one, upload a photo file,
step through the students. Screenshots go to test-output/screenshots/ (fashion-*.png): look at them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from pkd.data.fashion_mnist import load_test_sample
from pkd.photos import rephotograph
from pkd.runs import Run
from tests.app.test_photo_playground import fashion_run_dir
from tests.app.trained import copy_run
from tests.browser.test_browser import goto


def test_a_photo_gets_an_answer_from_every_student(page, server, runs_dir, screenshots, tmp_path_factory):
    run = Run(copy_run(fashion_run_dir(tmp_path_factory), runs_dir, "fashion-photos"))
    k_total = run.students_saved()
    page.set_default_timeout(180_000)  # every click reruns the page; other engineers' jobs share the 2 cores
    goto(page, server, "playground?run=fashion-photos")
    page.get_by_text("Pick a test image").first.wait_for()
    label = page.get_by_text("true label Ankle boot").first
    for _ in range(5):  # a click landing while the page reruns is lost (seen once in a full CI run): click again
        page.get_by_role("button", name="Ankle boot").first.click(no_wait_after=True)
        try:
            label.wait_for(timeout=30_000)
            break
        except PlaywrightTimeoutError:
            continue
    label.wait_for()
    page.get_by_text("Every number of students at once").wait_for()
    page.screenshot(path=screenshots / "fashion-gallery.png", full_page=True)
    page.get_by_role("button", name="A hard one").click()
    page.get_by_text("a hard one: the students disagree on it").wait_for()
    split, _ = load_test_sample()
    photo = rephotograph(split.inputs[120, 0].numpy(), np.random.default_rng(7))  # a real test garment, photographed
    path = Path(tmp_path_factory.mktemp("photo")) / "garment.jpg"
    Image.fromarray(photo).save(path, quality=85)
    page.locator("input[type=file]").set_input_files(str(path))
    page.get_by_text("Your photo, made grey, inverted").wait_for()
    reset = page.get_by_role("button", name="Reset to student 1")
    if reset.is_enabled():  # a new input may already start the step-through at student 1
        reset.click()
    page.get_by_text(f"Student 1 of {k_total} added").wait_for()
    for k in range(2, k_total + 1):
        page.get_by_role("button", name="Add the next student").click()
        page.get_by_text(f"Student {k} of {k_total} added").wait_for()
    table = page.get_by_test_id("stTable").last
    assert table.locator("tbody tr").count() == k_total  # one row per number of students
    page.screenshot(path=screenshots / "fashion-photo.png", full_page=True)
