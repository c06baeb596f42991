"""`pkd export RUN --web` end to end: the tiny run exported by the real CLI, its page served from a local static
server (127.0.0.1 only) and opened in Chromium, against pkd in Python: window.pkd.predict on real test digits, a digit
drawn with the mouse, the JavaScript preprocessing on drawings, and the page opened from the file system."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch

from pkd.artifacts import load_ensemble
from pkd.data import get_dataset_spec
from pkd.drawn import draw_digit
from pkd.export import PrefixModel, onnx_session
from pkd.preprocess.images import prepare_canvas, prepare_drawing
from tests.browser.conftest import offline_page, static_site
from tests.pkd_process import pkd_ok
from tests.web_runtime import require_web_runtime

TOL = 1e-4  # probabilities, the page against pkd
PIXEL_TOL = 1 / 255  # the page's 28x28 input against pkd's preprocessing
N_DIGITS = 300


@pytest.fixture(scope="module")
def web_page(tiny_run, tmp_path_factory):
    """The tiny run's page, exported by `python -m pkd export RUN --web --out DIR` in a subprocess."""
    require_web_runtime()
    out = tmp_path_factory.mktemp("web") / "tiny-page"
    proc = pkd_ok("export", str(tiny_run.path), "--web", "--out", str(out))
    assert str(out / "index.html") in proc.stdout and "MB" in proc.stdout
    return out


