"""AppTest of the Playground's distillation views (issue 29): the soft-target panel shows softmax(logits / T) of
the teacher on the digit shown, for the T the slider gives; the step-through starts at student 1 after each new
input; 'Show me a hard digit' opens a test digit on which the numbers of students disagree; the galleries."""

from __future__ import annotations

import json

import pytest
import torch

from pkd.artifacts import load_ensemble, load_teacher
from pkd.data import get_dataset_spec, load_split
from pkd.runs import Run
from tests.app.test_lesson import open_link, texts

DIGIT = 17


def soft_bars(at, title_part: str) -> dict[str, list[float]]:
    """The soft-target chart whose title holds `title_part`: {trace name: bar heights in %}."""
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        if title_part in spec["layout"].get("title", {}).get("text", ""):
            return {trace["name"]: trace["y"] for trace in spec["data"]}
    raise AssertionError(f"no chart titled ...{title_part}...")


@pytest.fixture(scope="module")
def teacher_logits(shipped_root) -> torch.Tensor:
    run = Run(shipped_root / "mnist")
    spec = get_dataset_spec(run.setting("data", "dataset"))
    image = load_split(spec.name, "test").inputs[DIGIT]
    with torch.no_grad():
        return load_teacher(run)(spec.normalize(image[None].float()))[0]  # (C,)


def test_soft_targets_are_the_teachers_softmax_at_the_sliders_temperature(app_env, teacher_logits):
    at = open_link({"digit": str(DIGIT)}, "playground")
    for temperature in (at.slider(key="soft_T").value, 1.0, 6.5):
        at.slider(key="soft_T").set_value(temperature).run()
        assert not at.exception, at.exception
        bars = soft_bars(at, "plain and softened")
        t = f"{temperature:g}"
        want = 100 * torch.softmax(teacher_logits / temperature, -1)
        assert torch.tensor(bars[f"teacher at T = {t} (soft targets)"]) == pytest.approx(want, abs=1e-3)
        assert torch.tensor(bars["teacher at T = 1"]) == pytest.approx(100 * torch.softmax(teacher_logits, -1),
                                                                      abs=1e-3)
        beside = soft_bars(at, f"beside the teacher, both at T = {t}")
        assert torch.tensor(beside[f"teacher at T = {t}"]) == pytest.approx(want, abs=1e-3)
    shown = texts(at, "markdown")
    assert "KL =" in shown and "α × label error + (1 − α) × T² × KL" in shown
    at.slider(key="soft_alpha").set_value(1.0).run()
    assert "100% of the weight goes to getting the true label" in texts(at, "markdown")


def test_the_step_through_starts_at_student_1_after_each_new_digit(app_env, shipped_root):
    if Run(shipped_root / "mnist").students_saved() < 2:
        pytest.skip("one student")
    at = open_link({"digit": str(DIGIT), "k": "2"}, "playground")
    assert at.session_state["pg_k"] == 2  # a link's own k is kept
    at.button(key="pg_random").click().run()
    assert at.session_state["pg_k"] == 1 and not at.button(key="pg_step_next").disabled
    assert "Student 1 says" in texts(at, "markdown")


def test_show_me_a_hard_digit_opens_one_the_prefixes_disagree_on(app_env, shipped_root):
    run = Run(shipped_root / "mnist")
    spec = get_dataset_spec(run.setting("data", "dataset"))
    at = open_link({}, "playground")
    at.button(key="pg_hard").click().run()
    assert not at.exception, at.exception
    index = at.session_state["pg_test_idx"]
    assert at.session_state["pg_source"] == "test" and f"test digit #{index}" in texts(at, "caption")
    with torch.no_grad():
        x = spec.normalize(load_split(spec.name, "test").inputs[index][None].float())
        said = {int(lp.argmax()) for lp in load_ensemble(run).all_prefixes(x)}
    assert len(said) > 1, f"the prefixes agree on digit {index}"
    assert "A hard digit:" in texts(at, "caption") and at.query_params["digit"] == str(index)


def test_galleries_show_the_digits_each_prefix_gets_wrong(app_env):
    at = open_link({"digit": str(DIGIT)}, "playground")
    at.toggle(key="pg_gallery").set_value(True).run()
    assert not at.exception, at.exception
    shown = texts(at, "markdown")
    assert "Student 1 gets" in shown and "Stopped after student 1, and wrong" in shown
    opens = [b for b in at.button if b.key and b.key.startswith("pg_wrong1_")]
    assert opens
    opens[0].click().run()
    assert at.session_state["pg_test_idx"] == int(opens[0].key.rsplit("_", 1)[1])
