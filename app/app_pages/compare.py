"""Compare: many runs side by side. A table of the settings that differ between them and their figures (filter,
sort, CSV); prefix curves grouped by one setting with bands over a group's runs (seeds); the (run, k) Pareto plane;
parallel coordinates (drawn when asked for); and a per-sample diff of two prefixes (the test samples one gets right
and the other wrong).
Every chart downloads as a paper figure (app/charts/paper.py). The figures come from pkd.side_by_side, pkd.groups,
pkd.compare and pkd.stats; this page only arranges them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from app import common, widgets
from app.charts import compare as charts
from app.charts import format as fmt
from app.charts import paper
from pkd import side_by_side, stats
from pkd.runs import Run, RunError
from pkd.runs.schema import RunInfo

ss = st.session_state
RUNS = "compare_runs"
PARALLEL_ON = "compare_parallel_on"  # the toggle that draws the parallel-coordinates chart (in the URL: parallel=1)
TEACHER = 0  # the "k" of the teacher in the per-sample diff's pickers
SHOWN = 24  # samples drawn per side of the per-sample diff


def pickable() -> dict[str, str]:
    """Every sound run with a finished student: path -> its name."""
    return {str(run.path): common.display_name(run, info) for run, info in common.run_infos()
            if info[RunInfo.K_DONE] > 0 and not info[RunInfo.PROBLEM]}


def default_runs(names: dict[str, str]) -> list[str]:
    """The sidebar's run and the other runs of its dataset (at most 8)."""
    chosen = common.selected_run()
    dataset = common.run_info(chosen)[RunInfo.DATASET] if chosen else None
    same = [p for p, info in common.run_infos() if info[RunInfo.DATASET] == dataset]
    return [str(p.path) for p in same if str(p.path) in names][:8]


def chart(fig, name: str, key: str) -> None:
    st.plotly_chart(fig, key=key, width="stretch", config=paper.modebar_config(name))
    widgets.figure_downloads(fig, name, key + "_file")


def run_table(items: list) -> list[dict]:
    st.subheader("Runs side by side")
    keys, rows = side_by_side.run_table(items)
    st.caption(f"The {len(keys)} settings that differ between these runs, then each run's figures for all its "
               "students together (accuracies on the test set unless named). Click a column's name to sort.")
    frame = charts.table_frame(rows)
    text = st.text_input("Filter rows", key="compare_filter", placeholder="e.g. residual",
                         help="Keeps the rows where some cell contains every word typed (any case).")
    shown = charts.filter_frame(frame, text)
    widgets.show_table(shown, key="compare_table")
    st.download_button(f"Download these {len(shown)} rows (CSV)", shown.to_csv(index=False).encode("utf-8"),
                       file_name="pkd-runs.csv", mime="text/csv", key="compare_csv")
    return frame.to_dict("records")  # shares as percentages, as the table shows them


def grouped_curves(items: list, rows: list[dict]) -> None:
    st.subheader("Prefix curves, grouped by one setting")
    keys = [k for k in rows[0] if k not in ("run", *side_by_side.FIGURES)] or ["distill.mode"]
    preferred = next((k for k in ("distill.mode", "seed") if k in keys), keys[0])
    cols = st.columns([2, 1, 1])
    setting = cols[0].selectbox("Group the runs by", keys, index=keys.index(preferred), key="compare_group")
    x = cols[1].radio("x axis", ["flops", "k"], key="compare_group_x", horizontal=True,
                      format_func={"flops": "FLOPs", "k": "students (k)"}.get)
    log_x = cols[2].radio("FLOPs axis", ["log", "linear"], key="compare_group_scale", horizontal=True) == "log"
    groups = side_by_side.group_runs(items, setting)
    chart(charts.groups_figure(groups, setting, x=x, log_x=log_x), f"prefix-curves-by-{setting}", "compare_groups")
    several = [g for g in groups if len(g.names) > 1]
    st.caption("Each line is a group's mean test accuracy of students 1..k together; "
               + ("the band is mean ± SE over the group's runs (seeds, where they differ only in seed). "
                  if several else "no group has more than one run here, so there is no band: one seed per line, "
                  "and a gap between two lines may be noise. ") + "Groups: "
               + "; ".join(f"{charts.group_label(setting, g.value, len(g.names))}: {', '.join(g.names)}"
                           for g in groups))
    st.dataframe(charts.groups_frame(groups, setting), hide_index=True, key="compare_groups_table")


