"""Clips: a Moving MNIST clip (a test clip, or your drawing set in motion) played forwards or backwards, the video
teacher's answer (the same both ways: it averages the frames) and every number of students' answer after each
frame (they read the frames in order)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from app import common, glossary, widgets
from app.charts import clips as clip_charts
from app.charts import format as fmt
from pkd import inference, preprocess
from pkd.data.moving_mnist import MOTIONS, REVERSE_MOTION, reverse_clips, reverse_label
from pkd.runs import Run, RunError

QUICK_CONFIG = "configs/moving-mnist-quick.yaml"
CANVAS_KEY = "clips_canvas"
CANVAS_SIZE = 240
GIF_SIDE = 200  # px on screen: the clip's S px enlarged by a whole factor to about this
ss = st.session_state
ss.setdefault("clips_source", "test")  # "test" or "drawing"
ss.setdefault("clips_clear", 0)  # bumped by Clear: a new initial drawing empties the canvas


@dataclass
class ClipModels(common.RunModels):
    """A video run's models and each student's FLOPs up to every frame (for the per-frame cost)."""

    frame_flops: list[list[int]] = field(default_factory=list)


def on_pick_run() -> None:
    ss[common.RUN_KEY] = ss.clips_run  # the sidebar (and the link) follow the page's pick


def pick_run() -> Run:
    """The page's run picker, limited to video runs; without one, how to make one, and common.end_page()."""
    runs = common.video_runs()
    if not runs:
        st.info("There is no video run yet. Make one (a few minutes on a CPU, longer while the machine is "
                "busy):\n\n"
                f"```bash\npython -m pkd train --config {QUICK_CONFIG}\n```\n\n"
                "or start **moving-mnist-quick** on the **Train** page, then come back here.")
        common.end_page()
    if ss.get(common.RUN_KEY) in runs:
        ss.clips_run = ss[common.RUN_KEY]  # the sidebar's run, or a link's, when it is a video run
    elif ss.get("clips_run") not in runs:
        ss.clips_run = next(iter(runs))  # newest first
    st.selectbox("Video run", list(runs), key="clips_run", format_func=runs.get, on_change=on_pick_run,
                 help="Only runs trained on clips are listed here; the other pages show any run.")
    return Run(Path(ss.clips_run))


@st.cache_resource(max_entries=4, show_spinner=False)
def cached_frame_flops(path: str, key: tuple) -> list[list[int]]:  # noqa: ARG001 - key is part of the cache key
    return inference.frame_flops(common.cached_ensemble(path, key))


@st.cache_resource(max_entries=16, show_spinner=False)
def test_clip_report(path: str, key: tuple, index: int, back: bool, _models: ClipModels,  # noqa: ARG001
                     _shown: Any) -> inference.ClipReport:
    """clip_report of test clip `index` (played backwards when `back`) of run `path` with weights `key`, kept
    between sessions: a new tab on the same clip reuses it instead of running every student frame by frame."""
    return inference.clip_report(_models.ensemble, _models.spec, _shown, _models.teacher, _models.frame_flops)


def load_models(run: Run) -> ClipModels:
    """The run's students, teacher and per-frame FLOPs (cached), or an error and common.end_page()."""
    models = common.load_run_models(run)
    try:
        flops = cached_frame_flops(str(run.path), run.weights_stamp())
    except (RunError, ValueError, OSError) as exc:
        st.error(f"Cannot load the models of {common.display_name(run)}: {exc}")
        common.end_page()
    return ClipModels(models.spec, models.ensemble, models.teacher, models.teacher_flops, models.source, flops)


def on_random(n: int) -> None:
    ss.clips_idx = int(np.random.default_rng().integers(n))
    ss.clips_source = "test"


def on_clear() -> None:
    ss.clips_clear += 1
    ss.clips_ignore = widgets.canvas_data_url(CANVAS_KEY)  # until the emptied canvas reports back, its old picture counts as blank



def test_clip_controls(spec: Any):
    """The test clip's number and a Random button; returns the test split (None when unavailable)."""
    try:
        split = common.cached_test_split(spec.name)
    except (OSError, ValueError, RuntimeError) as exc:
        st.warning(f"The test clips are unavailable ({exc}); draw a digit instead.")
        return None
    n = len(split)
    if not (isinstance(ss.get("clips_idx"), int) and 0 <= ss.clips_idx < n):
        ss.clips_idx = 0  # first visit, or a link's index that this test set does not have
    cols = st.columns([1.4, 1], vertical_alignment="bottom")
    cols[0].number_input(f"Test clip (0 to {n - 1})", 0, n - 1, key="clips_idx", step=1, help=glossary.HELP["clip"])
    cols[1].button("Random clip", key="clips_random", on_click=on_random, args=(n,), width="stretch")
    return split


