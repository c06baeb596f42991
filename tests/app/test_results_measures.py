"""AppTest of the Results page's headline: it names its measure and test set, and a video run shows digit identity
beside the 60 digit-and-motion classes for the teacher and every prefix, with why the teacher is low there."""

from __future__ import annotations

import pytest

from pkd.runs import Run
from tests.app.trained import ROOT

streamlit_testing = pytest.importorskip("streamlit.testing.v1")
MAIN = str(ROOT / "app" / "main.py")


def open_results(run: Run):
    at = streamlit_testing.AppTest.from_file(MAIN, default_timeout=120).run()
    assert not at.exception, at.exception
    at.session_state["run"] = str(run.path)
    at.run()
    assert not at.exception, at.exception
    return at


def test_a_video_run_shows_digit_identity_beside_digit_and_motion(app_env, shipped_root):
    run = Run(shipped_root / "moving-mnist")
    if not (run.path / "summary.json").is_file():
        pytest.skip("no shipped moving-mnist run")
    summary, rows = run.summary(), run.prefix_table()
    video = summary["video"]
    at = open_results(run)
    metrics = {m.label: m for m in at.metric}
    assert metrics["teacher's accuracy: digit and motion"].value == f"{100 * summary['teacher']['test_acc']:.2f}%"
    together = metrics[f"all {len(rows)} students together: digit and motion"]
    gap = 100 * (rows[-1]["prefix_acc"] - summary["teacher"]["test_acc"])
    assert together.delta.startswith(f"{gap:+.2f} points vs the teacher")
    identity = metrics[f"all {len(rows)} students: digit identity (10 digits)"]
    assert identity.value == f"{100 * video['prefix_digit_acc'][-1]:.2f}%"
    assert metrics["teacher: digit identity (10 digits)"].value == f"{100 * video['teacher_digit_acc']:.2f}%"
    captions = " ".join(c.value for c in at.caption)
    assert f"digit-and-motion accuracy (60 classes) on the {video['n']:,} test clips" in captions
    assert any("averages its frames' features over time" in m.value and "cannot see their order" in m.value
               for m in at.markdown)
    table = next(t.value for t in at.dataframe if "digit identity" in t.value.columns)
    assert list(table["who"]) == ["teacher", "student 1"] + [f"students 1–{r['k']}" for r in rows[1:]]
    assert list(table["digit identity"]) == pytest.approx(
        [round(100 * v, 2) for v in [video["teacher_digit_acc"], *video["prefix_digit_acc"]]])
    assert list(table["digit and motion"]) == pytest.approx(
        [round(100 * v, 2) for v in [summary["teacher"]["test_acc"], *[r["prefix_acc"] for r in rows]]])


def test_an_image_run_names_its_measure_and_test_set(app_env, shipped_root):
    run = Run(shipped_root / "mnist")
    at = open_results(run)
    captions = " ".join(c.value for c in at.caption)
    assert "Accuracies here: accuracy (10 classes) on the test set of mnist" in captions
    assert not any("digit identity" in m.label for m in at.metric)  # images have no motion to tell apart


def recomputed_tests(run: Run) -> list:
    """Each prefix vs the teacher, recomputed from both models' answers (pkd.compare)."""
    from pkd import stats
    from pkd.compare import run_answers, teacher_right

    answers = run_answers(run)
    teacher = teacher_right(run, answers.split).tolist()
    return [stats.mcnemar(right.tolist(), teacher) for right in answers.right]


def assert_verdicts_shown(at, tests: list) -> None:
    from pkd import stats

    table = next(t.value for t in at.dataframe if "vs the teacher" in t.value.columns)
    assert list(table["vs the teacher"]) == [stats.describe(t.diff, t.verdict) for t in tests]
    assert list(table["only the students right"]) == [t.a_only for t in tests]
    assert list(table["only the teacher right"]) == [t.b_only for t in tests]
    together = next(m for m in at.metric if m.label.startswith(f"all {len(tests)} students together"))
    assert together.delta.endswith(f"points vs the teacher · {tests[-1].verdict}")
    assert "not tested yet" not in " ".join(c.value for c in at.caption)


def test_the_headline_says_the_recorded_verdict_without_a_click(app_env, tiny_run):
    """Training records each prefix's test against the teacher in summary.json: the page shows it on opening."""
    import shutil

    run = Run(shutil.copytree(tiny_run.path, app_env / "tiny"))
    at = open_results(run)
    assert "results_noise_run" not in [b.key for b in at.button]
    assert_verdicts_shown(at, recomputed_tests(run))


def test_a_run_without_recorded_tests_is_tested_on_request(app_env, tiny_run):
    """A run evaluated before the tests were recorded: the page says the gap is untested, and one click runs both
    models on the test set and shows the verdicts."""
    import json
    import shutil

    run = Run(shutil.copytree(tiny_run.path, app_env / "older"))
    summary = json.loads((run.path / "summary.json").read_text())
    del summary["teacher_tests"]
    (run.path / "summary.json").write_text(json.dumps(summary))
    at = open_results(run)
    assert "not tested yet" in " ".join(c.value for c in at.caption)
    at.button(key="results_noise_run").click().run()
    assert not at.exception, at.exception
    assert_verdicts_shown(at, recomputed_tests(run))


def test_a_seed_group_member_shows_its_groups_band_and_spread(app_env, shipped_root):
    """Results on a member of the shipped Fashion-MNIST seed group: the band over its seeds on the chart and one
    line saying which seed this is and what all students score over the seeds (pkd.groups, the same figures)."""
    import json

    from pkd.groups import SeedGroup, group_prefixes
    from pkd.stats import format_spread

    group = SeedGroup(shipped_root / "fashion-mnist")
    if len(group.members()) < 2:
        pytest.skip("no shipped Fashion-MNIST seed group of two or more members")
    at = open_results(group.members()[1])
    last = group_prefixes(group.members())[-1]
    captions = " ".join(c.value for c in at.caption)
    assert f"is seed {group.seeds()[1]} of a seed group" in captions
    assert f"all {last.k} students together: {format_spread(last.test)}%" in captions
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    band = [t for t in spec["data"] if t.get("fill") == "toself"]
    assert len(band) == 1 and f"over its {last.n} seeds" in band[0]["name"]
