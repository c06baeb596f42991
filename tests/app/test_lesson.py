"""AppTest of the lesson tools (issue 15): a link's query string opens that exact state and bad values fall back to
the defaults; the Playground's step-through; lesson mode hides the advanced controls; the How-it-works page;
% signs, short labels and the words a first-year student stumbled on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app import glossary
from pkd.artifacts import load_ensemble
from pkd.runs import Run
from tests.app.trained import ROOT, copy_run

streamlit_testing = pytest.importorskip("streamlit.testing.v1")
MAIN = str(ROOT / "app" / "main.py")
TIMEOUT = 60


def open_link(params: dict[str, str], page: str | None = None):
    """The app as a shared link opens it: the query string set before the first run (then the page)."""
    at = streamlit_testing.AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    at.query_params.update(params)
    if page:
        at.switch_page(f"app_pages/{page}.py")  # the link's path: this page is the session's first
    at.run()
    assert not at.exception, at.exception
    return at


def texts(at, kind: str) -> str:
    return "\n".join(str(e.value) for e in getattr(at, kind))


def chart(at) -> dict:
    return json.loads(at.get("plotly_chart")[0].proto.spec)


def keys(at) -> set[str]:
    """The keys of every widget on the page."""
    found = set()
    for kind in ("button", "toggle", "radio", "selectbox", "multiselect", "slider", "select_slider", "checkbox",
                 "number_input", "text_input"):
        found |= {w.key for w in getattr(at, kind) if w.key}
    return found


@pytest.fixture
def shipped_k(shipped_root) -> int:
    return Run(shipped_root / "mnist").students_saved()


# ------------------------------------------------------------------------------------------------ URL state

def test_a_results_link_opens_that_run_axis_and_curves_and_the_url_follows(app_env, shipped_root):
    other = copy_run(shipped_root / "mnist", app_env, "mine")
    at = open_link({"run": "mine", "axis": "linear", "early": "0"})
    assert at.session_state["run"] == str(other)
    spec = chart(at)
    assert spec["layout"]["xaxis"]["type"] == "linear"
    assert not [t for t in spec["data"] if "early exit" in t.get("name", "")]
    assert at.query_params == {"run": "mine", "axis": "linear", "early": "0"}
    at.radio(key="results_xscale").set_value("log").run()
    assert at.query_params == {"run": "mine", "early": "0"}  # the default is left out of the link


def test_a_playground_link_opens_that_test_digit_and_number_of_students(app_env, shipped_k):
    k = min(2, shipped_k)
    at = open_link({"k": str(k), "digit": "17"}, "playground")
    assert "test digit #17" in texts(at, "caption")
    assert at.slider(key="pg_k").value == k if shipped_k > 1 else True
    assert ("Student 1 says" if k == 1 else f"Students 1–{k} together say") in texts(at, "markdown")
    assert at.query_params["k"] == str(k) and at.query_params["digit"] == "17" and at.query_params["run"] == "mnist"


def test_a_budget_link_opens_the_anytime_mode_at_that_budget(app_env, shipped_root, shipped_k):
    first = load_ensemble(Run(shipped_root / "mnist")).cumulative_flops()[0]
    at = open_link({"digit": "3", "stop": "budget", "budget": str(first)}, "playground")
    assert at.radio(key="pg_anytime").value == "budget" and at.select_slider(key="pg_budget").value == first
    assert f"stopped after 1 of {shipped_k} students" in " ".join(p.proto.text for p in at.get("progress"))
    assert at.query_params["budget"] == str(first)


@pytest.mark.parametrize("page", [None, "playground", "train", "runs", "sweeps", "how_it_works"])
def test_bad_link_values_fall_back_to_the_defaults_without_a_traceback(app_env, shipped_root, page):
    bad = {"run": "../../etc/passwd", "lesson": "maybe", "k": "abc", "digit": "99999", "axis": "sideways",
           "early": "2", "conf": "5", "stop": "??", "budget": "-1", "config": "x" * 1000, "pick": "nope",
           "sweep": "nope", "split": "train", "compare": "a,b"}
    at = open_link(bad, page)
    assert at.session_state["run"] == str(shipped_root / "mnist") and not at.session_state["lesson"]
    if page is None:
        assert chart(at)["layout"]["xaxis"]["type"] == "log"
    if page == "playground":
        assert "blank" in texts(at, "info")  # digit 99999 is not in the test set: the canvas, not a traceback


# ------------------------------------------------------------------------------------------------ step-through

def test_step_through_adds_one_student_at_a_time_and_resets(app_env, shipped_k):
    if shipped_k < 2:
        pytest.skip("one student: nothing to step through")
    at = open_link({"digit": "17"}, "playground")  # the step-through starts at student 1
    assert at.session_state["pg_k"] == 1 and "Student 1 says" in texts(at, "markdown")
    steps = lambda: next(t.value for t in at.table if "what changed" in t.value.columns)  # noqa: E731
    assert list(steps()["what changed"]) == ["first answer"] and at.button(key="pg_step_reset").disabled
    for k in range(2, shipped_k + 1):
        at.button(key="pg_step_next").click().run()
        assert not at.exception, at.exception
        assert at.session_state["pg_k"] == k and len(steps()) == k and at.query_params["k"] == str(k)
        assert f"Student {k} of {shipped_k} added" in texts(at, "markdown")
        assert f"Students 1–{k} together say" in texts(at, "markdown")
    assert at.button(key="pg_step_next").disabled and "All students are in" in texts(at, "markdown")
    assert "corrects the running sum" in texts(at, "caption")  # a residual student is a correction, said plainly
    at.button(key="pg_step_reset").click().run()
    assert at.session_state["pg_k"] == 1 and at.button(key="pg_step_reset").disabled


# ------------------------------------------------------------------------------------------------ lesson mode

ADVANCED = {
    None: {"results_compare", "results_export_build", "results_download"},
    "train": {"train_alpha", "train_temperature", "train_device", "train_build_kernel", "train_processes",
              "train_custom", "train_learn_prev_scale"},
    "runs": {"runs_delete"},
    "sweeps": {"sweeps_start", "sweeps_continue", "sweeps_stop"},
}


@pytest.mark.parametrize("page", list(ADVANCED))
def test_lesson_mode_hides_the_advanced_controls_and_stays_in_the_link(app_env, page):
    at = open_link({"lesson": "1"}, page)
    assert at.toggle(key="lesson").value is True and at.query_params["lesson"] == "1"
    assert not ADVANCED[page] & keys(at), ADVANCED[page] & keys(at)
    if page == "train":
        assert "GPU:" not in texts(at, "caption")  # no devices or scan backends
    at.toggle(key="lesson").set_value(False).run()
    assert "lesson" not in at.query_params
    shown = keys(at)
    assert ADVANCED[page] & shown or page == "sweeps", shown  # back (the sweep buttons need the shipped sweep)


# ------------------------------------------------------------------------------------------------ pages and words

def test_how_it_works_draws_this_runs_ensemble_and_explains_every_word(app_env, shipped_k):
    at = open_link({}, "how_it_works")
    assert at.title[0].value == "How it works"
    svg = next(m.value for m in at.markdown if "<svg" in m.value)
    assert svg.count('bold">student ') == shipped_k and svg.count("× s_") == shipped_k - 1
    assert at.get("latex") and "alpha" in at.get("latex")[0].proto.body
    shown = texts(at, "markdown")
    assert "What a FLOP is here" in shown and "E_k = s_k·E_(k−1) + z_k" in shown
    assert all(f"**{term}**" in shown for term in glossary.TERMS)


def test_tables_show_percent_signs_and_column_tooltips(app_env):
    for page, column in ((None, "together"), ("runs", "final accuracy")):
        at = open_link({}, page)
        config = json.loads(at.dataframe[0].proto.columns)
        assert config[column]["type_config"]["format"] == "%.2f%%", config[column]
        assert config[column]["help"]


def test_train_form_labels_are_short_and_explained(app_env):
    at = open_link({}, "train")
    labels = {w.key: w.label for kind in ("selectbox", "number_input", "slider", "checkbox", "radio", "text_input")
              for w in getattr(at, kind) if w.key and w.key.startswith("train_") and w.key != "train_pick"}
    assert labels and all(len(label) <= 22 for label in labels.values()), labels  # nothing cut off in a column
    helps = {w.key: w.help for kind in ("slider", "selectbox", "checkbox") for w in getattr(at, kind) if w.key}
    assert "teacher" in helps["train_alpha"] and "CUDA" in helps["train_device"] and "C++" in \
        helps["train_build_kernel"]


def test_train_page_says_the_runs_folder_is_empty_not_that_there_are_no_runs(app_env):
    at = open_link({}, "train")
    info = texts(at, "info")
    assert "None of your own runs yet" in info and "shipped runs" in info
    assert "No runs in the runs folder yet" not in info


def test_sweep_trials_are_named_with_their_sweep(app_env, shipped_root):
    sweep = shipped_root / "sweep-quick"
    if not sweep.is_dir():
        pytest.skip("no shipped sweep")
    at = open_link({"run": "sweep-quick/trial-001"})
    options = [str(o) for o in at.selectbox(key="run").options]
    assert "sweep-quick / trial-001" in options
    assert at.session_state["run"] == str(sweep / "trial-001")
    assert "sweep-quick / trial-001" in texts(at, "subheader")


def fitted(summary: dict) -> list[dict]:
    rows = summary["prefixes"]
    return [{"budget": r["cumulative_flops"], "confidence": 0.9, "val_acc": r["prefix_acc"],
             "val_mean_flops": r["cumulative_flops"], "acc": r["prefix_acc"], "mean_flops": r["cumulative_flops"]}
            for r in rows]


def test_results_draws_the_validation_fitted_curve_when_the_summary_has_it(app_env, shipped_root):
    new = Run(copy_run(shipped_root / "mnist", app_env, "new-summary"))
    summary = new.summary()
    new.write_summary(dict(summary, anytime_val_fitted=fitted(summary),
                           anytime_auc={"val": 0.97, "test": 0.96, "low_flops": 1.0, "high_flops": 2.0}))
    old = Run(copy_run(shipped_root / "mnist", app_env, "old-summary"))
    old.write_summary({k: v for k, v in summary.items() if k not in ("anytime_val_fitted", "anytime_auc")})
    at = open_link({"run": "new-summary"})
    (curve,) = [t for t in chart(at)["data"] if t.get("name") == "early exit fitted on validation"]
    assert len(curve["x"]) == len(summary["prefixes"])
    assert "fitted on validation" in texts(at, "markdown") and "validation 97.00%, test 96.00%" in texts(at, "markdown")
    at = open_link({"run": "old-summary"})
    assert not [t for t in chart(at)["data"] if t.get("name") == "early exit fitted on validation"]
    assert "fitted on validation" not in texts(at, "markdown")