def drawing_controls() -> str:
    """The motion of the clip made from the drawing, and Clear; returns the motion."""
    cols = st.columns([1.4, 1], vertical_alignment="bottom")
    ss.setdefault("clips_motion", MOTIONS[0])
    motion = cols[0].selectbox("Motion", MOTIONS, key="clips_motion", help=glossary.HELP["motion"])
    cols[1].button("Clear", key="clips_clear_btn", on_click=on_clear, width="stretch")
    return motion


def drawn_clip(spec: Any, motion: str) -> Any:
    """The canvas, and the clip made from its drawing with the chosen motion (None while the canvas is blank)."""
    from streamlit_drawable_canvas import st_canvas

    st.markdown("**Draw here**")
    result = st_canvas(stroke_width=18, stroke_color="#FFFFFF", background_color="#000000", width=CANVAS_SIZE,
                       height=CANVAS_SIZE, drawing_mode="freedraw",
                       initial_drawing={"objects": [], "pkd_clear": ss.clips_clear}, return_image_data=True,
                       key=CANVAS_KEY)
    url = widgets.canvas_data_url(CANVAS_KEY)
    image = None
    if result is not None and url is not None and url != ss.get("clips_ignore"):
        try:
            image = preprocess.prepare_canvas(result.image_data)
        except ValueError as exc:
            st.warning(str(exc))
            return None
    if image is None:
        st.info(f"Draw a digit (white on black) with the mouse; it becomes a clip of it {motion}.")
        return None
    return preprocess.clip_from_drawing(image, motion, spec)


