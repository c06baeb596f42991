"""AppTest of the Clips page on a tiny video run: the story, the backwards toggle (the students' answers change, the
teacher's does not), the clip index and frame in the link (a bad one falls back), a drawing set in motion, lesson
mode, and a folder with only image runs (how to make a video run)."""

from __future__ import annotations

import json

import numpy
import pytest
import torch

from app.charts import clips as clip_charts
from pkd import inference
from pkd.artifacts import load_ensemble, load_teacher
from pkd.data import get_dataset_spec, load_split
from pkd.data.moving_mnist import reverse_clips, reverse_label
from pkd.runs import Run
from tests.app.test_pages import canvas_value, drawn_one
from tests.app.trained import ROOT, copy_run

streamlit_testing = pytest.importorskip("streamlit.testing.v1")
MAIN = str(ROOT / "app" / "main.py")
TIMEOUT = 90


@pytest.fixture(scope="module")
def library(video_run):
    """What the page must show, computed by the library: spec, ensemble, teacher, test split, FLOPs per frame."""
    spec = get_dataset_spec(video_run.setting("data", "dataset"))
    ensemble = load_ensemble(video_run)
    return spec, ensemble, load_teacher(video_run), load_split(spec.name, "test"), inference.frame_flops(ensemble)


@pytest.fixture
def video_env(app_env, video_run):
    """The runs folder holding a copy of the tiny video run, named tiny-video (beside the shipped image runs)."""
    copy_run(video_run.path, app_env, "tiny-video")
    return app_env


def open_link(params: dict[str, str]):
    at = streamlit_testing.AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    at.query_params.update(params)
    at.switch_page("app_pages/clips.py")
    at.run()
    assert not at.exception, at.exception
    return at


def texts(at, kind: str) -> str:
    return "\n".join(str(e.value) for e in getattr(at, kind))


def answers(at, frame: int) -> list[str]:
    table = next(t.value for t in at.table if f"answer after frame {frame}" in t.value.columns)
    return list(table[f"answer after frame {frame}"]) + list(table["how sure"])


def expected(library, clip, frame: int) -> list[str]:
    spec, ensemble, teacher, _, flops = library
    report = inference.clip_report(ensemble, spec, clip, teacher, flops)
    frame_table = clip_charts.answers_frame(report, frame, list(spec.class_names), None)
    return list(frame_table[f"answer after frame {frame}"]) + list(frame_table["how sure"])


def teacher_lines(at) -> list[str]:
    return [m.value for m in at.markdown if m.value.startswith("**Teacher**") or "other way round" in m.value]


def chart_y(at) -> list[list[float]]:
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    return [trace["y"] for trace in spec["data"] if not trace["name"].startswith("Teacher")]


def test_the_page_tells_the_story_on_a_video_run(video_env, library):
    spec, ensemble, teacher, test, _ = library
    frames = spec.sample_shape[0]
    at = open_link({"run": "tiny-video"})
    assert at.title[0].value == "Clips"
    intro = at.markdown[0].value
    assert "loses the direction altogether" in intro and "read the frames in order" in intro
    assert at.selectbox(key="clips_run").value == str(video_env / "tiny-video")
    assert answers(at, frames) == expected(library, test.inputs[0], frames)
    lines = teacher_lines(at)
    assert len(lines) == 2 and "exactly the same" in lines[1] and "averages its frames" in lines[1]
    report = inference.clip_report(ensemble, spec, test.inputs[0], teacher)
    name, p = clip_charts.answer(report.teacher_probs, list(spec.class_names))
    assert f"**{name}** ({100 * p:.1f}% sure)" in lines[0]
    assert f"The right answer: **{spec.class_names[int(test.labels[0])]}**" in texts(at, "caption")
    assert f"for {ensemble.cumulative_flops()[-1]:,} FLOPs so far" in texts(at, "caption")
    assert len(chart_y(at)) == ensemble.k and all(len(y) == frames for y in chart_y(at))
    assert at.query_params["clip"] == "0" and at.query_params["run"] == "tiny-video"


def test_the_teacher_view_beside_the_students_reading(video_env, library):
    """The teacher's picture is the frames' average (the same played backwards) and the page names the motion it
    guesses against the clip's; the students' picture is the frames read so far with their trail (order matters)."""
    spec, ensemble, teacher, test, _ = library
    frames = spec.sample_shape[0]
    at = open_link({"run": "tiny-video", "clip": "3", "frame": "2"})
    shown = texts(at, "markdown")
    assert "**What the teacher sees**" in shown and "**What the students read**" in shown
    report = inference.clip_report(ensemble, spec, test.inputs[3], teacher)
    said = clip_charts.answer(report.teacher_probs, list(spec.class_names))[0].split(" ", 1)[1]
    truth = spec.class_names[int(test.labels[3])].split(" ", 1)[1]
    line = next(m for m in at.markdown if "the teacher says" in m.value or "The teacher names" in m.value).value
    assert (f"The digit is **{truth}**; the teacher says **{said}**" in line) == (said != truth)
    clip = test.inputs[3]
    assert torch.allclose(torch.from_numpy(clip_charts.average_frame(clip)), clip[:, 0].mean(0))
    assert numpy.allclose(clip_charts.average_frame(clip), clip_charts.average_frame(reverse_clips(clip)), atol=1e-6)
    skin = clip_charts.onion_skin(clip, frames)  # (S, S, 3): latest frame white, older ones blue
    assert skin.shape == (*clip.shape[-2:], 3) and not numpy.array_equal(skin, clip_charts.onion_skin(
        reverse_clips(clip), frames))
    assert numpy.array_equal(clip_charts.onion_skin(clip, 1), numpy.repeat(clip[0, 0].numpy()[..., None], 3, -1))
    row = clip_charts.frame_row(clip, 2, 2)  # T frames of 2S px in one row, 6 px apart
    assert row.shape == (2 * clip.shape[-1], frames * (2 * clip.shape[-1] + 6) - 6, 3) and row.dtype == numpy.uint8


