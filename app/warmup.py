"""Warm the server while its first visitor reads the first page.

A fresh server pays, on the first open of each page, for what the page loads: the Playground builds the run's
students (the first model built on torch's meta device imports torch._dynamo, about 1 s), its teacher and the test
split; the Results verdicts import scipy.stats (1-2 s). Streamlit runs no code before the first visit, so after the
first page of the first session has run, one daemon thread loads the same things into the app's shared caches
(app.common's cached_* functions: the next page finds them there, whichever session opens it). Once per server
process, for the run that first page showed; the memory is what the Playground would hold anyway.
"""

from __future__ import annotations

import logging
import threading
import weakref
from pathlib import Path

from app import common
from pkd.runs import Run

log = logging.getLogger(__name__)

_LOCK = threading.Lock()
_THREADS: list[threading.Thread] = []  # at most one: the warm-up of this server process
_LOADED: dict[str, weakref.ref] = {}  # run path -> the students the warm-up loaded (weak: the cache owns them)


def start(run_path: str | None) -> None:
    """Load `run_path`'s models into the caches in the background, once per server process (later calls, and
    calls without a run, do nothing)."""
    if not run_path:
        return
    with _LOCK:
        if _THREADS:
            return
        thread = threading.Thread(target=warm, args=(run_path,), name="pkd-warm-up", daemon=True)
        _THREADS.append(thread)
    thread.start()


def wait(timeout: float | None = None) -> bool:
    """Block until the warm-up (if one was started) has finished; False if it is still running after `timeout`."""
    with _LOCK:
        threads = list(_THREADS)
    for thread in threads:
        thread.join(timeout)
    return not any(thread.is_alive() for thread in threads)


def loaded(run_path: str):
    """The students the warm-up loaded for `run_path`, while the cache still holds them (else None)."""
    ref = _LOADED.get(run_path)
    return ref() if ref else None


def warm(run_path: str) -> None:
    """What the Playground and Clips pages load for a run, plus the statistics module the verdicts use; on an image
    run also what the Clips page loads for its first pick (the newest video run: its ViFi-CLIP teacher imports
    open_clip, 1.8 s of CPU, and its test clips). A run that cannot be loaded is left alone: the page that needs it
    says why."""
    try:
        _warm_run(run_path)
        from pkd import stats

        stats.mcnemar([True], [False])  # one disagreement: the exact test runs, so scipy.stats is imported
        if common.dataset_kind(Run(Path(run_path)).setting("data", "dataset")) != "clip":
            first_clip_run = next(iter(common.video_runs()), None)
            if first_clip_run:
                _warm_run(first_clip_run)
    except Exception as exc:  # noqa: BLE001 - a background load never takes the server down; the page reports it
        log.info("warm-up of %s skipped: %s", run_path, exc)


def _warm_run(run_path: str) -> None:
    """One run's students, teacher and test split into app.common's caches (a broken run, or one without
    students, is skipped)."""
    from pkd.data import get_dataset_spec

    run = Run(Path(run_path))
    if common.run_info(run)[common.RunInfo.PROBLEM] or not run.students_saved():
        return
    key = run.weights_stamp()
    ensemble = common.cached_ensemble(run_path, key)
    _LOADED[run_path] = weakref.ref(ensemble)
    if run.has_teacher():
        common.cached_teacher(run_path, key)
    common.cached_test_split(get_dataset_spec(run.setting("data", "dataset")).name)
