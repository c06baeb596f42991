"""Results: accuracy vs cumulative FLOPs of every ensemble prefix (the teacher at its own cost), the early-exit
curves explained, the per-student table, runs overlaid, and one prefix exported to ONNX (built by pkd.export in a
temporary folder)."""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from app import common, glossary, widgets
from app.charts import format as fmt
from app.charts import results as results_charts
from app.charts import runs as runs_charts
from pkd.runs import Run, RunError
from pkd import stats
from pkd.data import get_dataset_spec
from pkd.groups import group_prefixes, seed_group_members
from pkd.runs.schema import AnytimeAuc, Manifest, PrefixRow, RunInfo, Summary, TeacherFigures, VideoFigures

ss = st.session_state


def intro(thing: str) -> str:
    """The page's plain-words explanation; thing: "image" or "clip", what the run classifies."""
    tests = "test images" if thing == "image" else "test clips"
    return ("Each dot is an **ensemble of the first students**: student 1 alone, then students 1–2 together, and so "
            f"on. Up: its accuracy on the {tests} (the number beside the dot). Right: the work it costs per {thing}, "
            "in FLOPs (the top axis gives the same as a % of the teacher's work). The **star** is the big "
            "**teacher** network the students learned from, at its own cost; the dashed line is its accuracy. Dots "
            "close to the dashed line but far to the left of the star reach nearly the teacher's accuracy for a "
            "fraction of its work, and you can stop after any number of students.")


def sample_kind(run: Run) -> str:
    """"image" or "clip": what the run's dataset holds ("image" when the dataset is unknown here)."""
    try:
        return common.dataset_kind(run.setting("data", "dataset")) or "image"
    except (RunError, OSError):
        return "image"


def load(run: Run) -> tuple[list[dict], dict]:
    """The run's prefix rows and summary, or an error and common.end_page()."""
    try:
        return run.prefix_table(), run.summary()
    except RunError as exc:
        st.error(f"Cannot read the results of {common.display_name(run)}: {exc}")
        common.end_page()


def controls(run: Run) -> tuple[list[str], bool, bool]:
    """Overlay picker (not in lesson mode), FLOPs axis scale and the early-exit toggle."""
    ss.setdefault("results_xscale", "log")
    ss.setdefault("results_anytime", True)
    compare: list[str] = []
    if not common.lesson_mode():
        others = [r for r, i in common.run_infos()
                  if str(r.path) != str(run.path) and i[RunInfo.K_DONE] > 0 and not i[RunInfo.PROBLEM]]
        labels = {str(r.path): common.label(r) for r in others}
        if "results_compare" in ss:  # drop runs that were deleted or became the selected run
            ss.results_compare = [p for p in ss.results_compare if p in labels]
        compare = st.multiselect("Overlay other runs (e.g. residual vs independent, another α)", list(labels),
                                      key="results_compare", format_func=lambda p: labels.get(p, p))
    cols = st.columns([1, 2, 1])  # wide enough that no label is cut on a 1024-pixel projector
    scale = cols[0].radio("FLOPs axis", ["log", "linear"], key="results_xscale", horizontal=True,
                          help="log: every step to the right is ×10 the work, so small and large costs both show.")
    anytime = cols[1].toggle("early-exit curve", key="results_anytime", help=glossary.HELP["early exit"])
    return compare, scale == "log", anytime


def is_motion(summary: dict) -> bool:
    """Whether the run's classes name a digit and its motion (Moving MNIST): its accuracy is digit-and-motion."""
    try:
        return get_dataset_spec(str(summary.get(Summary.DATASET))).motion_labels
    except (KeyError, ValueError):
        return False


