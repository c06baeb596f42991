"""The Playground's hard digits: a button that opens a test digit on which the numbers of students disagree, a line
saying that sure is not right, and galleries of the test digits each number of students gets wrong and of those
early exit stops on after student 1 although wrong. The answers come from pkd.hard_inputs. On a photo run
(Fashion-MNIST) the galleries show the shipped test images (app.photo_panel's sample) by their class names, and
'open' shows one in the photo panel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import streamlit as st

from app import common, photo_panel, widgets
from pkd import hard_inputs
from pkd.data import get_dataset_spec
from pkd.runs import Run

SEARCHED = 2000  # the first test digits asked about (about 1.5 s for 5 students on a busy 2-core machine)
SHOWN = 12  # thumbnails per gallery
CANVAS_KEY = "canvas"  # the Playground's drawing canvas
ss = st.session_state


@st.cache_resource(max_entries=2, show_spinner=f"Asking every number of students about {SEARCHED:,} test digits ...")
def cached_answers(path: str, key: tuple) -> hard_inputs.PrefixAnswers:
    """Every prefix's answer on the first SEARCHED test digits of a run (cached per run and weights)."""
    run = Run(Path(path))
    spec = get_dataset_spec(run.setting("data", "dataset"))
    split = common.cached_test_split(spec.name)
    return hard_inputs.prefix_answers(common.cached_ensemble(path, key), spec, split.inputs[:SEARCHED],
                                      split.labels[:SEARCHED])


def answers() -> hard_inputs.PrefixAnswers:
    run = common.selected_run()
    return cached_answers(str(run.path), run.weights_stamp())


def open_test_digit(index: int) -> None:
    """Show test digit `index` on the Playground (a stroke drawn afterwards switches back to the canvas)."""
    ss.pg_test_idx, ss.pg_source = int(index), "test"
    ss.pg_seen = widgets.canvas_data_url(CANVAS_KEY)


def on_hard() -> None:
    """Open a random test digit on which the prefixes disagree (else one that student 1 gets wrong)."""
    found = answers()
    pool = found.disagreeing()
    ss.pg_hard_note = None if pool.numel() else "The students agree on every digit searched: here is one student 1 " \
                                                "gets wrong."
    pool = pool if pool.numel() else found.wrong(1)
    if pool.numel():
        pick = int(pool[np.random.default_rng().integers(pool.numel())])
        open_test_digit(pick)
        ss.pg_hard_idx = pick
    else:
        ss.pg_hard_note = "Every number of students gets every digit searched right: no hard digit to show."


def hard_button(disabled: bool) -> None:
    """'Show me a hard digit', under the canvas."""
    st.button("Show me a hard digit", key="pg_hard", on_click=on_hard, disabled=disabled, width="stretch",
              help=f"A test digit (from the first {SEARCHED:,}) on which the answer changes as students are added.")
    if ss.get("pg_hard_note"):
        st.caption(ss.pg_hard_note)


def hard_caption(k_total: int) -> str | None:
    """Why the digit shown is hard: what each number of students says (None unless it came from the button)."""
    index = ss.get("pg_hard_idx")
    if ss.get("pg_source") != "test" or index is None or index != ss.get("pg_test_idx") or index >= SEARCHED:
        return None
    names = list(get_dataset_spec(common.selected_run().setting("data", "dataset")).class_names)
    said = [names[int(c)] for c in answers().classes[:, index]]
    return "A hard digit: " + ", ".join(f"{k} → {c}" for k, c in zip(range(1, k_total + 1), said)) + \
        " (students used → answer)."


def sure_is_not_right(prob: float, right: bool | None, photos: bool = False) -> str:
    """The line under the answer: how sure is not whether it is right (the example fits the run's pictures)."""
    if right is False:
        return (f"**{100 * prob:.0f}% sure, and wrong.** Sure is how much the students believe their answer, not a "
                "check against the truth.")
    return ("*Sure is not the same as right*: it is how much the students believe their answer, not a check "
            "against the truth (" + ("a shirt that looks like a pullover" if photos else
                                     "a digit halfway between a 4 and a 9") + " can get 100%).")


def _thumbs(pictures: Any, indices: list[int], captions: list[str], key: str, opener: Callable[[int], None]) -> None:
    """Thumbnails of pictures[indices] (N, C, H, W) with their captions, each with an 'open' button."""
    per_row = 6
    for start in range(0, len(indices), per_row):
        cols = st.columns(per_row)
        for col, index, caption in zip(cols, indices[start:start + per_row], captions[start:start + per_row]):
            pixels = pictures[index]
            pixels = pixels.permute(1, 2, 0).numpy() if pixels.shape[0] == 3 else pixels[0].numpy()
            col.image(np.clip(np.kron(pixels, np.ones((3, 3) + pixels.shape[2:], dtype=pixels.dtype)), 0, 1),
                      caption=caption, width=84)
            col.button(f"open #{index}", key=f"{key}_{index}", on_click=opener, args=(index,))


def gallery_source(models: common.RunModels) -> tuple[hard_inputs.PrefixAnswers, Any, str, Callable[[int], None]]:
    """(every prefix's answers, the pictures they are about (N, C, H, W), what they are called, how one is opened):
    the first SEARCHED test digits for a digit run; the 1,000 shipped test images for a photo run."""
    run = common.selected_run()
    if models.spec.photos:
        split, _ = photo_panel.cached_sample()
        found = photo_panel.sample_answers(str(run.path), run.weights_stamp())
        return found, split.inputs, f"the {len(split):,} shipped test images", photo_panel.open_position
    split = common.cached_test_split(models.spec.name)
    return answers(), split.inputs, f"the first {SEARCHED:,} test digits", open_test_digit


def galleries(models: common.RunModels, k: int, confidence: float) -> None:
    """The test inputs students 1..k get wrong, and those early exit stops on after student 1 although wrong."""
    noun = "images" if models.spec.photos else "digits"
    st.subheader(f"{noun.capitalize()} the students get wrong")
    searched = "the test images shipped with pkd" if models.spec.photos else f"the first {SEARCHED:,} test digits"
    if not st.toggle(f"Show them (asks every number of students about {searched})", key="pg_gallery"):
        return
    names = list(models.spec.class_names)
    found, pictures, searched, opener = gallery_source(models)
    n = found.labels.numel()
    wrong = found.wrong(k).tolist()
    who = "Student 1 gets" if k == 1 else f"Students 1–{k} together get"
    st.markdown(f"**{who} {len(wrong)} of {searched} wrong** "
                f"({100 * len(wrong) / n:.1f}%). Change *Students used* above to see another number of "
                "students." + (f" The first {SHOWN}:" if len(wrong) > SHOWN else ""))
    shown = wrong[:SHOWN]
    _thumbs(pictures, shown, [f"true {names[int(found.labels[i])]}, said {names[int(found.classes[k - 1, i])]} "
                              f"({100 * float(found.sureness[k - 1, i]):.0f}%)" for i in shown], f"pg_wrong{k}",
            opener)
    sure = found.sure_and_wrong_after_first(confidence).tolist()
    st.markdown(f"**Stopped after student 1, and wrong: {len(sure)} {noun}.** Early exit at "
                f"{100 * confidence:.1f}% sure stops after student 1 on these, yet its answer is wrong: "
                "sure is not right." + (f" The first {SHOWN}:" if len(sure) > SHOWN else ""))
    shown = sure[:SHOWN]
    _thumbs(pictures, shown, [f"true {names[int(found.labels[i])]}, said {names[int(found.classes[0, i])]} "
                              f"({100 * float(found.sureness[0, i]):.0f}%)" for i in shown], "pg_sure", opener)
