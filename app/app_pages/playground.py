"""Playground: draw a digit (or take a random test digit) and watch the ensemble answer with 1..K students."""

from __future__ import annotations

import time

import numpy as np
import streamlit as st

from app import charts, common, inference
from pkd import data as pkd_data
from pkd.runs import RunError

CANVAS_KEY = "canvas"
CANVAS_SIZE = 280
ss = st.session_state
ss.setdefault("pg_source", "canvas")  # "canvas" or "test"
ss.setdefault("pg_clear", 0)  # bumped by Clear: a new initial drawing empties the canvas


def canvas_data_url() -> str | None:
    """The PNG data URL the canvas last sent (None before the first stroke)."""
    value = ss.get(CANVAS_KEY)
    try:
        return value["drawing"]["data"]
    except (TypeError, KeyError):
        return None


def on_clear() -> None:
    ss.pg_clear += 1
    ss.pg_ignore = canvas_data_url()  # until the emptied canvas reports back, its old picture counts as blank
    ss.pg_source = "canvas"


def on_random(n: int) -> None:
    ss.pg_test_idx = int(np.random.default_rng().integers(n))
    ss.pg_source = "test"
    ss.pg_seen = canvas_data_url()  # a stroke drawn after this switches back to the canvas


run = common.run_or_stop()
st.title("Playground")
if run.students_saved() == 0:
    st.info(f"**{run.name}** has no trained students yet. Pick a finished run in the sidebar, or wait for "
            "this one on the **Train** page.")
    st.stop()
try:
    dataset = run.setting("data", "dataset")
    spec = pkd_data.get_dataset_spec(dataset)
    key = run.weights_stamp()
    ensemble = common.cached_ensemble(str(run.path), key)
    teacher = common.cached_teacher(str(run.path), key) if run.has_teacher() else None
    summary = run.summary()
except (RunError, ValueError, OSError, KeyError) as exc:
    st.error(f"Cannot load the models of {run.name}: {exc}")
    st.stop()
teacher_flops = summary.get("teacher", {}).get("flops")
K = ensemble.k
can_draw = tuple(spec.sample_shape) == (1, 28, 28)

st.markdown("Draw a digit with the mouse (white on black) or take a random digit from the test set. "
            "The students answer one after another; with more students the answer gets better and costs more.")
left, middle, right = st.columns([1.25, 0.8, 1.6])
with left:
    st.markdown("**Draw here**")
    if can_draw:
        from streamlit_drawable_canvas import st_canvas

        result = st_canvas(stroke_width=20, stroke_color="#FFFFFF", background_color="#000000",
                           width=CANVAS_SIZE, height=CANVAS_SIZE, drawing_mode="freedraw",
                           initial_drawing={"objects": [], "pkd_clear": ss.pg_clear},
                           return_image_data=True, key=CANVAS_KEY)
    else:
        result = None
        st.info(f"Drawing is for 28x28 digit datasets; this run uses {dataset}. Take a random test image.")
    buttons = st.columns(2)
    buttons[0].button("Clear", key="pg_clear_btn", on_click=on_clear, disabled=not can_draw, width="stretch")
    try:
        n_test = len(common.cached_test_split(dataset))
    except (OSError, ValueError, RuntimeError) as exc:
        n_test = 0
        st.caption(f"Test set unavailable: {exc}")
    buttons[1].button("Random test digit", key="pg_random", on_click=on_random, args=(max(n_test, 1),),
                      disabled=n_test == 0, width="stretch")

url = canvas_data_url()
if ss.pg_source == "test" and url is not None and url != ss.get("pg_seen"):
    ss.pg_source = "canvas"  # the user drew after picking a test digit
if ss.pg_source == "test" and n_test == 0:
    ss.pg_source = "canvas"

image, truth, problem = None, None, None
started = time.perf_counter()
if ss.pg_source == "test":
    split = common.cached_test_split(dataset)
    idx = int(ss.get("pg_test_idx", 0)) % len(split)
    image, truth = split.inputs[idx], spec.class_names[int(split.labels[idx])]
elif result is not None and url is not None and url != ss.get("pg_ignore"):
    try:
        image = inference.prepare_canvas(result.image_data)
    except ValueError as exc:
        problem = str(exc)