def measure_of(run: Run, summary: dict) -> str:
    """What the page's accuracies measure and on which samples, in words: 'digit-and-motion accuracy (60 classes)
    on the 2,000 test clips of moving_mnist' / 'accuracy (10 classes) on the test set of mnist'."""
    dataset = summary.get(Summary.DATASET) or common.run_info(run)["dataset"]
    try:
        spec = get_dataset_spec(str(dataset))
        classes, motion = spec.num_classes, spec.motion_labels
    except (KeyError, ValueError):
        classes, motion = None, False
    what = ("digit-and-motion accuracy" if motion else "accuracy") + (f" ({classes} classes)" if classes else "")
    video = summary.get(Summary.VIDEO) or {}
    if video.get(VideoFigures.N):
        return f"{what} on the {video[VideoFigures.N]:,} {video.get(VideoFigures.SPLIT, 'test')} clips of {dataset}"
    try:
        limit = run.setting("data", "test_limit")
    except (RunError, OSError, KeyError):
        limit = None
    return f"{what} on " + (f"the first {limit:,} samples of {dataset}'s test set" if limit else
                            f"the test set of {dataset}")


def headline(run: Run, rows: list[dict], summary: dict, thing: str) -> None:
    """Four numbers: the teacher's accuracy, all students' accuracy, their FLOPs and their share of the teacher's;
    the measure and test set said under them, and the gap's noise verdict once it has been tested."""
    teacher, last = summary.get(Summary.TEACHER, {}), rows[-1]
    metrics = st.columns(2) + st.columns(2)  # two by two: big numbers fit a narrow screen too
    has_teacher = teacher.get(TeacherFigures.TEST_ACC) is not None
    what = ": digit and motion" if is_motion(summary) else ""
    if has_teacher:
        metrics[0].metric(f"teacher's accuracy{what}", fmt.percent(teacher[TeacherFigures.TEST_ACC], 2),
                          help=f"{teacher.get('arch')}: {fmt.human_flops(teacher.get('flops'))} FLOPs per {thing}")
    verdict = noise_verdict(run)
    gap = last[PrefixRow.PREFIX_ACC] - teacher[TeacherFigures.TEST_ACC] if has_teacher else None
    metrics[1].metric(f"all {last['k']} students together{what}", fmt.percent(last[PrefixRow.PREFIX_ACC], 2),
                      delta=None if gap is None else (f"{100 * gap:+.2f} points vs the teacher"
                                                      + (f" · {verdict.verdict}" if verdict else "")),
                      help=None if verdict is None else (f"McNemar's exact test on the {verdict.n:,} test samples: "
                                                         f"{stats.describe(verdict.diff, verdict.verdict)}, "
                                                         f"p = {verdict.p_value:.3g}"),
                      delta_color="off")
    metrics[2].metric(f"their FLOPs per {thing}", fmt.human_flops(last[PrefixRow.CUMULATIVE_FLOPS]),
                      help=glossary.HELP["flops"])
    metrics[3].metric("share of the teacher's FLOPs", fmt.percent(last.get(PrefixRow.SHARE_OF_TEACHER), 2))
    st.caption(f"Accuracies here: {measure_of(run, summary)}."
               + ("" if gap is None or verdict else " Whether the gap to the teacher is more "
                  "than noise is not tested yet (McNemar's test, below the table)."))


def noise_tests(run: Run) -> list | None:
    """McNemar's test of each prefix 1..K vs the teacher: as summary.json records it, else if this session has run
    it for these weights, else None."""
    recorded = stats.recorded_teacher_tests(run.summary())
    if recorded:
        return recorded
    found = ss.get("results_noise")
    return found["tests"] if found and found["key"] == (str(run.path), run.weights_stamp()) else None


def noise_verdict(run: Run):
    """The test of all students together vs the teacher (noise_tests' last), or None."""
    tests = noise_tests(run)
    return tests[-1] if tests else None


def run_noise_tests(run: Run) -> None:
    """Both models on the test samples (cached), then McNemar's exact test of each prefix vs the teacher."""
    try:
        labels, prefixes, teacher = common.cached_answers(str(run.path), run.weights_stamp())
    except (RunError, ValueError, OSError, KeyError) as exc:
        st.error(f"Cannot run {common.display_name(run)} on its test set: {exc}")
        return
    if teacher is None:
        st.error(f"{common.display_name(run)} has no teacher to test against.")
        return
    ss["results_noise"] = {"key": (str(run.path), run.weights_stamp()),
                           "tests": [stats.mcnemar(p == labels, teacher == labels) for p in prefixes]}
    st.rerun()  # the headline above shows the verdict