@pytest.fixture(scope="module")
def reference(tiny_run):
    """pkd's own answer: pixels (B, 1, 28, 28) in [0, 1] -> every prefix's probabilities (B, k, C)."""
    spec = get_dataset_spec(tiny_run.setting("data", "dataset"))
    model = PrefixModel(load_ensemble(tiny_run), spec, all_prefixes=True).eval()

    def probs(pixels: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return model(pixels)[2].numpy()

    return probs


@pytest.fixture(scope="module")
def served(web_page):
    with static_site(web_page) as url:
        yield url


@pytest.fixture
def opened(page, served):
    """The served page, loaded; every request it makes must stay on 127.0.0.1 (or blob:/data:)."""
    with offline_page(page, served):
        yield page


def test_the_export_holds_the_page_and_the_run(web_page, tiny_run, reference, mnist):
    assert (web_page / "index.html").is_file()
    assert {p.name for p in (web_page / "assets").iterdir()} == {"ort.wasm.min.js", "ort-wasm.js", "model.js",
                                                                 "run.js", "preprocess.js", "clipmaker.js", "clips.js",
                                                                 "chart.js", "pkd.js"}  # one page: clip mode idle
    records = json.loads((web_page / "run.json").read_text())
    assert [r["students"] for r in records["prefixRows"]] == list(range(1, tiny_run.students_saved() + 1))
    assert records["classNames"] == [str(d) for d in range(10)] and records["runtimeVersion"] == "1.31.1"
    assert records["mode"] == "digit" and records["clips"] is None and records["sampleShape"] == [1, 28, 28]
    text = (web_page / "assets" / "model.js").read_text()  # window.PKD_MODEL = "<base64 .ort model>";
    model = web_page / "model.ort"
    model.write_bytes(base64.b64decode(json.loads(text.split("=", 1)[1].strip().rstrip(";"))))
    pixels = mnist["test"].inputs[:64]
    got = onnx_session(model, threads=1).run(["prefix_probs"], {"pixels": pixels.numpy()})[0]
    model.unlink()
    assert np.abs(got - reference(pixels)).max() <= TOL


def test_predict_matches_pkd_on_test_digits(opened, reference, mnist):
    pixels = mnist["test"].inputs[:N_DIGITS]  # (N, 1, 28, 28)
    got = np.array(opened.evaluate("([px, n]) => window.pkd.predictMany(px, n)",
                                   [pixels.flatten().tolist(), N_DIGITS]))  # (N, k, C)
    want = reference(pixels)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= TOL
    assert (got.argmax(-1) == want.argmax(-1)).all()
    one = np.array(opened.evaluate("(px) => window.pkd.predict(px)", pixels[0].flatten().tolist()))  # (k, C)
    assert np.abs(one - want[0]).max() <= TOL


def draw_seven(page) -> None:
    box = page.locator("#draw").bounding_box()
    points = [(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]
    at = lambda fx, fy: (box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)  # noqa: E731
    page.mouse.move(*at(*points[0]))
    page.mouse.down()
    for (ax, ay), (bx, by) in zip(points, points[1:]):
        for step in range(1, 16):
            f = step / 15
            page.mouse.move(*at(ax + (bx - ax) * f, ay + (by - ay) * f))
    page.mouse.up()


CANVAS_BASE64 = """(() => {
  const a = window.pkd.canvasRGBA();
  let s = "";
  for (let i = 0; i < a.length; i += 8192) s += String.fromCharCode(...a.slice(i, i + 8192));
  return btoa(s);
})()"""


def test_a_mouse_drawn_digit_gets_pkds_answer_from_every_prefix(opened, reference, tiny_run, screenshots):
    draw_seven(opened)
    opened.wait_for_function("window.pkd.last && window.pkd.last.ms !== undefined")
    last = opened.evaluate("({pixels: window.pkd.last.pixels, probs: window.pkd.last.probs})")
    rgba = np.frombuffer(base64.b64decode(opened.evaluate(CANVAS_BASE64)), dtype=np.uint8).reshape(280, 280, 4)
    image = prepare_canvas(rgba)  # pkd's preprocessing of the same drawing, (1, 28, 28)
    assert np.abs(np.array(last["pixels"]) - image.flatten().numpy()).max() <= PIXEL_TOL
    want = reference(image[None])[0]  # (k, C)
    got = np.array(last["probs"])
    assert np.abs(got - want).max() <= TOL and (got.argmax(-1) == want.argmax(-1)).all()
    rows = opened.locator("#prefixes tbody tr")
    assert rows.count() == tiny_run.students_saved()
    for k in range(rows.count()):  # the table shows each prefix's answer
        assert rows.nth(k).locator("td.answer").inner_text() == str(int(want[k].argmax()))
    sure = [k for k in range(len(want)) if want[k].max() >= 0.9]  # the page's default confidence: 90%
    exit_k = sure[0] if sure else len(want) - 1
    assert opened.locator("#early b").inner_text() == str(int(want[exit_k].argmax()))
    opened.get_by_text("Early exit at 90%" if sure else "No prefix is 90% sure").wait_for()
    opened.screenshot(path=screenshots / "web-page.png", full_page=True)
    opened.get_by_role("button", name="Clear").click()
    assert opened.evaluate("window.pkd.last") is None


PREPARE = """([b64, w, h]) => {
  const raw = atob(b64), px = new Uint8ClampedArray(raw.length);
  for (let i = 0; i < raw.length; i++) px[i] = raw.charCodeAt(i);
  try { const out = window.pkd.prepareCanvas(px, w, h); return out === null ? null : Array.from(out); }
  catch (e) { return e.message; }
}"""


def prepare_in_page(page, rgba: np.ndarray):
    """window.pkd.prepareCanvas on an (H, W, 4) uint8 picture: 784 numbers, None (blank) or the error's message."""
    return page.evaluate(PREPARE, [base64.b64encode(rgba.tobytes()).decode(), rgba.shape[1], rgba.shape[0]])


def test_the_javascript_preprocessing_is_pkds(opened):
    rng = np.random.default_rng(5)
    drawings = [draw_digit(d, rng) for d in range(10)]  # (280, 280, 4) uint8 canvases
    small = np.zeros((100, 100, 4), dtype=np.uint8)  # a 15 x 5 px mark on a smaller canvas: scaled up, not down
    small[40:55, 45:50] = 255
    small[45:50, 40:45] = (255, 255, 255, 128)  # half transparent: composited over black
    drawings.append(small)
    for rgba in drawings:
        want = prepare_drawing(rgba)[0].numpy()  # (28, 28)
        got = np.array(prepare_in_page(opened, rgba)).reshape(28, 28)
        assert np.abs(got - want).max() <= PIXEL_TOL
    assert prepare_in_page(opened, np.zeros((280, 280, 4), dtype=np.uint8)) is None
    dot = np.zeros((280, 280, 4), dtype=np.uint8)
    dot[140:145, 140:145] = 255
    assert prepare_in_page(opened, dot).startswith("Too little ink")
    white = np.full((280, 280, 4), 255, dtype=np.uint8)
    assert "is ink, so it is not a digit" in prepare_in_page(opened, white)


def test_the_page_opens_from_the_file_system(page, web_page, reference, mnist):
    page.goto((web_page / "index.html").as_uri())
    page.wait_for_function("window.pkd !== undefined")
    page.evaluate("window.pkd.ready")
    pixels = mnist["test"].inputs[:1]
    got = np.array(page.evaluate("(px) => window.pkd.predict(px)", pixels.flatten().tolist()))
    assert np.abs(got - reference(pixels)[0]).max() <= TOL
    page.get_by_text("students distilled from a teacher").wait_for()


def test_a_test_digit_is_shown_with_its_label_and_answered_as_pkd(opened, web_page, reference, mnist):
    records = json.loads((web_page / "run.json").read_text())
    digits = np.frombuffer(base64.b64decode(records["testDigits"]["pixels"]), dtype=np.uint8).reshape(-1, 784)
    test = (mnist["test"].inputs.flatten(1) * 255).round().numpy()  # (N, 784)
    first = np.flatnonzero((test == digits[0]).all(axis=1))  # a real test image, with its real label
    assert len(first) and int(mnist["test"].labels[first[0]]) == records["testDigits"]["labels"][0]
    opened.get_by_role("button", name="A test digit").click()
    opened.wait_for_function("window.pkd.last && window.pkd.last.ms !== undefined")
    last = opened.evaluate("({pixels: window.pkd.last.pixels, probs: window.pkd.last.probs, "
                           "label: window.pkd.last.label})")
    assert last["label"] == records["testDigits"]["labels"][0]
    pixels = torch.tensor(last["pixels"], dtype=torch.float32).view(1, 1, 28, 28)
    assert np.abs(pixels.flatten().numpy() * 255 - digits[0]).max() < 1e-3
    want = reference(pixels)[0]
    assert np.abs(np.array(last["probs"]) - want).max() <= TOL
    opened.get_by_text(f"its true label is {last['label']}").wait_for()
    assert opened.locator("#prefixes tbody tr td.answer").first.inner_text() == str(int(want[0].argmax()))
