"""How it works: the residual ensemble as a picture (students adding their logits, the learned scale s_k), the loss
in one line, what a FLOP is here, and a glossary of every word the app uses. Works without a run (a generic
picture) and offline (an inline SVG)."""

from __future__ import annotations

import streamlit as st

from app import common, diagram, glossary, reading, soft_targets
from app.charts import format as fmt
from pkd.runs import RunError
from pkd.runs.schema import PrefixRow, RunInfo


def run_figures() -> tuple[str, list[dict], dict, str]:
    """The chosen run's name, prefix rows, teacher and mode ('', [], {}, 'residual' when there is none to read)."""
    run = common.selected_run()
    if run is None or common.run_info(run)[RunInfo.PROBLEM]:
        return "", [], {}, "residual"
    try:
        summary = run.summary()
        return common.display_name(run), run.prefix_table(), summary.get("teacher", {}), summary.get("mode") or \
            "residual"
    except RunError:
        return "", [], {}, "residual"


def picture(name: str, rows: list[dict], mode: str) -> None:
    """The ensemble diagram of this run (or of three generic students) and what it shows, in words."""
    students = [{"flops": fmt.human_flops(r.get(PrefixRow.STUDENT_FLOPS)), "scale": r.get(PrefixRow.PREV_SCALE)}
                for r in rows] \
        or [{"flops": "a few", "scale": None} for _ in range(3)]
    st.markdown(diagram.ensemble_svg(students, residual=mode != "independent"), unsafe_allow_html=True)
    st.caption(f"The {len(students)} students of {name}, with their FLOPs and learned scales." if name else
               "Three students, as an example.")
    st.markdown(
        "Each **student** reads the image and gives 10 scores, one per digit: its **logits** z. The ensemble keeps "
        "a running sum E of scores, from left to right: student k multiplies the sum so far by its learned "
        "**scale** s_k, then adds its own scores: **E_k = s_k·E_(k−1) + z_k**. The digit with the highest score in "
        "E_k is the answer of students 1 to k. So a later student does not answer alone: it *corrects* the sum. "
        "Stopping after k students costs only their FLOPs; asking one more costs more and is usually more accurate.")


def loss_and_flops(teacher: dict, rows: list[dict]) -> None:
    """The training loss in one line and what a FLOP counts, with this run's numbers where there are some."""
    st.markdown("**Training, in one line.** Students are trained one after another; when student k learns, the "
                "students before it are frozen and it makes this number (the **loss**) small:")
    st.latex(r"L = \alpha\,\mathrm{CE}(y,\,E_k) + (1-\alpha)\,T^2\,"
             r"\mathrm{KL}\big(\mathrm{softmax}(t/T)\,\|\,\mathrm{softmax}(E_k/T)\big)")
    st.markdown("In words: the sum E_k must get the **true label** y right (CE, the usual classification error, "
                "weighted by **α**) and give probabilities close to the **teacher's** t (KL, how different two sets "
                "of probabilities are, weighted by 1 − α), both softened by the **temperature** T.")
    flops = "**What a FLOP is here.** One multiplication or one addition of two numbers (a multiply-add counts "\
            "as 2), counted for answering one image (not for training)."
    if rows and teacher.get("flops"):
        ratio = teacher["flops"] / max(rows[0][PrefixRow.STUDENT_FLOPS], 1)
        flops += (f" Student 1 needs {fmt.human_flops(rows[0][PrefixRow.STUDENT_FLOPS])} FLOPs per image, the teacher "
                  f"{fmt.human_flops(teacher['flops'])}: {ratio:.0f} times as many.")
    st.markdown(flops)


def teacher_picture(k_total: int, mode: str) -> None:
    """The teacher in the picture: its soft answers into every student's loss, the label with weight α."""
    temperature, alpha = soft_targets.run_defaults()
    st.subheader("Where the teacher comes in")
    st.markdown(diagram.distillation_svg(k_total, residual=mode != "independent", alpha=alpha,
                                         temperature=temperature), unsafe_allow_html=True)
    st.markdown("The teacher answers every training image once. Its scores t, divided by the **temperature T** and "
                "turned into probabilities, are its **soft answers**; each student's loss compares them with the "
                "student's own (KL) and adds the error on the **true label** (CE), weighted by **α**.")


def one_test_digit() -> None:
    """The soft targets and a student reading, on a test digit the class picks (image runs with a teacher)."""
    run = common.selected_run()
    if run is None or common.run_info(run)[RunInfo.PROBLEM] or run.students_saved() == 0 or \
            common.dataset_kind(run.setting("data", "dataset")) != "image":
        st.caption("Pick an image run with trained students in the sidebar to see its teacher and students at work "
                   "on a test digit.")
        return
    models = common.load_run_models(run)
    split = common.cached_test_split(models.spec.name)
    ss = st.session_state
    if not isinstance(ss.get("how_digit"), int) or not 0 <= ss.how_digit < len(split):
        ss.how_digit = 0
    index = st.number_input("Test digit shown below (its number in the test set)", 0, len(split) - 1,
                            key="how_digit")
    label = int(split.labels[index])
    st.caption(f"Test digit #{index}: a {models.spec.class_names[label]}.")
    soft_targets.panel(models, split.inputs[index], label, 1, key="how_soft", source=f"test:{index}")
    reading.section(models, split.inputs[index])


def glossary_section() -> None:
    with st.expander("Glossary: every word the app uses", expanded=False):
        for term, text in glossary.TERMS.items():
            st.markdown(f"**{term}**: {text}")


def main() -> None:
    st.title("How it works")
    st.markdown("A big **teacher** network is accurate but costs a lot of work per image. Small **students** learn "
                "from it, one after another, and answer **together**: the more students you ask, the more work and "
                "the better the answer, so you can stop whenever the answer is good enough (*anytime inference*).")
    name, rows, teacher, mode = run_figures()
    picture(name, rows, mode)
    teacher_picture(len(rows) or 3, mode)
    loss_and_flops(teacher, rows)
    one_test_digit()
    glossary_section()


main()