def noise_section(run: Run, summary: dict) -> None:
    """Each prefix vs the teacher, sample by sample (McNemar's exact test), run on request."""
    if not (summary.get(Summary.TEACHER) or {}).get(TeacherFigures.TEST_ACC) or not run.has_teacher():
        return
    st.subheader("Is the gap to the teacher more than noise?")
    tests = noise_tests(run)
    if tests is None:
        st.caption("McNemar's exact test compares two models on the same test samples: only the samples one gets "
                   "right and the other wrong count. It needs both models' answers, so it runs them on the test set "
                   "(seconds for MNIST, minutes for clips); the answer is kept while the server runs.")
        if st.button("Test each prefix against the teacher", key="results_noise_run"):
            run_noise_tests(run)
        return
    st.dataframe(results_charts.noise_frame(tests), hide_index=True, key="results_noise_table")
    st.caption(f"On the {tests[-1].n:,} test samples, in the page's measure. **within noise**: the test does not "
               f"separate the prefix from the teacher at the {stats.ALPHA:g} level, so neither is ahead.")


def video_identity(summary: dict) -> None:
    """Clip runs: digit identity beside digit-and-motion for the teacher and every prefix, and why the teacher's
    digit-and-motion accuracy is low."""
    video, teacher = summary.get(Summary.VIDEO) or {}, summary.get(Summary.TEACHER) or {}
    digits = video.get(VideoFigures.PREFIX_DIGIT_ACC)
    if not digits:
        return
    rows = summary.get(Summary.PREFIXES) or []
    st.subheader("Digit identity and digit-and-motion, side by side")
    st.markdown(
        "The teacher is low on digit-and-motion because it averages its frames' features over time, so it cannot "
        "see their order: a digit moving left and the same digit moving right look alike to it (played backwards, "
        f"its answer changes on {fmt.percent(video.get(VideoFigures.TEACHER_REVERSAL_CHANGE), 1)} of the clips). "
        "On **digit identity** alone, the part the teacher can know, compare it with the students below.")
    cols = st.columns(2)
    last = digits[-1]
    if video.get(VideoFigures.TEACHER_DIGIT_ACC) is not None:
        cols[0].metric("teacher: digit identity (10 digits)", fmt.percent(video[VideoFigures.TEACHER_DIGIT_ACC], 2))
        cols[1].metric(f"all {len(digits)} students: digit identity (10 digits)", fmt.percent(last, 2),
                       delta=f"{100 * (last - video[VideoFigures.TEACHER_DIGIT_ACC]):+.2f} points vs the teacher",
                       delta_color="off")
    widgets.show_table(results_charts.video_frame(teacher, rows, video), key="results_video_table")
    st.caption(f"On the {video.get(VideoFigures.N, 0):,} {video.get(VideoFigures.SPLIT, 'test')} clips. "
               "**digit and motion**: the class (which digit, moving which way); **digit identity**: only whether "
               "the digit is right; **changes when reversed**: the share of clips whose answer changes when played "
               "backwards (a model that reads the motion changes it on every clip).")


def series_of(run: Run, rows: list[dict], summary: dict, compare: list[str]) -> list[dict]:
    """The chart's data: the chosen run and each overlaid one (a run that cannot be read is skipped, said so)."""
    out = []
    for path in [str(run.path), *compare]:
        other = run if path == str(run.path) else Run(Path(path))
        try:
            o_rows, o_summary = (rows, summary) if other is run else (other.prefix_table(), other.summary())
        except RunError as exc:
            st.warning(f"Skipped {common.display_name(other)}: {exc}")
            continue
        if o_rows:
            fitted = None if common.lesson_mode() else o_summary.get(Summary.ANYTIME_VAL_FITTED)
            out.append(results_charts.run_series(common.display_name(other), o_rows, o_summary,
                                                 unit=sample_kind(other), val_fitted=fitted, seeds=seed_spread(other)))
    return out


def seed_spread(run: Run) -> list | None:
    """The run's seed group per k (pkd.groups.PrefixSpread: mean ± SE over the members' seeds), or None when the run
    is no group's member or its group has one member so far."""
    members = seed_group_members(run)
    return group_prefixes(members) if len(members) > 1 else None


