"""Sweeps: many runs of one base config, their settings chosen by Optuna, in one folder; the trade-off between
accuracy and FLOPs of every run and prefix compared on one plane.

    space.py    the search space (what may be searched, checked) and a trial's values as config overrides
    folder.py   the sweep folder: file names, flock files, Sweep (its reader), find_sweeps
    study.py    the Optuna study: creating a sweep after every pre-flight check, handing trials to workers
    worker.py   the worker: trains trials in `python -m pkd train` subprocesses (`pkd sweep`)
    results.py  the (run, k) points, their Pareto front, the trials' table and parameter importances
    storage.py  where the study lives: journal.log, or a database URL (heartbeats, secrets kept out of files)
    database.py a sweep on a database: its study created there or joined from another machine
    control.py  what the app calls: start a sweep as a detached process, stop it, read its log

This face re-exports what the app and the CLI read (`from pkd import sweep`, then `sweep.Sweep`, ...). The
training side (study.py, worker.py: they build models through pkd.train) is imported from its own modules, so that
reading a sweep never loads the trainer.
"""

from pkd.sweep.control import log_tail, request_stop, start_sweep, stop_sweep
from pkd.sweep.folder import JOURNAL_FILE, Sweep, find_sweeps
from pkd.sweep.results import (MIN_TRIALS_FOR_IMPORTANCE, TRIAL_WORDS, can_change, front, param_importances,
                               prefix_points, study_points, sweep_counts, sweep_points, trial_table)
from pkd.sweep.space import OBJECTIVE_NAMES, OBJECTIVES, SweepError, load_space
from pkd.sweep.storage import masked

__all__ = ["MIN_TRIALS_FOR_IMPORTANCE", "can_change", "JOURNAL_FILE", "OBJECTIVES", "OBJECTIVE_NAMES", "TRIAL_WORDS",
           "Sweep", "SweepError", "find_sweeps", "front", "load_space", "log_tail", "masked", "param_importances",
           "prefix_points", "request_stop", "start_sweep", "stop_sweep", "study_points", "sweep_counts",
           "sweep_points", "trial_table"]
