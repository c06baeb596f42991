"""Playground: draw a digit (or take a test digit) and watch the ensemble answer with 1..K students, one student
added at a time (the step-through), or stopping by itself (anytime mode)."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np
import streamlit as st

from app import common, glossary, hard_digits, lesson, photo_panel, soft_targets, url_state, widgets
from app.charts import format as fmt
from app.charts import playground as playground_charts
from pkd import inference, preprocess

CANVAS_KEY = "canvas"
CANVAS_SIZE = 280
SHARE = "% of the teacher's"  # the step table's column
ss = st.session_state
ss.setdefault("pg_source", "canvas")  # "canvas" or "test"
ss.setdefault("pg_clear", 0)  # bumped by Clear: a new initial drawing empties the canvas



def on_clear() -> None:
    ss.pg_clear += 1
    ss.pg_ignore = widgets.canvas_data_url(CANVAS_KEY)  # until the emptied canvas reports back, its old picture counts as blank
    ss.pg_source = "canvas"


def on_random(n: int) -> None:
    ss.pg_test_idx = int(np.random.default_rng().integers(n))
    ss.pg_source = "test"
    ss.pg_seen = widgets.canvas_data_url(CANVAS_KEY)  # a stroke drawn after this switches back to the canvas


def on_next(k_total: int) -> None:
    """Step-through: one student more (the slider follows)."""
    ss.pg_k = min(int(ss.get("pg_k") or 1) + 1, k_total)
    lesson.note("added")


def on_reset() -> None:
    ss.pg_k = 1


def draw_panel(spec: Any) -> tuple[Any, int]:
    """The canvas and its buttons; returns the canvas result and the test set's size (0 when unavailable)."""
    st.markdown("**Draw here**")
    result = None
    if tuple(spec.sample_shape) == (1, 28, 28):
        from streamlit_drawable_canvas import st_canvas

        result = st_canvas(stroke_width=20, stroke_color="#FFFFFF", background_color="#000000",
                           width=CANVAS_SIZE, height=CANVAS_SIZE, drawing_mode="freedraw",
                           initial_drawing={"objects": [], "pkd_clear": ss.pg_clear},
                           return_image_data=True, key=CANVAS_KEY)
    else:
        st.info(f"Drawing is for 28x28 digit datasets; this run uses {spec.name}. Take a random test image.")
    buttons = st.columns(2)
    buttons[0].button("Clear", key="pg_clear_btn", on_click=on_clear, disabled=result is None, width="stretch")
    try:
        n_test = len(common.cached_test_split(spec.name))
    except (OSError, ValueError, RuntimeError) as exc:
        n_test = 0
        st.caption(f"Test set unavailable: {exc}")
    buttons[1].button("Random digit", key="pg_random", help="A random digit from the test set, with its true label.", on_click=on_random, args=(max(n_test, 1),),
                      disabled=n_test == 0, width="stretch")
    hard_digits.hard_button(disabled=n_test == 0)
    return result, n_test


def pick_image(spec: Any, result: Any, n_test: int) -> tuple[Any, str | None, str | None]:
    """The image to classify: the chosen test digit (its index checked: a bad link falls back to the canvas) or
    the drawing. Returns (image or None, true label or None, why the drawing was refused or None)."""
    url = widgets.canvas_data_url(CANVAS_KEY)
    if ss.pg_source == "test" and url is not None and url != ss.get("pg_seen"):
        ss.pg_source = "canvas"  # the user drew after picking a test digit
    index = ss.get("pg_test_idx")
    if ss.pg_source == "test" and not (isinstance(index, int) and 0 <= index < n_test):
        ss.pg_source = "canvas"
        ss.pop("pg_test_idx", None)
    if ss.pg_source == "test":
        split = common.cached_test_split(spec.name)
        return split.inputs[index], spec.class_names[int(split.labels[index])], None
    if result is not None and url is not None and url != ss.get("pg_ignore"):
        try:
            return preprocess.prepare_canvas(result.image_data), None, None
        except ValueError as exc:
            return None, None, str(exc)
    return None, None, None


def input_id() -> str:
    """Which input is shown ('test:17' or a drawing's fingerprint): a new one restarts the step-through."""
    if ss.pg_source == "test":
        return f"test:{ss.get('pg_test_idx')}"
    url = widgets.canvas_data_url(CANVAS_KEY) or ""
    return "draw:" + hashlib.sha1(url.encode()).hexdigest()[:12]


def restart_on_new_input(source: str) -> None:
    """After each new drawing or test digit the step-through starts again at student 1 (a link's own k is kept:
    the first input of a session is not new)."""
    if ss.get("pg_input") not in (None, source):
        ss.pg_k = 1
    ss.pg_input = source


