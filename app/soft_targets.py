"""The soft-target panel (Playground and How it works): for one image, the teacher's probabilities at T = 1 beside
those at temperature T, the student's beside them, the KL between them and what alpha mixes, in words.

Every number comes from pkd.inference.digit_soft_targets, i.e. pkd.kd's loss, the one training minimises.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from app import common, glossary
from app.charts import soft_targets as charts
from pkd import inference
from pkd.runs import RunError

T_RANGE = (1.0, 10.0)  # the temperature slider's range
ss = st.session_state


def run_defaults() -> tuple[float, float]:
    """The selected run's own (T, alpha), within the sliders' ranges; (4, 0.3) when it has none."""
    run = common.selected_run()
    try:
        t, a = float(run.setting("distill", "temperature")), float(run.setting("distill", "alpha"))
    except (AttributeError, RunError, TypeError, ValueError):
        t, a = 4.0, 0.3
    return min(max(t, T_RANGE[0]), T_RANGE[1]), min(max(a, 0.0), 1.0)


@st.cache_resource(max_entries=64, show_spinner=False)
def _teacher_probs(source: tuple, digest: str, _models: common.RunModels, _image: Any) -> list[float]:
    """The teacher's probabilities on one image (kept between sessions: a new tab on the same digit reuses them)."""
    return inference.predict_digit(_models.ensemble, _models.spec, _image, _models.teacher).teacher_probs


@st.cache_resource(max_entries=64, show_spinner=False)
def _parts(source: tuple, digest: str, k: int, label: int, alpha: float, temperature: float,
           _models: common.RunModels, _image: Any) -> dict:
    """digit_soft_targets' parts (kept between sessions, like _teacher_probs)."""
    return vars(inference.digit_soft_targets(_models.ensemble, _models.spec, _image, _models.teacher, k, label, alpha,
                                             temperature))


def who_learns(models: common.RunModels, k: int) -> str:
    """Whose answer student k's loss compares with the teacher's, in words."""
    if not models.residual:
        return f"student {k}"
    return "student 1" if k == 1 else f"students 1–{k} together"


def _label(names: list[str], truth: int | None, teacher_class: int, key: str, source: str) -> int:
    """The true label y: the test digit's own, or for a drawing the one the learner says they meant (the teacher's
    answer until they say otherwise; a new drawing starts there again)."""
    if truth is not None:
        return truth
    if ss.get(f"{key}_label_for") != source or ss.get(f"{key}_label") not in range(len(names)):
        ss[f"{key}_label"], ss[f"{key}_label_for"] = teacher_class, source
    return st.selectbox("The digit you meant (the true label y)", range(len(names)), key=f"{key}_label",
                        format_func=lambda i: names[i], help="A drawing has no label: say which digit you drew. "
                        "The label's part of the loss is the error on it.")


def panel(models: common.RunModels, image: Any, truth: int | None, k: int, key: str = "soft",
          source: str = "", teacher_probs: list[float] | None = None) -> None:
    """The soft-target panel for one image.

    Args:
        models: the run's students and teacher. image: (Ch, H, W) in [0, 1].
        truth: the true class index, or None for a drawing. k: whose loss (student k: its prefix in residual mode).
        key: the widgets' key prefix (one per page). source: identifies the input (a new one resets its label).
        teacher_probs: the teacher's probabilities on the image when the page has them already.
    """
    names = list(models.spec.class_names)
    st.subheader("What the teacher teaches: soft targets")
    if models.teacher is None:
        st.info("This run has no teacher saved, so there are no soft targets to show.")
        return
    st.markdown("The teacher does not only say *it is a 7*: its probabilities for the **other** classes say what "
                "the image looks like. Divide its scores (logits) by a **temperature T** before the softmax and "
                "those small probabilities grow: these softened probabilities are the **soft targets** the students "
                "learn to copy.")
    t_default, a_default = run_defaults()
    ss.setdefault(f"{key}_T", t_default)
    ss.setdefault(f"{key}_alpha", a_default)
    left, right = st.columns(2)
    temperature = left.slider("Temperature T", *T_RANGE, step=0.5, key=f"{key}_T", help=glossary.HELP["temperature"])
    alpha = right.slider("α: weight of the true label", 0.0, 1.0, step=0.05, key=f"{key}_alpha",
                         help=glossary.HELP["alpha"])
    digest = common.image_digest(image)
    if teacher_probs is None:
        teacher_probs = _teacher_probs(models.source, digest, models, image)
    teacher_class = max(range(len(names)), key=teacher_probs.__getitem__)
    label = _label(names, truth, teacher_class, key, source)
    parts = dict(_parts(models.source, digest, k, label, alpha, temperature, models, image))
    who = who_learns(models, k)
    st.caption(f"This run was trained with T = {t_default:g} and α = {a_default:g}; the sliders only change what is "
               f"shown here. The loss is student {k}'s ({who} in this "
               f"{'residual' if models.residual else 'independent'} ensemble; change it with *Students used*).")
    left, right = st.columns(2)
    left.plotly_chart(charts.teacher_figure(parts, names), key=f"{key}_teacher_chart", width="stretch",
                      config={"displayModeBar": False})
    left.markdown(charts.temperature_words(parts, names))
    right.plotly_chart(charts.student_figure(parts, names, who), key=f"{key}_student_chart", width="stretch",
                       config={"displayModeBar": False})
    right.markdown(charts.loss_words(parts, names, who))
    cells = st.columns(4)
    cells[0].metric("KL at T", charts.num(parts['kl']), help="How different the student's softened probabilities are "
                    "from the teacher's: 0 = the same.")
    cells[1].metric("label error (CE)", charts.num(parts['hard']), help="−log of the student's probability (at T = 1) "
                    "for the true label: 0 when it is 100% sure of the right answer.")
    cells[2].metric("teacher's part T²·KL", charts.num(parts['soft']))
    cells[3].metric("loss", charts.num(parts['loss']), help="α × label error + (1 − α) × T² × KL")
