"""`pkd export RUN --web` for a video run, in Chromium: the tiny video run's page (tests/web_clip_page.py: exported by
the real CLI) served from 127.0.0.1 and compared with pkd in Python: window.pkd.predictClip on test clips, a clip
played forwards and backwards, the JavaScript port of the clip made from a drawing, and a digit drawn with the
mouse made into a clip and answered."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch

from pkd.data import get_dataset_spec, load_split
from pkd.data.moving_mnist import MOTIONS, REVERSE_MOTION, reverse_label
from pkd.drawn import draw_digit
from pkd.preprocess import clip_from_drawing, prepare_canvas, prepare_drawing
from tests.browser.conftest import offline_page, static_site
from tests.browser.test_web_page import CANVAS_BASE64, draw_seven
from tests.web_clip_page import clip_page_path, clip_reference

TOL = 1e-4  # probabilities, the page against pkd
PIXEL_TOL = 1 / 255  # the page's frames against pkd's


@pytest.fixture(scope="module")
def clip_page(tmp_path_factory, video_run):
    return clip_page_path(tmp_path_factory, video_run)


@pytest.fixture(scope="module")
def reference(video_run):
    return clip_reference(video_run)


@pytest.fixture(scope="module")
def spec(video_run):
    return get_dataset_spec(video_run.setting("data", "dataset"))


@pytest.fixture(scope="module")
def served(clip_page):
    with static_site(clip_page) as url:
        yield url


@pytest.fixture
def opened(page, served):
    """The served page with its first test clip answered; every request stays on 127.0.0.1 (or blob:/data:)."""
    with offline_page(page, served):
        page.wait_for_function("window.pkd.last && window.pkd.last.ms !== undefined")
        yield page


def page_clips(clip_page) -> tuple[torch.Tensor, list[int], dict]:
    """The test clips packed into the page: (N, T, 1, S, S) in [0, 1], their labels, and the page's records."""
    records = json.loads((clip_page / "run.json").read_text())
    frames, _, side, _ = records["sampleShape"]
    pixels = np.frombuffer(base64.b64decode(records["testClips"]["pixels"]), dtype=np.uint8)
    clips = torch.from_numpy(pixels.reshape(-1, frames, 1, side, side).astype(np.float32) / 255)
    return clips, records["testClips"]["labels"], records


def last(page) -> dict:
    """window.pkd.last without its timing."""
    return page.evaluate("(({frames, probs, probsOther, backwards, source, index, label, motion}) => "
                         "({frames, probs, probsOther, backwards, source, index, label, motion}))(window.pkd.last)")


def test_predict_clip_matches_pkd_on_the_test_clips(opened, clip_page, reference, spec):
    clips, labels, records = page_clips(clip_page)
    assert records["mode"] == "clip" and records["sampleShape"] == list(spec.sample_shape)
    split = load_split(spec.name, "test")  # the page's clips are real test clips, with their labels
    stored = (split.inputs.flatten(1) * 255).round()
    for clip, label in zip(clips[:3], labels):
        match = np.flatnonzero((stored == (clip.flatten() * 255).round()).all(1).numpy())
        assert len(match) and int(split.labels[match[0]]) == label
    want = reference(clips)  # (N, k, C)
    got = np.array([opened.evaluate("(f) => window.pkd.predictClip(f)", clip[:, 0].tolist())  # T x S x S, nested
                    for clip in clips[:4]])
    assert got.shape == want[:4].shape and np.abs(got - want[:4]).max() <= TOL
    assert (got.argmax(-1) == want[:4].argmax(-1)).all()
    error = opened.evaluate("(f) => window.pkd.predictClip(f).then(() => 'answered', (e) => e.message)", [0.0] * 10)
    assert error.startswith(f"a clip of this run is {spec.sample_shape[0]} frames")


