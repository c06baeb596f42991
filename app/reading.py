"""How it works' "a student reads the image": a step slider over the rows (tokens) of one test image, the student's
answer after the rows read so far and its memory (its first layer's state), from pkd.inference.read_tokens, which
feeds the rows one at a time through the model's recurrent step."""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from app import common, lesson
from app.charts import playground as playground_charts
from app.charts import reading as charts
from pkd import inference

ss = st.session_state


@st.cache_resource(max_entries=32, show_spinner=False)
def _reading(source: tuple, which: int, digest: str, _models: common.RunModels, _image: Any) -> inference.TokenReading:
    """Student `which` reading one image (kept between sessions: a new tab on the same digit reuses it)."""
    return inference.read_tokens(_models.ensemble.students[which - 1], _models.spec, _image)


def section(models: common.RunModels, image: Any) -> None:
    """The reading view for one image (students that read pixels row by row; others get a sentence)."""
    st.subheader("Inside a student: it reads the image one row at a time")
    names, k_total = list(models.spec.class_names), models.ensemble.k
    which = st.selectbox("Student", range(1, k_total + 1), key="how_student", format_func=lambda k: f"student {k}",
                         help="Which student reads. Student 1 is the smallest.") if k_total > 1 else 1
    try:
        reading = _reading(models.source, which, common.image_digest(image), models, image)
    except ValueError as exc:
        st.caption(f"This student cannot be shown reading: {exc}")
        return
    rows = reading.tokens == "rows" and not reading.stem
    length = reading.probs.shape[0]
    if not isinstance(ss.get("how_read"), int) or not 1 <= ss.how_read <= length:
        ss.how_read = 1
    what = ("rows" if reading.per_token == 1 else f"steps of {reading.per_token} rows") if rows else "tokens"
    t = st.slider(f"Reading: {what} read", 1, length, key="how_read",
                  help="Move it to feed the student one more step: it updates its memory and answers again.")
    if t == length:
        lesson.note("read_all")
    probs = reading.probs[t - 1].tolist()
    state = reading.states[t - 1].numpy()
    cls = int(np.argmax(probs))
    ed, n = state.shape
    st.markdown(f"Student {which} has read **{t} of {length}** {what}. "
                f"After each one it does the same small update, **memory ← decay × memory + what this step adds**, "
                f"and can answer from its memory alone: now **{names[cls]}** ({100 * probs[cls]:.0f}% sure). Its "
                f"memory always holds **{ed} × {n} = {ed * n:,} numbers**, after step 1 as after step {length}: it "
                "never looks back at what it has read.")
    left, middle, right = st.columns([0.8, 1, 1.1])
    pixels = image[0].numpy() if image.shape[0] == 1 else image.mean(0).numpy()
    if rows:
        left.image(charts.lit_rows(pixels, t, reading.per_token), caption="rows read (red: the newest)",
                   width=168, clamp=True)
    else:
        left.image(np.clip(pixels, 0, 1), caption="the image", width=168, clamp=True)
    middle.markdown("**Its answer so far**")
    middle.plotly_chart(playground_charts.probabilities_figure(probs, names, cls), key="how_read_answer",
                        width="stretch", config={"displayModeBar": False})
    right.markdown("**Its memory now** (first layer's state)")
    limit = float(np.abs(reading.states.numpy()).max()) or 1.0
    right.plotly_chart(charts.memory_figure(state, limit), key="how_read_memory", width="stretch",
                       config={"displayModeBar": False})
