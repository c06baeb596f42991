"""Results: accuracy vs cumulative FLOPs of every ensemble prefix, the per-student table, runs overlaid, and a
download of one prefix exported to ONNX (built by pkd.export in a temporary folder)."""

from __future__ import annotations

import json

import streamlit as st

from pathlib import Path

from app import charts, common
from pkd.runs import Run, RunError

run = common.run_or_stop()
info = run.info()
st.title("Results")
st.markdown(
    "Each point is an **ensemble of the first k students**: its test accuracy (up) against the computing "
    "it costs per image, in FLOPs of students 1..k together (right). The dashed line is the big **teacher** "
    "network the students learned from. Points close to that line but far to its left mean the small "
    "students reach nearly the teacher's accuracy for a fraction of its work, and you can stop after any k."
)

try:
    rows = run.prefix_table()
    summary = run.summary()
except RunError as exc:
    st.error(f"Cannot read the results of {run.name}: {exc}")
    st.stop()
teacher = summary.get("teacher", {})

others = [r for r, i in common.run_infos() if str(r.path) != str(run.path) and i["k_done"] > 0 and not i["problem"]]
other_labels = {str(r.path): common.label(r) for r in others}
if "results_compare" in st.session_state:  # drop runs that were deleted or became the selected run
    st.session_state.results_compare = [p for p in st.session_state.results_compare if p in other_labels]
controls = st.columns([3, 1, 1])
compare = controls[0].multiselect("Overlay other runs (e.g. residual vs independent, another α)",
                                  list(other_labels), key="results_compare",
                                  format_func=lambda p: other_labels.get(p, p))
xscale = controls[1].radio("FLOPs axis", ["log", "linear"], key="results_xscale", horizontal=True)
show_anytime = controls[2].toggle("early-exit curve", value=True, key="results_anytime",
                                  help="Anytime inference: each image stops at the first k whose ensemble is "
                                       "confident enough; the curve shows accuracy vs FLOPs spent on average.")

if not rows:
    state = info["state"]
    st.info(f"**{run.name}** has no finished students yet (state: {state}). "
            "Watch it train on the **Train** page; this page fills in as students finish.")
else:
    last = rows[-1]
    metrics = st.columns(4)
    if teacher.get("test_acc") is not None:
        metrics[0].metric("teacher accuracy", charts.percent(teacher["test_acc"], 2),
                          help=f"{teacher.get('arch')}: {teacher.get('flops', 0):,} FLOPs per image")
    metrics[1].metric(f"all {last['k']} students", charts.percent(last["prefix_acc"], 2),
                      delta=(f"{100 * (last['prefix_acc'] - teacher['test_acc']):+.2f} points vs teacher"
                             if teacher.get("test_acc") is not None else None), delta_color="off")
    metrics[2].metric("their FLOPs", charts.human_flops(last["cumulative_flops"]),
                      help="FLOPs per image (2 per multiply-add) of students 1..K together")
    metrics[3].metric("share of the teacher's FLOPs", charts.percent(last.get("share_of_teacher"), 2))

series = []
for path in [str(run.path), *compare]:
    r = run if path == str(run.path) else Run(Path(path))
    try:
        r_rows, r_summary = r.prefix_table(), r.summary()
    except RunError as exc:
        st.warning(f"Skipped {r.name}: {exc}")
        continue
    if r_rows:
        series.append({"label": r.name, "rows": r_rows, "teacher": r_summary.get("teacher", {}),
                       "anytime": r_summary.get("anytime", []), "mode": r_summary.get("mode")})
if series:
    fig = charts.accuracy_flops_figure(series, log_x=xscale == "log", show_anytime=show_anytime)
    st.plotly_chart(fig, key="results_chart", width="stretch")

if rows:
    st.subheader(f"Per student: {run.name}")
    st.caption("**solo accuracy**: student k on its own (in a residual ensemble, students after the first learn a "
               "correction to the sum before them, so alone they can score low).  **prefix accuracy**: students "
               "1..k together.  FLOPs are per image; % of teacher FLOPs counts students 1..k.  **scale of students "
               "before**: the number s_k that student k learned to multiply the sum of students 1..k-1 by "
               "(1 = plain sum).")
    frame = charts.prefix_frame(rows)
    st.dataframe(frame, hide_index=True, width="stretch", key="results_table")
    st.download_button("Download this table (CSV)", charts.table_csv(frame), file_name=f"{run.name}-prefixes.csv",
                       mime="text/csv", key="results_download")
    if compare:
        st.subheader("Runs compared")
        infos = [r.info() for r in [run, *[Run(Path(p)) for p in compare]]]
        st.dataframe(charts.runs_frame(infos).drop(columns=["where", "problem"]), hide_index=True, width="stretch")

if rows and run.students_saved() > 0:
    st.subheader("Export this prefix")
    st.caption("One ONNX file that computes students 1..k from raw pixels in [0, 1] (the normalisation is built in) "
               "and returns the ensemble's log-probabilities and probabilities. It is checked in onnxruntime "
               "against PyTorch when it is built; its model card gives the FLOPs, the test accuracy and the file's "
               "sha256. The same as `python -m pkd export RUN --k K`.")
    saved = run.students_saved()
    pick = st.columns([1, 2])
    export_k = pick[0].selectbox("students 1..k", list(range(1, saved + 1)), index=saved - 1, key="results_export_k")
    training = run.is_active()
    if pick[1].button("Build the ONNX file", key="results_export_build", disabled=training,
                      help="Up to a minute; built in a temporary folder, never inside the run directory."
                      + (" Wait until the run has finished training." if training else "")):
        from pkd.export import export_bytes

        with st.spinner(f"Exporting students 1..{export_k} and checking the file in onnxruntime ..."):
            try:
                data, card, card_md = export_bytes(run, export_k, "onnx")
                st.session_state["results_export"] = {"run": str(run.path), "k": export_k, "data": data,
                                                      "card": card, "md": card_md}
            except (ValueError, RuntimeError, OSError) as exc:
                st.error(f"Cannot export students 1..{export_k} of {run.name}: {exc}")
    built = st.session_state.get("results_export")
    if built and built["run"] == str(run.path) and built["k"] == export_k:
        name = f"{run.name}-prefix_k{export_k}"
        st.download_button(f"Download {name}.onnx ({len(built['data']):,} bytes)", built["data"],
                           file_name=f"{name}.onnx", mime="application/octet-stream", key="results_export_download")
        st.download_button("Download its model card (JSON)", json.dumps(built["card"], indent=1),
                           file_name=f"{name}.card.json", mime="application/json", key="results_export_card")
        with st.expander("Model card", expanded=False):
            st.markdown(built["md"])