def test_opening_clips_makes_only_the_test_clips(video_env):
    """The data layer builds the split the page shows: no training clips (50,000 of them for moving_mnist_50k)."""
    from app import common
    from pkd import data

    dataset = str(Run(video_env / "tiny-video").setting("data", "dataset"))
    data.clear_cache()
    common.cached_test_split.clear()
    at = open_link({"run": "tiny-video"})
    assert at.number_input(key="clips_idx").value == 0
    assert data.built_splits(dataset) == ("test",)


def test_backwards_flips_the_students_answers_but_not_the_teachers(video_env, library):
    spec, _, _, test, _ = library
    frames = spec.sample_shape[0]
    at = open_link({"run": "tiny-video", "clip": "5"})
    forwards, teacher_before, y_before = answers(at, frames), teacher_lines(at), chart_y(at)
    at.toggle(key="clips_back").set_value(True).run()
    assert not at.exception, at.exception
    assert answers(at, frames) == expected(library, reverse_clips(test.inputs[5]), frames)
    assert chart_y(at) != y_before  # the students read the frames in the other order
    assert teacher_lines(at) == teacher_before  # bit for bit the same answer
    assert f"The right answer: **{spec.class_names[int(reverse_label(int(test.labels[5])))]}**" in texts(at, "caption")
    assert at.query_params["back"] == "1"
    assert forwards == expected(library, test.inputs[5], frames)


def test_a_link_opens_that_clip_and_frame_and_bad_values_fall_back(video_env, library):
    spec, _, _, test, _ = library
    frames = spec.sample_shape[0]
    at = open_link({"run": "tiny-video", "clip": "7", "frame": "2", "back": "1"})
    assert at.number_input(key="clips_idx").value == 7 and at.slider(key="clips_frame").value == 2
    assert at.toggle(key="clips_back").value is True
    assert answers(at, 2) == expected(library, reverse_clips(test.inputs[7]), 2)
    assert f"After frame 2 of {frames}" in texts(at, "markdown")
    assert at.query_params["clip"] == "7" and at.query_params["frame"] == "2"
    at = open_link({"run": "tiny-video", "clip": "99999", "frame": "50", "back": "maybe"})
    assert at.number_input(key="clips_idx").value == 0 and at.slider(key="clips_frame").value == frames
    assert at.toggle(key="clips_back").value is False
    assert answers(at, frames) == expected(library, test.inputs[0], frames)


def test_a_drawing_becomes_a_clip_with_the_chosen_motion(video_env, library):
    spec, *_ = library
    at = open_link({"run": "tiny-video"})
    at.radio(key="clips_source").set_value("drawing").run()
    assert "Draw a digit" in texts(at, "info")
    at.selectbox(key="clips_motion").set_value("moving up")
    at.session_state["clips_canvas"] = canvas_value(drawn_one())
    at.run()
    assert not at.exception, at.exception
    assert "The right answer: **your digit, moving up**" in texts(at, "caption")
    at.toggle(key="clips_back").set_value(True).run()
    assert "The right answer: **your digit, moving down**" in texts(at, "caption")
    assert "clip" not in at.query_params  # a drawing is not part of the link
    frames = spec.sample_shape[0]
    assert len(answers(at, frames)) == 2 * library[1].k


def test_lesson_mode_keeps_the_story_and_hides_the_details(video_env):
    at = open_link({"run": "tiny-video", "lesson": "1"})
    assert "exactly the same" in texts(at, "markdown") and at.table and at.get("plotly_chart")
    assert not at.expander and str(video_env) not in texts(at, "caption")
    at.toggle(key="lesson").set_value(False).run()
    assert at.expander  # every frame, every number of students


def test_without_a_video_run_the_page_says_how_to_make_one(monkeypatch, tmp_path, shipped_root):
    runs = tmp_path / "runs"
    runs.mkdir()
    copy_run(shipped_root / "mnist", runs, "mnist")  # an image run only
    monkeypatch.setenv("PKD_RUNS_DIR", str(runs))
    monkeypatch.setenv("PKD_PRETRAINED_DIR", str(tmp_path / "no-pretrained"))
    at = open_link({})
    assert "python -m pkd train --config configs/moving-mnist-quick.yaml" in texts(at, "info")
    assert not at.table and not at.get("plotly_chart")


def test_results_and_playground_speak_of_clips_on_a_video_run(video_env):
    """Results says test clips and FLOPs per clip; the Playground (a drawing pad for digits) sends a video run to
    the Clips page instead of offering a canvas."""
    at = streamlit_testing.AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    at.query_params.update({"run": "tiny-video"})
    at.run()
    assert not at.exception, at.exception
    assert "accuracy on the test clips" in texts(at, "markdown") and "costs per clip" in texts(at, "markdown")
    assert any(m.label == "their FLOPs per clip" for m in at.metric)
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert figure["layout"]["xaxis"]["title"]["text"].startswith("FLOPs per clip of the students used")
    at.switch_page("app_pages/playground.py")
    at.run()
    assert not at.exception, at.exception
    assert "is a video run: its students read clips frame by frame" in texts(at, "info")
    at = streamlit_testing.AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    at.query_params.update({"run": "mnist"})
    at.run()
    assert "accuracy on the test images" in texts(at, "markdown")
