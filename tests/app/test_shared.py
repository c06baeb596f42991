"""What a re-open reuses: every browser tab is a new session running the whole script, so the run listing
(app/shared.py) and the pages' model answers on a test input are kept between sessions. A second AppTest session
must read no run file and run no model again; a changed, new or removed run must be seen by the next script run;
an active run's info is never kept."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from app import common, shared, warmup
from pkd import inference
from pkd.procs import proc_start_time
from pkd.runs import Run
from pkd.runs import listing as runs_listing
from tests.app.trained import ROOT, copy_run

streamlit_testing = pytest.importorskip("streamlit.testing.v1")
MAIN = str(ROOT / "app" / "main.py")


class Calls:
    """Counts the calls of a real function it wraps (the function still runs)."""

    def __init__(self, function):
        self.function, self.count = function, 0

    def __call__(self, *args, **kwargs):
        self.count += 1
        return self.function(*args, **kwargs)


def open_page(page: str, run: str, **state):
    at = streamlit_testing.AppTest.from_file(MAIN, default_timeout=120)
    at.query_params["run"] = run
    for key, value in state.items():
        at.session_state[key] = value
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def test_a_second_session_reads_no_run_file_again(app_env, shipped_root, monkeypatch):
    copy_run(shipped_root / "mnist", app_env, "mine")
    info, listing = Calls(Run.info), Calls(runs_listing.list_runs)
    monkeypatch.setattr(Run, "info", lambda self: info(self))
    monkeypatch.setattr(shared, "list_runs", listing)
    first = open_page("app_pages/results.py", "mine")
    warmup.wait(300)  # the server's warm-up (once per process) reads a run's info too
    assert info.count > 0 and listing.count > 0
    info.count = listing.count = 0
    second = open_page("app_pages/results.py", "mine")
    assert (info.count, listing.count) == (0, 0)
    assert [s.options for s in second.sidebar.selectbox] == [s.options for s in first.sidebar.selectbox]


def test_a_changed_new_or_removed_run_is_read_again(app_env, shipped_root):
    mine = Run(copy_run(shipped_root / "mnist", app_env, "mine"))
    assert common.run_info(mine) == mine.info()
    before = [str(run.path) for run in common.all_runs()]
    assert str(mine.path) in before
    mine.write_status(state="stopped")  # an atomic rewrite of status.json
    assert common.run_info(mine)["state"] == "stopped"
    other = copy_run(shipped_root / "mnist", app_env, "other")
    assert str(other) in [str(run.path) for run in common.all_runs()]
    assert "other" in common.url_ids()
    shutil.rmtree(other)
    assert [str(run.path) for run in common.all_runs()] == before
    assert "other" not in common.url_ids()


def test_an_active_runs_info_is_never_kept(app_env, shipped_root):
    mine = Run(copy_run(shipped_root / "mnist", app_env, "mine"))
    mine.write_status(state="running", pid=os.getpid(), pid_start=proc_start_time(os.getpid()))  # this process
    assert common.run_info(mine)["state"] == "running"
    assert str(mine.path) not in shared.memo()


def test_a_second_session_runs_no_model_on_the_same_test_digit(app_env, shipped_root, monkeypatch):
    copy_run(shipped_root / "mnist", app_env, "mine")
    calls = {name: Calls(getattr(inference, name)) for name in ("read_tokens", "digit_soft_targets", "predict_digit")}
    for name, spy in calls.items():
        monkeypatch.setattr(inference, name, spy)
    first = open_page("app_pages/how_it_works.py", "mine")
    assert calls["read_tokens"].count >= 1 and calls["digit_soft_targets"].count >= 1
    for spy in calls.values():
        spy.count = 0
    second = open_page("app_pages/how_it_works.py", "mine")
    assert {name: spy.count for name, spy in calls.items()} == dict.fromkeys(calls, 0)
    assert [m.value for m in second.metric] == [m.value for m in first.metric]  # KL, CE, T²·KL, loss


def test_a_second_session_reuses_the_test_clips_report(app_env, video_run, monkeypatch):
    copy_run(video_run.path, app_env, "tiny-video")
    report = Calls(inference.clip_report)
    monkeypatch.setattr(inference, "clip_report", report)
    first = open_page("app_pages/clips.py", "tiny-video")
    assert report.count == 1
    second = open_page("app_pages/clips.py", "tiny-video")
    assert report.count == 1
    assert [t.value.to_dict() for t in second.table] == [t.value.to_dict() for t in first.table]
    backwards = open_page("app_pages/clips.py", "tiny-video", clips_back=True)  # another clip: computed
    assert report.count == 2
    assert [t.value.to_dict() for t in backwards.table] != [t.value.to_dict() for t in first.table]


def test_the_memo_is_one_dict_per_process(app_env):
    assert shared.memo() is shared.memo()
    assert isinstance(shared.listing_stamp([Path(app_env)]), tuple)


def test_sweep_folders_are_those_find_sweeps_lists(shipped_root, app_env):
    from pkd.sweep import find_sweeps

    for root in (shipped_root, app_env, *common.sweep_dirs(shipped_root)):
        assert sorted(common.sweep_dirs(Path(root))) == sorted(sweep.path for sweep in find_sweeps([root]))
