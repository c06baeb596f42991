"""The Playground on a Fashion-MNIST run (AppTest): a gallery of test images, a hard one, an uploaded photo read
through the same picture path as `pkd predict`, the step-through; no canvas for photo runs."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pkd.artifacts import load_ensemble
from pkd.data.fashion_mnist import load_test_sample
from pkd.photos import rephotograph
from pkd.preprocess import prepare_photo
from pkd.runs import Run
from tests.app.test_pages import open_app, table_with, texts
from tests.app.trained import ROOT, copy_run
from tests.pkd_process import train_tiny

SHIPPED = ROOT / "pretrained" / "fashion-mnist" / "seed-0"  # the shipped seed group's first member


_TRAINED: dict[str, Path] = {}  # the tiny Fashion-MNIST run, trained once per test session


def fashion_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped Fashion-MNIST run, else the tiny config trained on Fashion-MNIST once per session (a real run
    either way; read it, never write to it)."""
    if (SHIPPED / "summary.json").is_file():
        return SHIPPED
    if "tiny" not in _TRAINED:
        _TRAINED["tiny"] = train_tiny(tmp_path_factory.mktemp("fashion") / "fashion-tiny",
                                      "data.dataset=fashion_mnist", "name=fashion-tiny")
    return _TRAINED["tiny"]


@pytest.fixture(scope="module")
def fashion_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fashion_run_dir(tmp_path_factory)