def show_clip(clip: Any) -> None:
    """The clip playing on a loop (an animated GIF, enlarged by a whole factor)."""
    side = clip.shape[-1]
    scale = max(1, GIF_SIDE // side)
    st.image(preprocess.clip_gif(clip, scale=scale), width=side * scale,
             caption=f"playing on a loop: {clip.shape[0]} frames of {side}x{side} pixels, shown {scale}x")


def views_side_by_side(clip: Any, t: int, report: inference.ClipReport, models: ClipModels,
                       truth_motion: str | None) -> None:
    """What the teacher sees (the frames averaged: no direction left) beside what the students read (the frames
    in order, drawn on top of each other with a fading trail), then the frames one by one in a row."""
    side, frames = clip.shape[-1], clip.shape[0]
    factor = max(1, 150 // side)
    cols = st.columns([1, 1, 1.5], gap="medium")
    with cols[0]:
        st.markdown("**What the teacher sees**")
        st.image(clip_charts.enlarge(clip_charts.average_frame(clip), factor), clamp=True, width=side * factor,
                 caption=f"all {frames} frames averaged into one picture: no first frame, no last")
    with cols[1]:
        st.markdown("**What the students read**")
        st.image(clip_charts.enlarge(clip_charts.onion_skin(clip, t), factor), clamp=True, width=side * factor,
                 caption=f"frames 1 to {t} in order, on top of each other: the latest white, the older ones a "
                         "fading blue trail behind it")
    with cols[2]:
        teacher_direction(report, models, truth_motion)
    strip_factor = max(1, min(factor, 900 // (frames * side)))
    st.image(clip_charts.frame_row(clip, t, strip_factor), clamp=True,
             caption=f"Frame by frame, left to right: frame 1 to {frames}, each with the trail of the frames before "
                     f"it; the students have read {t} of them (dimmed = not read yet), the teacher takes all {frames} "
                     "at once.")


def teacher_direction(report: inference.ClipReport, models: ClipModels, truth_motion: str | None) -> None:
    """One line on the teacher's motion: an average has no direction, so the motion it names is a guess."""
    if report.teacher_probs is None or truth_motion is None:
        return
    said = clip_charts.answer(report.teacher_probs, list(models.spec.class_names))[0].split(" ", 1)[-1]
    if said != truth_motion:
        st.markdown(f"The digit is **{truth_motion}**; the teacher says **{said}**. Its average has no before and "
                    "after: it loses the direction altogether (not only left vs right), so the motion it names "
                    "is a guess.")
    else:
        st.markdown(f"The teacher names the motion right here (**{said}**), but its average would be the same "
                    "played backwards: it cannot know the direction, only guess it.")
    st.markdown("The students read the frames in order: the trail shows them where the digit comes from.")


def teacher_panel(report: inference.ClipReport, models: ClipModels) -> None:
    names = list(models.spec.class_names)
    if report.teacher_probs is None:
        st.caption("This run has no saved teacher.")
        return
    name, p = clip_charts.answer(report.teacher_probs, names)
    back, p_back = clip_charts.answer(report.teacher_probs_reversed, names)
    cost = f" for {fmt.human_flops(models.teacher_flops)} FLOPs" if models.teacher_flops else ""
    st.markdown(f"**Teacher** (looks at all {report.frames} frames at once{cost}): **{name}** ({100 * p:.1f}% sure)")
    if report.teacher_order_blind():
        st.markdown(f"Played the other way round it says exactly the same, **{back}** ({100 * p_back:.1f}%): it "
                    "averages its frames, and an average does not depend on their order.")
    else:  # not a temporal-mean teacher: say what it does
        st.markdown(f"Played the other way round it says **{back}** ({100 * p_back:.1f}%).")


def students_panel(report: inference.ClipReport, models: ClipModels, t: int, truth: str | None) -> None:
    names, k = list(models.spec.class_names), models.ensemble.k
    name, p = clip_charts.answer(report.prefix_probs[t - 1, k - 1], names)
    flops = report.cumulative_flops[t - 1][k - 1]
    share = f" = {100 * flops / models.teacher_flops:.1f}% of the teacher's" if models.teacher_flops else ""
    together = "Student 1 says" if k == 1 else f"Students 1–{k} together say"
    st.markdown(f"#### After frame {t} of {report.frames}: {together} **{name}** ({100 * p:.1f}% sure)")
    st.caption(f"for {flops:,} FLOPs so far{share}." + (f"  The right answer: **{truth}**." if truth else ""))
    st.table(clip_charts.answers_frame(report, t, names, models.teacher_flops).set_index("students used"))


def main() -> None:
    st.title("Clips")
    st.markdown("The **teacher** averages what it sees in the frames, and an average has no first or last frame: "
                "it loses the direction altogether (left or right, up or down, growing or shrinking), and a clip "
                "and the same clip played backwards get exactly the same answer. The **students** read the frames "
                "in order, one after another, so they can tell which way the digit moves, and answer after every "
                "frame.")
    top = st.columns([1, 0.9, 1.2], gap="medium", vertical_alignment="bottom")
    with top[0]:
        run = pick_run()
    models = load_models(run)
    frames, names = models.spec.sample_shape[0], list(models.spec.class_names)
    top[1].radio("Clip", ["test", "drawing"], key="clips_source", horizontal=True,
                 format_func={"test": "a test clip", "drawing": "my drawing"}.get,
                 help=glossary.HELP["clip"])
    left, right = st.columns([1, 1.35], gap="large")
    with top[2]:
        split = test_clip_controls(models.spec) if ss.clips_source == "test" else None
        motion = drawing_controls() if ss.clips_source == "drawing" else None
    with left:
        if split is not None:
            clip, label = split.inputs[ss.clips_idx], int(split.labels[ss.clips_idx])
            truth_of = lambda back: names[reverse_label(label) if back else label]  # noqa: E731
            motion_of = lambda back: MOTIONS[int(reverse_label(label) if back else label) % len(MOTIONS)]  # noqa: E731
        elif motion is not None:
            clip = drawn_clip(models.spec, motion)
            motion_of = lambda back: MOTIONS[REVERSE_MOTION[MOTIONS.index(motion)]] if back else motion  # noqa: E731
            truth_of = lambda back: f"your digit, {motion_of(back)}"  # noqa: E731
        else:
            clip = None
        if clip is None:
            return
        back = st.toggle("Play it backwards", key="clips_back", help=glossary.HELP["backwards"])
        shown = reverse_clips(clip) if back else clip  # (T, 1, S, S)
        if not (isinstance(ss.get("clips_frame"), int) and 1 <= ss.clips_frame <= frames):
            ss.clips_frame = frames  # first visit, a bad link, or a run with fewer frames
        show_clip(shown)
        t = st.slider("After frame", 1, frames, key="clips_frame", help=glossary.HELP["frame"])
    if split is not None:
        report = test_clip_report(str(run.path), run.weights_stamp(), ss.clips_idx, back, models, shown)
    else:  # a drawing: made anew each time
        report = inference.clip_report(models.ensemble, models.spec, shown, models.teacher, models.frame_flops)
    with right:
        teacher_panel(report, models)
        students_panel(report, models, t, truth_of(back))
    views_side_by_side(shown, t, report, models, motion_of(back))
    st.plotly_chart(clip_charts.confidence_figure(report, names, t), key="clips_chart", width="stretch",
                    config={"displayModeBar": False})
    if not common.lesson_mode():
        with st.expander("Every frame, every number of students"):
            st.table(clip_charts.every_frame_frame(report, names).set_index("after frame"))


main()
