"""AppTest of the Compare page on real runs: the table of differing settings (and its filter), prefix curves grouped by
a setting with a band where a group has several runs, the Pareto plane's grey dominated points, and the per-sample
diff of two prefixes of a trained tiny run checked against pkd.compare and pkd.stats."""

from __future__ import annotations

import json
import shutil

import pytest

from pkd import side_by_side, stats
from pkd.compare import run_answers, teacher_right
from pkd.runs import Run, list_runs
from tests.app.trained import ROOT

streamlit_testing = pytest.importorskip("streamlit.testing.v1")
MAIN = str(ROOT / "app" / "main.py")


def open_compare(runs: list[str] | None = None, timeout: float = 120):
    at = streamlit_testing.AppTest.from_file(MAIN, default_timeout=timeout).run()
    assert not at.exception, at.exception
    if runs is not None:
        at.session_state["compare_runs"] = runs
    at.switch_page("app_pages/compare.py").run()
    assert not at.exception, at.exception
    return at


def charts(at) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def mnist_runs(shipped_root) -> list[Run]:
    return [run for run in list_runs([shipped_root]) if run.info()["dataset"] == "mnist"
            and run.info()["k_done"] > 0]


def test_table_lists_what_differs_and_the_filter_keeps_matching_rows(app_env, shipped_root):
    runs = mnist_runs(shipped_root)
    if len(runs) < 2:
        pytest.skip("needs two shipped MNIST runs")
    at = open_compare([str(r.path) for r in runs])
    assert at.title[0].value == "Compare"
    table = at.dataframe[0].value
    assert len(table) == len(runs)
    items, _ = side_by_side.read_runs(runs)
    keys, _ = side_by_side.run_table(items)
    assert "distill.mode" in keys and set(keys) <= set(table.columns)
    assert "name" not in table.columns  # every run has its own name: not a difference
    modes = {run.config()["distill"]["mode"] for run in runs}
    at.text_input(key="compare_filter").input("independent").run()
    kept = at.dataframe[0].value
    assert 0 < len(kept) < len(runs) or modes == {"independent"}
    assert set(kept["distill.mode"]) == {"independent"}
    assert at.get("download_button")[0].proto.label == f"Download these {len(kept)} rows (CSV)"


def test_curves_grouped_by_mode_have_a_band_where_a_group_has_several_runs(app_env, shipped_root):
    runs = mnist_runs(shipped_root)
    at = open_compare([str(r.path) for r in runs])
    assert at.selectbox(key="compare_group").value == "distill.mode"
    items, _ = side_by_side.read_runs(runs)
    groups = side_by_side.group_runs(items, "distill.mode")
    traces = charts(at)[0]["data"]
    lines = [t for t in traces if t.get("mode") == "lines+markers"]
    bands = [t for t in traces if t.get("fill") == "toself"]
    assert len(lines) == len(groups)
    assert len(bands) == sum(len(g.names) > 1 for g in groups)
    for group, line in zip(groups, lines):
        assert line["y"] == pytest.approx([100 * p.test.mean for p in group.prefixes])
    table = next(t.value for t in at.dataframe if f"distill.mode = {groups[0].value}" in t.value.columns)
    first = groups[0].prefixes[0]
    assert table.iloc[0][f"distill.mode = {groups[0].value}"] == f"{stats.format_spread(first.test)}% (n = {first.n})"


def test_pareto_greys_exactly_the_dominated_points(app_env, shipped_root):
    runs = mnist_runs(shipped_root)
    at = open_compare([str(r.path) for r in runs])
    items, _ = side_by_side.read_runs(runs)
    points = side_by_side.prefix_points(items)
    traces = {t["name"]: t for t in charts(at)[1]["data"]}
    assert len(traces["Pareto front"]["x"]) == sum(p["front"] for p in points)
    assert len(traces.get("dominated", {"x": []})["x"]) == sum(not p["front"] for p in points)
    best = max(points, key=lambda p: p["acc"])
    assert 100 * best["acc"] in traces["Pareto front"]["y"]  # the most accurate point is never dominated


def test_per_sample_diff_of_two_prefixes_matches_their_predictions(app_env, tiny_run):
    copy = Run(shutil.copytree(tiny_run.path, app_env / "tiny"))
    at = open_compare([str(copy.path)])
    at.selectbox(key="compare_A_k").set_value(1).run()
    at.selectbox(key="compare_B_k").set_value(0).run()  # the run's teacher
    at.toggle(key="compare_diff_on").set_value(True).run()
    assert not at.exception, at.exception
    answers = run_answers(copy)
    test = stats.mcnemar(answers.right[0].tolist(), teacher_right(copy, answers.split).tolist())
    text = " ".join(m.value for m in at.markdown)
    assert f"is right where B is wrong on **{test.a_only}**" in text
    assert f"right where A is wrong on **{test.b_only}**" in text
    assert stats.describe(test.diff, test.verdict) in text and "McNemar" in text
    shown = [c for c in charts(at) if c["data"] and all(t["type"] == "heatmap" for t in c["data"])]
    assert len(shown) == (test.a_only > 0) + (test.b_only > 0)
    for chart, n in zip(shown, [n for n in (test.a_only, test.b_only) if n]):
        assert len(chart["data"]) == min(n, 24)  # one image per sample, at most 24 drawn


def test_parallel_coordinates_are_drawn_only_when_asked_for_and_the_link_keeps_them(app_env, shipped_root):
    """The parallel-coordinates chart (WebGL: about 1 s of CPU per open in a browser without a graphics card) waits
    for its toggle; on, it draws one line per run over the default axes, and the page's link says so (parallel=1)."""
    runs = mnist_runs(shipped_root)
    if len(runs) < 2:
        pytest.skip("needs two shipped MNIST runs")
    at = open_compare([str(r.path) for r in runs])
    assert at.toggle(key="compare_parallel_on").value is False
    assert not [c for c in charts(at) if any(t["type"] == "parcoords" for t in c["data"])]
    assert "parallel" not in at.query_params and not at.get("multiselect")[1:]  # only the runs picker
    at.toggle(key="compare_parallel_on").set_value(True).run()
    assert not at.exception, at.exception
    drawn = [t for c in charts(at) for t in c["data"] if t["type"] == "parcoords"]
    assert len(drawn) == 1 and len(drawn[0]["dimensions"]) == len(at.multiselect(key="compare_axes").value) >= 2
    assert all(len(axis["values"]) == len(runs) for axis in drawn[0]["dimensions"])
    assert at.query_params["parallel"] == "1"
    again = streamlit_testing.AppTest.from_file(MAIN, default_timeout=120)  # the page's link, opened in a new tab
    again.query_params.update(dict(at.query_params))
    again.switch_page("app_pages/compare.py").run()
    assert not again.exception, again.exception
    assert again.toggle(key="compare_parallel_on").value is True
    assert [t for c in charts(again) for t in c["data"] if t["type"] == "parcoords"]