def seed_caption(run: Run, spreads: list | None) -> None:
    """One line under the chart for a seed group's member: which seed it is and the group's figure for all students."""
    if not spreads:
        return
    last = spreads[-1]
    st.caption(f"**{common.display_name(run)}** is seed {run.manifest().get(Manifest.SEED)} of a seed group: the "
               f"same config trained with {last.n} seeds on one teacher. The shaded band is the students' accuracy "
               f"over those seeds, mean ± SE; all {last.k} students together: {stats.format_spread(last.test)}% "
               f"(min {100 * last.test.low:.2f}%, max {100 * last.test.high:.2f}%). One seed's curve is one draw; "
               "the band says how far another seed would move it.")


def explain_early_exit(summary: dict) -> None:
    """One or two plain sentences per early-exit curve drawn (the fitted one only where summary.json has it)."""
    if summary.get(Summary.ANYTIME):
        st.markdown(
            "**Dotted line: early exit.** Each image asks the students one at a time and stops as soon as the "
            "students so far are sure enough of their answer (say 99% sure). Most images are easy and stop after "
            "student 1; only the hard ones pay for every student. So on average it costs much less than always "
            "using them all, which is why the dotted line lies above and to the left of the solid one.")
    fitted = results_charts.val_fitted_points(summary.get(Summary.ANYTIME_VAL_FITTED))
    if fitted and not common.lesson_mode():
        auc = summary.get(Summary.ANYTIME_AUC) or {}  # a mapping: checked with the summary (its figures may be null)
        auc_text = "" if not all(isinstance(auc.get(s), (int, float)) for s in (AnytimeAuc.VAL, AnytimeAuc.TEST)) else (
            f" Anytime AUC (the accuracy averaged over budgets from 1% to 100% of the teacher's FLOPs): "
            f"validation {fmt.percent(auc[AnytimeAuc.VAL], 2)}, test {fmt.percent(auc[AnytimeAuc.TEST], 2)}.")
        st.markdown(
            "**Dash-dot line: early exit fitted on validation** (MSDNet's protocol). For each FLOP budget the "
            "stopping threshold is chosen on the validation images, so that their average cost fits the budget, "
            "and then measured on the test images: a fair estimate, since the test set chose nothing." + auc_text)


def table(run: Run, rows: list[dict]) -> None:
    """The per-student table with its explanation and (outside lesson mode) its CSV."""
    st.subheader(f"Per student: {common.display_name(run)}")
    residual = common.run_info(run)[RunInfo.MODE] != "independent"  # independent students have no scale s_k
    st.caption("**alone**: the student on its own (in a residual ensemble, students after the first learn a "
               "correction to the sum before them, so alone they can score low).  **together**: students 1 to this "
               "one, the ensemble's accuracy.  FLOPs are per image.  "
               + ("**scale s_k**: the number student k learned to multiply the sum of the students before it by "
                  "(1 = plain sum).  " if residual else "")
               + "Hover a column's name for more.")
    frame = results_charts.prefix_frame(rows, residual)
    widgets.show_table(frame, key="results_table")
    if not common.lesson_mode():
        st.download_button("Download this table (CSV)", results_charts.table_csv(frame),
                           file_name=f"{run.name}-prefixes.csv", mime="text/csv", key="results_download")


def compare_table(run: Run, compare: list[str]) -> None:
    if compare:
        st.subheader("Runs compared")
        runs = [run, *[Run(Path(p)) for p in compare]]
        frame = runs_charts.runs_frame([common.run_info(r) for r in runs],
                                       names={str(r.path): common.display_name(r) for r in runs})
        widgets.show_table(frame.drop(columns=["where", RunInfo.PROBLEM]), key="results_compare_table")


def main() -> None:
    run = common.run_or_stop()
    st.title("Results")
    thing = sample_kind(run)
    st.markdown(intro(thing))
    rows, summary = load(run)
    compare, log_x, show_anytime = controls(run)
    if not rows:
        state = common.run_info(run)["state"]
        st.info(f"**{common.display_name(run)}** has no finished students yet (state: {state}). "
                "Watch it train on the **Train** page; this page fills in as students finish.")
        return
    headline(run, rows, summary, thing)
    series = series_of(run, rows, summary, compare)
    if series:
        st.plotly_chart(results_charts.accuracy_flops_figure(series, log_x=log_x, show_anytime=show_anytime),
                        key="results_chart", width="stretch")
        seed_caption(run, series[0]["seeds"])
    if show_anytime:
        explain_early_exit(summary)
    video_identity(summary)
    table(run, rows)
    noise_section(run, summary)
    if not common.lesson_mode():
        compare_table(run, compare)
        export_section(run, rows)
        web_page_section(run)