with middle:
    st.markdown("**What the models see**")
    if image is not None:
        pixels = image.permute(1, 2, 0).numpy() if image.shape[0] == 3 else image[0].numpy()
        big = np.kron(pixels, np.ones((6, 6) + ((1,) if pixels.ndim == 3 else ()), dtype=pixels.dtype))
        st.image(np.clip(big, 0.0, 1.0), width=168, clamp=True)
        where = f"test digit #{ss.get('pg_test_idx', 0)}, true label **{truth}**" if truth is not None else \
            "your drawing, cropped, scaled to 20 px and centred like MNIST"
        st.caption(f"{image.shape[-1]}x{image.shape[-2]} pixels: {where}")
    else:
        st.caption("(nothing yet)")

with right:
    if problem:
        st.warning(problem)
    if image is None:
        if not problem:
            st.info("The canvas is blank: draw a digit (or press *Random test digit*) and the students will guess "
                    "it.")
        st.stop()
    report = inference.predict_digit(ensemble, spec, image, teacher, teacher_flops)
    elapsed_ms = 1000 * (time.perf_counter() - started)
    if not isinstance(ss.get("pg_k"), int) or not 1 <= ss.pg_k <= K:
        ss.pg_k = K  # first visit, or another run with fewer students was picked
    k = st.slider("Students used (k)", 1, K, key="pg_k") if K > 1 else 1
    probs = report.prefix_probs[k - 1]
    cls = int(np.argmax(probs))
    st.markdown(f"### Students 1..{k} say **{spec.class_names[cls]}** ({100 * probs[cls]:.0f}% sure)")
    share = report.share_of_teacher[k - 1]
    st.caption(f"cost: {report.cumulative_flops[k - 1]:,} FLOPs per image"
               + (f" = {100 * share:.2f}% of the teacher's" if share is not None else "")
               + (f".  True label: {truth}." if truth is not None else ""))
    st.plotly_chart(charts.probabilities_figure(probs, list(spec.class_names), cls), key="pg_probs",
                    width="stretch", config={"displayModeBar": False})
    if report.teacher_probs is not None:
        t_cls = int(np.argmax(report.teacher_probs))
        st.markdown(f"**Teacher** says **{spec.class_names[t_cls]}** ({100 * report.teacher_probs[t_cls]:.0f}% sure) "
                    f"for {charts.human_flops(teacher_flops)} FLOPs.")

st.subheader("Every prefix k at once")
st.caption(f"Each student votes on its own; the ensemble combines students 1..k. All of this (preprocessing, "
           f"{K} prefixes, {K} votes and the teacher) took {elapsed_ms:.0f} ms.")
st.table(charts.prefix_predictions_frame(report.as_dict(), list(spec.class_names)))

st.subheader("Anytime mode: let the digit decide when to stop")
if K == 1:
    st.caption("This run has a single student, so there is nothing to stop early.")
    st.stop()
mode = st.radio("Stop rule", ["confidence threshold", "FLOP budget"], key="pg_anytime", horizontal=True)
cumulative = ensemble.cumulative_flops()
if mode == "FLOP budget":
    if ss.get("pg_budget") not in cumulative:
        ss.pg_budget = cumulative[-1]
    budget = st.select_slider("FLOP budget per image", options=cumulative, key="pg_budget",
                              format_func=charts.human_flops)
    stop = inference.anytime_digit(ensemble, spec, image, flop_budget=budget)
else:
    threshold = st.slider("stop at the first k that is at least this sure", 0.5, 0.999, 0.9, 0.001,
                          key="pg_conf", format="%.3f")
    stop = inference.anytime_digit(ensemble, spec, image, confidence=threshold)
used = stop["k_used"]
note = ""
if mode != "FLOP budget" and used == K and stop["prob"] < threshold:
    note = f" (never {threshold:.3f} sure, so every student was asked)"
st.progress(used / K, text=f"stopped after {used} of {K} students{note}")
st.markdown(f"Answer **{spec.class_names[stop['class']]}** ({100 * stop['prob']:.0f}% sure) for "
            f"{stop['flops']:,} FLOPs"
            + (f" = {100 * stop['flops'] / teacher_flops:.2f}% of the teacher's." if teacher_flops else "."))