def pareto(items: list) -> None:
    st.subheader("Which (run, k) are worth their FLOPs")
    points = side_by_side.prefix_points(items)
    log_x = st.radio("FLOPs axis ", ["log", "linear"], key="compare_pareto_scale", horizontal=True) == "log"
    chart(charts.pareto_figure(points, log_x=log_x), "pareto-front", "compare_pareto")
    on = sum(p["front"] for p in points)
    st.caption(f"{on} of {len(points)} points are on the Pareto front (black): no other point costs no more FLOPs "
               "and is at least as accurate on test. The grey ones are dominated. Single test-set figures: two "
               "points a few hundredths of a point apart are not told apart by it.")


def parallel(rows: list[dict]) -> None:
    """The parallel-coordinates chart, drawn only when asked for: Plotly draws it with WebGL, which a computer
    without a graphics card does in software (about 1 s of a school laptop's CPU at each open of the page)."""
    st.subheader("Parallel coordinates")
    if not st.toggle("Show parallel coordinates", key=PARALLEL_ON,
                     help="One line per run across the settings and figures you pick. Off by default: drawing it "
                          "takes a second on a computer without a graphics card."):
        st.caption("Every run as one line across its settings and results: which settings go with a high accuracy "
                   "or a low cost. Turn it on to draw it.")
        return
    choices = [k for k in rows[0] if k != "run"]
    numeric = [k for k in choices if all(fmt.is_number(r.get(k)) for r in rows)]
    default = [k for k in choices if k not in side_by_side.FIGURES][:5] + [
        k for k in ("FLOPs per sample", "test accuracy") if k in choices]
    cols = st.columns([3, 2, 2])
    axes = cols[0].multiselect("Axes, left to right", choices, default=default, key="compare_axes")
    logs = cols[1].multiselect("Log scale", [k for k in numeric if k in axes],
                               default=[k for k in ("FLOPs per sample",) if k in axes], key="compare_log")
    flips = cols[2].multiselect("Flip (high at the bottom)", axes, key="compare_flip")
    if len(axes) < 2:
        st.info("Pick at least two axes.")
        return
    color = "test accuracy" if "test accuracy" in numeric else None
    chart(charts.parallel_figure(rows, axes, color_by=color, log_axes=tuple(logs), flipped=tuple(flips)),
          "parallel-coordinates", "compare_parallel")
    st.caption("One line per run, coloured by its test accuracy. Drag along an axis to keep only the lines that "
               "cross it there; text settings are placed in sorted order.")


def side_picker(items: list, side: str, default: int) -> tuple:
    """One side of the diff: a run and its prefix k (0: the run's teacher)."""
    names = [item.name for item in items]
    cols = st.columns([3, 2])
    name = cols[0].selectbox(f"{side}: run", names, index=min(default, len(names) - 1), key=f"compare_{side}_run")
    item = items[names.index(name)]
    ks = [*range(len(item.rows), 0, -1), TEACHER]
    k = cols[1].selectbox(f"{side}: students", ks, key=f"compare_{side}_k",
                          format_func=lambda k: "the teacher" if k == TEACHER else fmt.students_text(k))
    return item, k


