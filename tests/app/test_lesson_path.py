"""Lesson mode's guided path (issue 29): each step's card ticks off when its action is done on the real widget, the
step and the ticks live in the URL (a shared link restores them), and the card leads on to the next step's page."""

from __future__ import annotations

import pytest

from app import lesson
from tests.app.test_lesson import open_link, texts
from tests.app.trained import copy_run

PAGE_FILES = {"results": None, "playground": "playground", "clips": "clips", "how": "how_it_works"}


def card_text(at) -> str:
    return texts(at, "markdown") + "\n" + texts(at, "caption")


def test_the_path_runs_results_to_how_it_works_and_parses_links():
    assert [s.page for s in lesson.STEPS] == ["results", "playground", "playground", "playground", "playground",
                                              "clips", "how"]
    assert lesson.parse_done("3,1,x,9,1,") == [1, 3] and lesson.parse_done(None) == []
    assert lesson.current({"lesson_step": 4}) == 4 and lesson.current({"lesson_step": 99}) == 1
    assert lesson.tick({"lesson_done": "1", "pg_conf": 0.995, "lesson_events": {"added"}}) == [1, 3, 4]


def do_step(at, n: int, video: bool = False):
    """The action step n asks for, on its real widget."""
    if n == 1:
        return at.radio(key="results_xscale").set_value("linear").run()
    if n == 2:
        return at.button(key="pg_random").click().run()
    if n == 3:
        return at.button(key="pg_step_next").click().run()
    if n == 4:
        return at.slider(key="pg_conf").set_value(0.99).run()
    if n == 5:
        return at.slider(key="soft_T").set_value(5.0).run()
    if n == 6:
        return at.toggle(key="clips_back").set_value(True).run()
    slider = at.slider(key="how_read")
    return slider.set_value(slider.max).run()


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7])
def test_each_step_ticks_off_when_its_action_is_done(app_env, n):
    params = {"lesson": "1", "step": str(n)} | ({"digit": "17"} if n in (3, 4, 5) else {})
    at = open_link(params, PAGE_FILES[lesson.STEPS[n - 1].page])
    assert f"Step {n} of 7" in card_text(at) and "**Do this:**" in card_text(at)
    assert n not in lesson.parse_done(at.query_params.get("ticked"))
    do_step(at, n)
    assert not at.exception, at.exception
    assert "**Done:**" in card_text(at) and f"Step {n} of 7" in card_text(at)
    assert n in lesson.parse_done(at.query_params["ticked"]) and at.query_params.get("step", "1") == str(n)


def test_the_clips_step_ticks_off_when_the_clip_plays_backwards(app_env, video_run):
    copy_run(video_run.path, app_env, "tiny-video")
    at = open_link({"lesson": "1", "step": "6", "run": "tiny-video"}, "clips")
    assert "Step 6 of 7" in card_text(at) and "**Do this:**" in card_text(at)
    do_step(at, 6)
    assert not at.exception, at.exception
    assert "**Done:**" in card_text(at) and at.query_params["ticked"] == "6"


def test_a_shared_link_restores_the_step_and_its_ticks(app_env):
    at = open_link({"step": "3", "ticked": "1,2", "digit": "17"}, "playground")  # step= alone turns lesson mode on
    assert at.toggle(key="lesson").value is True
    assert "Step 3 of 7: Add students one at a time" in card_text(at) and "2 of 7 steps done" in card_text(at)
    assert at.query_params["step"] == "3" and at.query_params["ticked"] == "1,2"
    at.button(key="lesson_next").click().run()  # not done yet: still allowed, the tick stays empty
    assert "Step 4 of 7" in card_text(at) and at.query_params["step"] == "4"
    at = open_link({"lesson": "1", "step": "5"}, None)  # a step on another page: a button leads there
    assert "This step happens on the **Playground** page" in card_text(at)
    at.button(key="lesson_go").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Playground" and "Step 5 of 7" in card_text(at)


def test_lesson_mode_off_shows_no_card_and_keeps_the_link_clean(app_env):
    at = open_link({"digit": "17"}, "playground")
    assert "Step 1 of 7" not in card_text(at) and "step" not in at.query_params and "ticked" not in at.query_params