def test_a_test_clip_plays_forwards_and_backwards(opened, clip_page, reference):
    clips, labels, records = page_clips(clip_page)
    names = records["classNames"]
    opened.select_option("#test-clip", "1")
    opened.wait_for_function("window.pkd.last && window.pkd.last.index === 1 && window.pkd.last.ms !== undefined")
    forwards, backwards = reference(torch.stack([clips[1], clips[1].flip(0)]))  # (k, C) each
    shown = last(opened)
    assert shown["source"] == "test" and not shown["backwards"] and shown["label"] == labels[1]
    assert np.abs(np.array(shown["frames"]) - clips[1].flatten().numpy()).max() < 1e-6
    assert np.abs(np.array(shown["probs"]) - forwards).max() <= TOL
    assert np.abs(np.array(shown["probsOther"]) - backwards).max() <= TOL
    opened.get_by_text(f"The right answer: {names[labels[1]]}.").wait_for()
    opened.wait_for_function("document.getElementById('frame-no').textContent !== 'frame 1 of 4'")  # it plays
    opened.get_by_label("Play it backwards").check()
    shown = last(opened)
    assert shown["backwards"] and shown["label"] == reverse_label(labels[1])
    assert np.abs(np.array(shown["frames"]) - clips[1].flip(0).flatten().numpy()).max() < 1e-6
    assert np.abs(np.array(shown["probs"]) - backwards).max() <= TOL
    opened.get_by_text(f"The right answer: {names[reverse_label(labels[1])]}.").wait_for()
    rows = opened.locator("#prefixes tbody tr")
    for k in range(rows.count()):  # the table: this way's answer, and the other way's beside it
        assert rows.nth(k).locator("td.answer").inner_text() == names[int(backwards[k].argmax())]
        assert rows.nth(k).locator("td.other").inner_text().startswith(names[int(forwards[k].argmax())] + " (")
    teacher = records["testClips"]["teacher"][1]  # the teacher's answer, the same both ways round
    opened.get_by_text(f"The teacher says {names[int(np.argmax(teacher))]}").wait_for()
    digit = f"{100 * records['teacherDigitAcc']:.2f}% on the digit alone"  # why its 60-class figure is low
    assert digit in opened.locator("#subtitle").inner_text()


def test_the_clip_of_a_drawing_is_pkds(opened, spec):
    """window.pkd.clipFromDrawing (the JavaScript port) against pkd.preprocess.clip_from_drawing: every motion."""
    rng = np.random.default_rng(3)
    for digit, motion in zip(range(10), [*MOTIONS, *MOTIONS]):
        image = prepare_drawing(draw_digit(digit, rng))  # (1, 28, 28)
        want = clip_from_drawing(image, motion, spec).flatten().numpy()  # (T * S * S,)
        got = opened.evaluate("([px, m]) => Array.from(window.pkd.clipFromDrawing(px, m))",
                              [image.flatten().tolist(), motion])
        assert len(got) == len(want) and np.abs(np.array(got) - want).max() <= PIXEL_TOL, motion
        back = opened.evaluate("(f) => Array.from(window.pkd.reverseClip(f))", got)
        # centred, so the reverse of a clip is the clip of the reversed motion, frame for frame
        reversed_clip = clip_from_drawing(image, MOTIONS[REVERSE_MOTION[MOTIONS.index(motion)]], spec)
        assert np.abs(np.array(back) - reversed_clip.flatten().numpy()).max() <= PIXEL_TOL


def test_a_mouse_drawn_digit_becomes_a_clip_answered_as_pkd(opened, spec, reference, screenshots):
    opened.select_option("#motion", label="moving up")
    draw_seven(opened)
    opened.wait_for_function("window.pkd.last && window.pkd.last.source === 'drawing' && "
                             "window.pkd.last.ms !== undefined")
    rgba = np.frombuffer(base64.b64decode(opened.evaluate(CANVAS_BASE64)), dtype=np.uint8).reshape(280, 280, 4)
    clip = clip_from_drawing(prepare_canvas(rgba), "moving up", spec)  # pkd's clip of the same drawing
    forwards, backwards = reference(torch.stack([clip, clip.flip(0)]))
    shown = last(opened)
    assert shown["motion"] == "moving up" and not shown["backwards"]
    assert np.abs(np.array(shown["frames"]) - clip.flatten().numpy()).max() <= PIXEL_TOL
    assert np.abs(np.array(shown["probs"]) - forwards).max() <= TOL
    assert (np.array(shown["probs"]).argmax(-1) == forwards.argmax(-1)).all()
    opened.get_by_label("Play it backwards").check()
    shown = last(opened)
    assert shown["motion"] == "moving down"
    assert np.abs(np.array(shown["frames"]) - clip.flip(0).flatten().numpy()).max() <= PIXEL_TOL
    assert np.abs(np.array(shown["probs"]) - backwards).max() <= TOL
    opened.get_by_text("Your digit, moving down.").wait_for()
    opened.screenshot(path=screenshots / "web-clips.png", full_page=True)
    opened.get_by_role("button", name="Clear").click()
    assert opened.evaluate("window.pkd.last") is None


def test_the_clip_page_opens_from_the_file_system(page, clip_page, reference):
    """From file:// (no server): the first test clip plays and is answered, predictClip gives pkd's answer."""
    clips, labels, records = page_clips(clip_page)
    page.goto((clip_page / "index.html").as_uri())
    page.wait_for_function("window.pkd !== undefined")
    page.evaluate("window.pkd.ready")
    page.wait_for_function("window.pkd.last && window.pkd.last.index === 0 && window.pkd.last.ms !== undefined")
    assert np.abs(np.array(last(page)["probs"]) - reference(clips[:1])[0]).max() <= TOL
    page.get_by_text(f"The right answer: {records['classNames'][labels[0]]}.").wait_for()