def answers(item, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels, predicted classes) of run `item`'s prefix k (0: its teacher) on its test samples."""
    labels, prefixes, teacher = common.cached_answers(str(item.run.path), item.run.weights_stamp())
    if k == TEACHER and teacher is None:
        raise RunError(f"{item.name} has no teacher to compare")
    return labels, teacher if k == TEACHER else prefixes[k - 1]


def sample_diff(items: list) -> None:
    st.subheader("Sample by sample: where two prefixes disagree")
    st.caption("Pick two prefixes (or a run's teacher) evaluated on the same test set: the samples one classifies "
               "right and the other wrong, and McNemar's exact test on them (pkd.stats).")
    a, k_a = side_picker(items, "A", 0)
    b, k_b = side_picker(items, "B", 1)
    why = side_by_side.same_samples(a, b)
    if why:
        st.warning(why)
        return
    if not st.toggle("Compare them sample by sample", key="compare_diff_on",
                     help="Runs both on the test set once (seconds to a minute); kept for later visits."):
        return
    try:
        labels, pred_a = answers(a, k_a)
        _, pred_b = answers(b, k_b)
    except (RunError, ValueError, OSError) as exc:
        st.error(f"Cannot compare them: {exc}")
        return
    what = [f"{x.name} {'teacher' if k == TEACHER else fmt.students_text(k)}" for x, k in ((a, k_a), (b, k_b))]
    test = stats.mcnemar(pred_a == labels, pred_b == labels)
    st.markdown(f"On the {test.n:,} test samples, **A** ({what[0]}) is right where B is wrong on **{test.a_only}**, "
                f"**B** ({what[1]}) right where A is wrong on **{test.b_only}**. A vs B in test accuracy: "
                f"**{stats.describe(test.diff, test.verdict)}** (McNemar's exact test, p = {test.p_value:.3g}).")
    images = sample_images(a)
    for side, mask in (("A right, B wrong", (pred_a == labels) & (pred_b != labels)),
                       ("B right, A wrong", (pred_b == labels) & (pred_a != labels))):
        index = np.flatnonzero(mask)[:SHOWN]
        st.markdown(f"**{side}**: {int(mask.sum())} samples" + (f", the first {len(index)} shown" if
                                                                  mask.sum() > len(index) else ""))
        if len(index):
            fig = charts.diff_figure(images[index], labels[index].tolist(),
                                     list(zip(pred_a[index].tolist(), pred_b[index].tolist())), tuple(what))
            chart(fig, f"diff-{side[0]}-right", f"compare_diff_{side[0]}")


def sample_images(item) -> np.ndarray:
    """(N, H, W) grey images of the run's test samples (a clip's middle frame), in the split's order."""
    split = common.cached_test_split(item.settings["data.dataset"])
    x = split.inputs.float()
    while x.dim() > 3:
        x = x[:, x.shape[1] // 2] if x.shape[1] > 1 else x[:, 0]  # (N, H, W): middle frame, one channel
    return x.numpy()


def main() -> None:
    st.title("Compare")
    st.markdown("Lay many runs side by side: what differs between them, which prefixes are worth their cost, and "
                "whether a gap between two of them is more than noise.")
    names = pickable()
    if len(names) < 1:
        st.info("There are no runs with a finished student yet. Train some on the **Train** page.")
        common.end_page()
    if RUNS in ss:
        ss[RUNS] = [p for p in ss[RUNS] if p in names]
    else:
        ss[RUNS] = default_runs(names)
    picked = st.multiselect("Runs", list(names), key=RUNS, format_func=names.get,
                            help="Default: the sidebar's run and the other runs of its dataset.")
    items, skipped = side_by_side.read_runs([Run(Path(p)) for p in picked], names)
    for line in skipped:
        st.warning(f"Skipped {line}")
    if not items:
        st.info("Pick one or more runs.")
        common.end_page()
    rows = run_table(items)
    grouped_curves(items, rows)
    pareto(items)
    if len(items) > 1:
        parallel(rows)
    sample_diff(items)


main()