def show_image(image: Any, truth: str | None) -> None:
    """The 28x28 picture the models get, enlarged, beside where it came from."""
    picture, text = st.columns([1, 1.2])
    picture.markdown("**What the models see**")
    if image is None:
        text.caption("(nothing yet)")
        return
    pixels = image.permute(1, 2, 0).numpy() if image.shape[0] == 3 else image[0].numpy()
    big = np.kron(pixels, np.ones((5, 5) + ((1,) if pixels.ndim == 3 else ()), dtype=pixels.dtype))
    picture.image(np.clip(big, 0.0, 1.0), width=140, clamp=True)
    where = f"test digit #{ss.get('pg_test_idx', 0)}, true label **{truth}**" if truth is not None else \
        "your drawing, cropped, scaled to 20 px and centred like MNIST"
    text.caption(f"{image.shape[-1]}x{image.shape[-2]} pixels: {where}")


def answer_panel(report: inference.DigitReport, models: common.RunModels, truth: str | None) -> int:
    """How many students to use, what they say together (the main answer), the last one's own vote (secondary,
    labelled) and the teacher's answer; returns the number of students used."""
    names, k_total = list(models.spec.class_names), models.ensemble.k
    if not isinstance(ss.get("pg_k"), int) or not 1 <= ss.pg_k <= k_total:
        ss.pg_k = 1  # first visit, a bad link, or another run with fewer students: the step-through's start
    k = st.slider("Students used", 1, k_total, key="pg_k", help=glossary.HELP["students"]) if k_total > 1 else 1
    probs = report.prefix_probs[k - 1]
    cls = int(np.argmax(probs))
    who = "Student 1 says" if k == 1 else f"Students 1–{k} together say"
    st.markdown(f"### {who} **{names[cls]}** ({100 * probs[cls]:.0f}% sure)")
    st.caption(hard_digits.sure_is_not_right(probs[cls], None if truth is None else names[cls] == truth,
                                             photos=bool(models.spec.photos)))
    hard = hard_digits.hard_caption(k_total)
    if hard:
        st.caption(hard)
    share = report.share_of_teacher[k - 1]
    st.caption(f"cost: {report.cumulative_flops[k - 1]:,} FLOPs per image"
               + (f" = {100 * share:.2f}% of the teacher's" if share is not None else "")
               + (f".  True label: {truth}." if truth is not None else ""))
    st.plotly_chart(playground_charts.probabilities_figure(probs, names, cls), key="pg_probs", width="stretch",
                    config={"displayModeBar": False})
    if k > 1:
        solo = report.student_probs[k - 1]
        own = int(np.argmax(solo))
        st.caption(f"Student {k}'s own vote, if it answered alone: {names[own]} ({100 * solo[own]:.0f}%)."
                   + (f" It does not answer alone: in this residual ensemble student {k} *corrects the running "
                      f"sum* of {fmt.students_text(k - 1)}, so only the sum's answer above counts." if models.residual
                      else " Independent mode: the ensemble averages the students' probabilities."))
    if report.teacher_probs is not None:
        t_cls = int(np.argmax(report.teacher_probs))
        st.markdown(f"**Teacher** says **{names[t_cls]}** ({100 * report.teacher_probs[t_cls]:.0f}% sure) for "
                    f"{fmt.human_flops(models.teacher_flops)} FLOPs.")
    return k


def step_through(report: inference.DigitReport, models: common.RunModels, k: int) -> None:
    """Add the students one at a time: how the answer, its sureness and the cost change with each one."""
    k_total = models.ensemble.k
    st.subheader("Step through: add one student at a time")
    cols = st.columns(2)  # wide buttons: their labels are never cut
    cols[0].button("Add the next student", key="pg_step_next", on_click=on_next, args=(k_total,),
                   disabled=k >= k_total, type="primary", width="stretch")
    cols[1].button("Reset to student 1", key="pg_step_reset", on_click=on_reset, disabled=k == 1, width="stretch")
    frame = playground_charts.step_frame(report.as_dict(), k, list(models.spec.class_names))
    last = frame.iloc[-1]
    st.markdown(f"**Student {k} of {k_total} added** ({last['what changed']}): the answer is "
                     f"**{last['answer so far']}**, {last['confidence']} sure, for {last['FLOPs so far']} FLOPs so far "
                     f"({last[SHARE]} of the teacher's)." + (" All students are in." if k == k_total else ""))
    st.table(frame.set_index("step"))