def photo_bytes(position: int, fmt: str = "JPEG") -> tuple[bytes, torch.Tensor]:
    """A re-photographed shipped test image as file bytes, and the 28x28 input prepare_photo makes of it."""
    split, _ = load_test_sample()
    photo = rephotograph(split.inputs[position, 0].numpy(), np.random.default_rng(position))
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format=fmt)
    return buffer.getvalue(), prepare_photo(np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")))


def expected_answers(run: Path, x: torch.Tensor) -> list[str]:
    ensemble = load_ensemble(Run(run))
    split, _ = load_test_sample()
    with torch.no_grad():
        prefixes = ensemble.all_prefixes(split.spec.normalize(x[None]))
    return [split.spec.class_names[int(lp.argmax())] for lp in prefixes]


def open_on(run: Path, runs_dir: Path):
    """The Playground on a copy of `run` in the app's runs folder (the run picker lists it there)."""
    copy = copy_run(run, runs_dir, "fashion")
    at = open_app("playground")  # its first visit takes the run from the link; then pick the copy
    at.session_state["run"] = str(copy)
    at.run()
    assert not at.exception, at.exception
    return at


def test_a_photo_run_offers_a_gallery_not_a_canvas(app_env, fashion_run):
    at = open_on(fashion_run, app_env)
    assert "Pick a test image" in texts(at, "info") and "canvas" not in texts(at, "info")
    labels = [b.label for b in at.button]
    assert {"T-shirt", "Trouser", "Ankle boot", "A hard one", "More test images"} <= set(labels)
    at.button(key="ph_pick_0").click().run()  # the first shipped image: test image #0, an ankle boot
    assert not at.exception, at.exception
    assert "Test image #0 (from the gallery), true label **Ankle boot**" in texts(at, "caption")
    split, _ = load_test_sample()
    table = table_with(at, "together they say")
    assert list(table["together they say"]) == expected_answers(fashion_run, split.inputs[0])
    before = [b.key for b in at.button if b.key and b.key.startswith("ph_pick_")]
    at.button(key="ph_more").click().run()
    after = [b.key for b in at.button if b.key and b.key.startswith("ph_pick_")]
    assert len(after) == 10 and set(after).isdisjoint(before)


def test_a_hard_one_is_an_image_the_prefixes_disagree_on(app_env, fashion_run):
    at = open_on(fashion_run, app_env)
    if at.button(key="ph_hard").disabled:
        pytest.skip("this run's prefixes agree on every shipped test image")
    at.button(key="ph_hard").click().run()
    assert "a hard one: the students disagree on it" in texts(at, "caption")
    answers = list(table_with(at, "together they say")["together they say"])
    assert len(set(answers)) > 1


def test_an_uploaded_photo_is_read_like_pkd_predict_reads_it(app_env, fashion_run):
    at = open_on(fashion_run, app_env)
    content, x = photo_bytes(3)
    at.file_uploader(key="ph_upload").set_value(("coat.jpg", content, "image/jpeg")).run()
    assert not at.exception, at.exception
    assert "inverted (the background is lighter than the object)" in texts(at, "caption")
    assert list(table_with(at, "together they say")["together they say"]) == expected_answers(fashion_run, x)
    k_total = load_ensemble(Run(fashion_run)).k
    if not at.button(key="pg_step_reset").disabled:  # a new input may already start the step-through at 1
        at.button(key="pg_step_reset").click().run()
    assert "Student 1 says" in texts(at, "markdown")
    at.button(key="pg_step_next").click().run()
    assert f"**Student 2 of {k_total} added**" in texts(at, "markdown")
    at.file_uploader(key="ph_upload").set_value(("broken.png", b"\x89PNG not really", "image/png")).run()
    assert not at.exception, at.exception
    assert "broken.png:" in texts(at, "warning") and not at.table
    assert not [p for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("pkd-photo-*")]  # no upload left behind


def test_a_new_picture_restarts_the_step_through_at_student_1(app_env, fashion_run):
    at = open_on(fashion_run, app_env)
    at.button(key="ph_pick_0").click().run()
    at.button(key="pg_step_next").click().run()
    assert at.session_state["pg_k"] == 2
    at.button(key="ph_pick_0").click().run()  # the same image again: the step-through stays where it was
    assert at.session_state["pg_k"] == 2
    other = next(b.key for b in at.button if b.key and b.key.startswith("ph_pick_") and b.key != "ph_pick_0")
    at.button(key=other).click().run()
    assert not at.exception, at.exception
    assert at.session_state["pg_k"] == 1 and "Student 1 says" in texts(at, "markdown")
    assert "a shirt that looks like a pullover" in texts(at, "caption") and "4 and a 9" not in texts(at, "caption")
    at.button(key="pg_step_next").click().run()
    at.file_uploader(key="ph_upload").set_value(("coat.jpg", photo_bytes(3)[0], "image/jpeg")).run()
    assert at.session_state["pg_k"] == 1, "an uploaded photo is a new input"
    at.button(key="pg_step_next").click().run()
    at.file_uploader(key="ph_upload").set_value(("bag.jpg", photo_bytes(8)[0], "image/jpeg")).run()
    assert at.session_state["pg_k"] == 1, "another photo is a new input"


def test_the_wrong_answer_galleries_speak_of_images_and_open_them_in_the_photo_panel(app_env, fashion_run):
    at = open_on(fashion_run, app_env)
    at.button(key="ph_pick_0").click().run()
    at.toggle(key="pg_gallery").set_value(True).run()
    assert not at.exception, at.exception
    gallery = texts(at, "markdown")
    assert "Images the students get wrong" in texts(at, "subheader")
    assert "of the 1,000 shipped test images wrong" in gallery and "Stopped after student 1, and wrong:" in gallery
    assert "digit" not in gallery.split("Student 1 gets", 1)[1]
    split, index = load_test_sample()
    opens = [b for b in at.button if b.key and b.key.startswith("pg_wrong1_")]
    assert opens, "student 1 gets some shipped test image wrong"
    position = int(opens[0].key.rsplit("_", 1)[1])
    opens[0].click().run()
    truth = split.spec.class_names[int(split.labels[position])]
    assert f"Test image #{int(index[position])} (from the gallery), true label **{truth}**" in texts(at, "caption")


def test_a_seed_group_member_is_named_with_its_group():
    from app.common import display_name

    assert display_name(Run(SHIPPED)) == "fashion-mnist / seed-0"  # pickers and tables, not a bare 'seed-0'