def export_section(run: Run, rows: list[dict]) -> None:
    """Pick students 1..k, build their ONNX file (pkd.export, in a temporary folder) and offer it with its card."""
    saved = run.students_saved()
    if not rows or saved == 0:
        return
    st.subheader("Export this prefix")
    st.caption("One ONNX file that computes students 1..k from raw pixels in [0, 1] (the normalisation is built in) "
               "and returns the ensemble's log-probabilities and probabilities. It is checked in onnxruntime "
               "against PyTorch when it is built; its model card gives the FLOPs, the test accuracy and the file's "
               "sha256. The same as `python -m pkd export RUN --k K`.")
    pick = st.columns([1, 2])
    export_k = pick[0].selectbox("students 1 to", list(range(1, saved + 1)), index=saved - 1,
                                 key="results_export_k")
    training = run.is_active()
    if pick[1].button("Build the ONNX file", key="results_export_build", disabled=training,
                      help="Up to a minute; built in a temporary folder, never inside the run directory."
                      + (" Wait until the run has finished training." if training else "")):
        build_export(run, export_k)
    built = ss.get("results_export")
    if built and built["run"] == str(run.path) and built["k"] == export_k:
        offer_export(run, built)


def build_export(run: Run, k: int) -> None:
    common.app_torch()
    from pkd.export import export_bytes

    with st.spinner(f"Exporting students 1 to {k} and checking the file in onnxruntime ..."):
        try:
            data, card, card_md = export_bytes(run, k, "onnx")
            ss["results_export"] = {"run": str(run.path), "k": k, "data": data, "card": card, "md": card_md}
        except (ValueError, RuntimeError, OSError) as exc:
            st.error(f"Cannot export students 1 to {k} of {run.name}: {exc}")


def offer_export(run: Run, built: dict) -> None:
    name = f"{run.name}-prefix_k{built['k']}"
    st.download_button(f"Download {name}.onnx ({len(built['data']):,} bytes)", built["data"],
                       file_name=f"{name}.onnx", mime="application/octet-stream", key="results_export_download")
    st.download_button("Download its model card (JSON)", json.dumps(built["card"], indent=1),
                       file_name=f"{name}.card.json", mime="application/json", key="results_export_card")
    with st.expander("Model card", expanded=False):
        st.markdown(built["md"])


def web_page_section(run: Run) -> None:
    """Build the run's static web page (pkd.web.build, in a temporary folder) and offer it as a zip."""
    from pkd.web.supported import unsupported_reason  # pkd.web.build (export, models): when the button is pressed

    if run.students_saved() == 0 or run.is_active() or unsupported_reason(run):
        return
    st.subheader("Download this run as a web page")
    clips = common.dataset_kind(run.setting("data", "dataset")) == "clip"
    what = ("play a test clip, or a clip made from your drawing, forwards and backwards," if clips
            else "draw a digit")
    st.caption(f"A folder with one index.html: {what} and every prefix answers in the browser (onnxruntime-web, "
               "no Python, no server, works offline). Unzip it and open index.html, or put the folder on any static "
               "host. The same as `python -m pkd export RUN --web`.")
    if st.button("Build the web page", key="results_web_build", help="Up to a minute; built in a temporary folder."):
        from pkd.web.build import web_zip

        with st.spinner("Exporting every student and packing the page ..."):
            try:
                ss["results_web"] = {"run": str(run.path), "data": web_zip(run)}
            except (ValueError, RuntimeError, OSError) as exc:
                st.error(f"Cannot make a web page of {run.name}: {exc}")
    built = ss.get("results_web")
    if built and built["run"] == str(run.path):
        st.download_button(f"Download this run as a web page ({len(built['data']) / 1e6:.1f} MB zip)", built["data"],
                           file_name=f"{run.name}-web.zip", mime="application/zip", key="results_web_download")


main()