def anytime_section(image: Any, models: common.RunModels) -> None:
    """Anytime mode: the digit stops at the first number of students that is sure enough, or within a budget."""
    st.subheader("Anytime mode: let the digit decide when to stop")
    k_total, spec = models.ensemble.k, models.spec
    if k_total == 1:
        st.caption("This run has a single student, so there is nothing to stop early.")
        return
    ss.setdefault("pg_anytime", "confidence")
    mode = st.radio("Stop rule", url_state.STOP_RULES, key="pg_anytime", horizontal=True,
                    format_func={"confidence": "when sure enough", "budget": "at a FLOP budget"}.get,
                    help=glossary.HELP["early exit"])
    cumulative = models.ensemble.cumulative_flops()
    threshold = None
    if mode == "budget":
        if ss.get("pg_budget") not in cumulative:
            ss.pg_budget = cumulative[-1]
        budget = st.select_slider("FLOP budget per image", options=cumulative, key="pg_budget",
                                  format_func=lambda f: f"{fmt.human_flops(f)} FLOPs", help=glossary.HELP["flops"])
        stop = inference.anytime_digit(models.ensemble, spec, image, flop_budget=budget)
    else:
        ss.setdefault("pg_conf", 0.9)
        threshold = st.slider("stop at the first number of students that is at least this sure", 0.5, 0.999,
                              step=0.001, key="pg_conf", format="%.3f", help=glossary.HELP["confidence"])
        stop = inference.anytime_digit(models.ensemble, spec, image, confidence=threshold)
    used = stop["k_used"]
    note = f" (never {threshold:.3f} sure, so every student was asked)" if threshold is not None and \
        used == k_total and stop["prob"] < threshold else ""
    st.progress(used / k_total, text=f"stopped after {used} of {k_total} students{note}")
    teacher_flops = models.teacher_flops
    st.markdown(f"Answer **{spec.class_names[stop['class']]}** ({100 * stop['prob']:.0f}% sure) for "
                f"{stop['flops']:,} FLOPs"
                + (f" = {100 * stop['flops'] / teacher_flops:.2f}% of the teacher's." if teacher_flops else "."))


def main() -> None:
    run = common.run_or_stop()
    st.title("Playground")
    if run.students_saved() == 0:
        st.info(f"**{common.display_name(run)}** has no trained students yet. Pick a finished run in the sidebar, "
                "or wait for this one on the **Train** page.")
        common.end_page()
    models = common.load_run_models(run)
    if models.spec.kind == "clip":
        st.info(f"**{common.display_name(run)}** is a video run: its students read clips frame by frame. The "
                "**Clips** page plays its test clips, or makes one from your drawing.")
        st.page_link("app_pages/clips.py", label="Open the Clips page", icon=":material/movie:")
        common.end_page()
    st.markdown(photo_panel.INTRO if models.spec.photos else "Draw a digit with the mouse (white on black) or take "
                "a random digit from the test set. The students answer one after another; with more students the "
                "answer gets better and costs more.")
    left, right = st.columns([1.2, 1])  # the 280-pixel canvas fits its column on a 1024-pixel screen
    if models.spec.photos:  # a photo run (Fashion-MNIST): gallery, a hard one, an uploaded photo
        started = time.perf_counter()
        with left:
            image, truth, problem = photo_panel.photo_panel(run, models)
    else:
        with left:
            result, n_test = draw_panel(models.spec)
        started = time.perf_counter()
        image, truth, problem = pick_image(models.spec, result, n_test)
        with left:
            show_image(image, truth)
    with right:
        if problem:
            st.warning(problem)
        if image is None:
            if not problem:
                st.info("Pick a test image (or upload a photo) and the students will guess what it is."
                        if models.spec.photos else "The canvas is blank: draw a digit (or press *Random digit*) "
                        "and the students will guess it.")
            return
        source = photo_panel.input_id() if models.spec.photos else input_id()
        restart_on_new_input(source)
        lesson.note("answered")
        report = inference.predict_digit(models.ensemble, models.spec, image, models.teacher, models.teacher_flops)
        elapsed_ms = 1000 * (time.perf_counter() - started)
        k = answer_panel(report, models, truth)
    step_through(report, models, k)
    st.subheader("Every number of students at once")
    st.caption(f"Together = the answer of the first students combined; the last student's own vote is what it "
               f"would say alone" + (" (in a residual ensemble it is a correction to the sum, so it can differ from "
                                     "the answer without anything being wrong)" if models.residual else "")
               + f". All of this (preprocessing, {models.ensemble.k} ensembles, their votes and the "
               f"teacher) took {elapsed_ms:.0f} ms.")
    frame = playground_charts.prefix_predictions_frame(report.as_dict(), list(models.spec.class_names))
    st.table(frame.set_index("students used"))
    anytime_section(image, models)
    soft_targets.panel(models, image, list(models.spec.class_names).index(truth) if truth is not None else None, k,
                       source=source, teacher_probs=report.teacher_probs)
    hard_digits.galleries(models, k, float(ss.get("pg_conf", 0.9)))


main()
