"""A sweep's worker: asks the study for a trial, trains it in a `python -m pkd train` subprocess and tells the study
its values, until the study has its trials or a stop is requested.

Start more workers with `--workers P` or the same command on other machines over a shared filesystem. A killed
worker leaves its trial running in the journal with its lock free: the next worker adopts it and resumes its run
directory (`train --resume`), so no trial is ever duplicated.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from pkd.procs import child_env, pkd_command, spawn
from pkd.runs import CONFIG_FILE, MANIFEST_FILE, STUDENTS_DIR, Run, RunError, State, printable
from pkd.sweep.database import DatabaseOptions, open_database_sweep, uses_database
from pkd.sweep.folder import BASE_RUN, STOP_FILE, Sweep, held, stop_generation
from pkd.sweep.results import trial_values
from pkd.sweep.space import SweepError
from pkd.sweep.storage import heartbeat
from pkd.sweep.study import Job, next_job, open_sweep, set_attrs

logger = logging.getLogger(__name__)

MAX_TRIALS = 10_000
POLL_S = 1.0


@dataclass(frozen=True)
class TrialOptions:
    """How a worker starts its training processes."""

    device: str | None = None  # --device of every trial (default: the config's)
    build_kernel: bool = True  # let training build the fused CPU scan kernel
    threads: int | None = None  # OMP_NUM_THREADS of every trial (several workers on one machine share its cores)


class Stopper:
    """SIGTERM / SIGINT to a worker, or a stop request in the sweep folder (`request_stop`, seen by workers on every
    machine sharing it): stop after the running trial has stopped cleanly (SIGTERM is passed on to the training
    processes, which save a checkpoint); the trial stays running in the journal and is adopted later."""

    def __init__(self, sweep_path: Path | None = None) -> None:
        self.stopped = False
        self.children: list[subprocess.Popen] = []
        self.sweep_path = sweep_path
        self.generation = stop_generation(sweep_path) if sweep_path is not None else 0

    def install(self) -> "Stopper":
        signal.signal(signal.SIGTERM, self._terminate)
        signal.signal(signal.SIGINT, self._interrupt)  # Ctrl-C: the trial, in the same process group, gets it too
        return self

    def _terminate(self, signum: int, frame: Any) -> None:  # noqa: ARG002
        self.stopped = True
        for child in list(self.children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    def _interrupt(self, signum: int, frame: Any) -> None:  # noqa: ARG002
        self.stopped = True

    def check_requests(self) -> bool:
        """Stop (as on SIGTERM) if a stop was requested in the sweep folder since this worker started; True if
        stopped."""
        if not self.stopped and self.sweep_path is not None and stop_generation(self.sweep_path) > self.generation:
            logger.info("a stop was requested in %s; stopping after the running trial saves a checkpoint",
                        self.sweep_path / STOP_FILE)
            self._terminate(signal.SIGTERM, None)
        return self.stopped

    def wait(self, proc: subprocess.Popen) -> int:
        self.children.append(proc)
        try:
            if self.stopped:
                proc.send_signal(signal.SIGTERM)
            while True:
                try:
                    return proc.wait(timeout=POLL_S)
                except subprocess.TimeoutExpired:
                    self.check_requests()
        finally:
            self.children.remove(proc)


def _train(run: Run, args: list[str], options: TrialOptions, stopper: Stopper) -> int:
    """`python -m pkd train ARGS` for `run`, output appended to its console log; returns its exit code."""
    command = pkd_command("train", "--no-progress", device=options.device, build_kernel=options.build_kernel,
                          after=args)
    run.path.mkdir(parents=True, exist_ok=True)
    # the trial dies with its worker: a SIGKILLed sweep's trial stops cleanly, resumable, instead of training on unseen
    proc = spawn(command, console=run.console_path(), env=child_env(options.threads), die_with_parent=True)
    logger.info("%s: training (pid %d)", run.path.name, proc.pid)
    return stopper.wait(proc)


def _clear_unstarted(path: Path) -> None:
    """A run folder without a manifest (killed while it was being created): remove what creation leaves there
    (config.yaml, an empty students/, temp files) so `train --run-dir` can start it; refuse anything else."""
    if not path.is_dir():
        return
    for entry in path.iterdir():
        if entry.is_symlink():
            raise SweepError(f"{entry} is a symbolic link; a sweep writes only inside its folder: move the folder "
                             f"{path.name} away and run the sweep again")
        if entry.name == CONFIG_FILE or entry.name.endswith(".tmp"):
            entry.unlink()
        elif entry.name == STUDENTS_DIR and entry.is_dir() and not any(entry.iterdir()):
            entry.rmdir()
        elif entry.name != Run(path).console_path().name:
            raise SweepError(f"{path} holds {printable(entry.name, 60)} but no run; move the folder away and "
                             "run the sweep again")


def _wait_while_active(run: Run, stopper: Stopper) -> None:
    """A trial whose worker died may still be trained by its orphaned process: wait until it has ended."""
    announced = False
    while run.is_active() and not stopper.check_requests():
        if not announced:
            logger.info("%s: still being trained by pid %s; waiting for it", run.name, run.status().get("pid"))
            announced = True
        time.sleep(POLL_S)


def train_to_end(run: Run, fresh: list[str], options: TrialOptions, stopper: Stopper) -> State:
    """Train `run` to its end: start it with `fresh` arguments, resume it if it was started, or leave it if it is
    done. Returns its state afterwards (DONE, STOPPED on a stop request, else a failure)."""
    _wait_while_active(run, stopper)
    if stopper.stopped:
        return State.STOPPED
    if not (run.path / MANIFEST_FILE).is_file():
        _clear_unstarted(run.path)
        _train(run, fresh, options, stopper)
    elif run.state() != State.DONE:
        logger.info("%s: resuming (state %s)", run.name, run.state())
        _train(run, ["--resume", str(run.path)], options, stopper)
    return run.state()


def ensure_teacher(sweep: Sweep, options: TrialOptions, stopper: Stopper) -> bool:
    """When BASE has no teacher.checkpoint, the base run trains the sweep's teacher first (one worker trains it,
    the others wait for it); every trial then shares its teacher.pt. False when stopped on request."""
    if sweep.meta()["teacher"]["source"] != BASE_RUN:
        return True
    base = Run(sweep.own(BASE_RUN))
    with held(sweep.lock_path(BASE_RUN)):
        if (base.path / MANIFEST_FILE).is_file() and base.state() == State.DONE:
            return True
        logger.info("training the base run %s: its teacher is every trial's", base.path)
        state = train_to_end(base, ["--config", str(sweep.base_file), "--run-dir", str(base.path)], options, stopper)
    if state == State.DONE:
        return True
    if stopper.stopped or state == State.STOPPED:
        return False
    if state != State.DONE:
        raise SweepError(f"the base run {base.path} (the sweep's teacher) ended {state}; see "
                         f"{base.console_path()}, then run the sweep again")


def run_trial(sweep: Sweep, study: Any, job: Job, options: TrialOptions, stopper: Stopper) -> State:
    """Train a held trial to its end and tell Optuna: its values when done, a failure when it failed; a stopped
    trial is left running in the journal (the next worker resumes it)."""
    run = Run(sweep.trial_dir(job.number))
    share = ["--teacher-ref"] if sweep.meta()["teacher"]["share"] else []
    fresh = ["--config", str(sweep.base_file), "--run-dir", str(run.path), *share,
             "--", *sweep.teacher_overrides(), *job.overrides]  # after "--": never read as options
    state = train_to_end(run, fresh, options, stopper)
    if state == State.DONE:
        try:
            values, attrs = trial_values(run, sweep.meta()["objective"])
        except (SweepError, RunError) as exc:
            state, error = State.FAILED, str(exc)
        else:
            set_attrs(study, job.trial_id, attrs)
            study.tell(job.number, values)
            logger.info("trial %d done: %s", job.number, ", ".join(f"{v:.6g}" for v in values))
            return State.DONE
    elif stopper.stopped or state == State.STOPPED:
        logger.info("trial %d stopped; it resumes when the sweep runs again", job.number)
        return State.STOPPED
    else:
        error = f"the run ended {state}: {printable(run.status().get('message') or '', 300)}"
    set_attrs(study, job.trial_id, {"error": error})
    study.tell(job.number, state=TrialState.FAIL)
    logger.warning("trial %d failed: %s", job.number, error)
    return State.FAILED


def _others_running(sweep: Sweep, study: Any) -> bool:
    """On a database: trials of other workers still run. This worker waits for them, so that one whose worker
    dies is failed by its heartbeat and retried here; the sweep ends with no trial left running."""
    return bool(sweep.database()) and bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def work(sweep: Sweep, n_trials: int, options: TrialOptions, stopper: Stopper) -> int:
    """One worker: trials one after another until the study has `n_trials` (0), or a stop request (3)."""
    study, space, base = sweep.study(), sweep.space(), sweep.base_config()
    announced = False
    while not stopper.check_requests():
        job = next_job(sweep, study, n_trials, space, base)
        if job is None and _others_running(sweep, study):
            if not announced:
                logger.info("no trial left to start; waiting while other workers' trials run")
                announced = True
            time.sleep(POLL_S)
            continue
        if job is None:
            return 0
        try:
            with heartbeat(sweep.storage(), job.trial_id):
                state = run_trial(sweep, study, job, options, stopper)
        finally:
            os.close(job.fd)
        if state == State.STOPPED:
            break
    return 3


def _spawn_worker(sweep: Sweep, n_trials: int, options: TrialOptions, database: DatabaseOptions) -> subprocess.Popen:
    """Another worker process on this machine: the same command a worker on another machine runs (a database's
    password, if the URL had one, in its environment)."""
    command = pkd_command("sweep", "--sweep-dir", str(sweep.path), "--trials", str(n_trials), device=options.device,
                          build_kernel=options.build_kernel)
    return spawn(command, env={**child_env(options.threads), **database.child_env()}, die_with_parent=True)


def run_sweep(sweep_dir: str | os.PathLike, n_trials: int, base_path: str | os.PathLike | None = None,
              space_path: str | os.PathLike | None = None, overrides: list[str] = (), workers: int = 1,
              options: TrialOptions = TrialOptions(), database: DatabaseOptions = DatabaseOptions()) -> int:
    """Open (or create, or join from a database) a sweep and work on it with `workers` processes until it has
    `n_trials` trials (0 workers: open it only, e.g. to watch a database sweep from this machine's app).

    Returns 0 when the study is complete, 3 when it was stopped (run it again to continue).
    """
    if not 1 <= n_trials <= MAX_TRIALS:
        raise SweepError(f"--trials {n_trials}: give a number of trials from 1 to {MAX_TRIALS}")
    if not 0 <= workers <= 64:
        raise SweepError(f"--workers {workers}: give 1 to 64 worker processes (0: only open the sweep)")
    if workers > 1 and options.threads is None and "OMP_NUM_THREADS" not in os.environ:
        options = dataclasses.replace(options, threads=max(1, (os.cpu_count() or 1) // workers))
    if uses_database(sweep_dir, space_path, database):
        sweep = open_database_sweep(sweep_dir, base_path, space_path, list(overrides), database)
    else:
        sweep = open_sweep(sweep_dir, base_path, space_path, overrides)
    if workers == 0:
        return 0
    stopper = Stopper(sweep.path).install()
    if not ensure_teacher(sweep, options, stopper):
        return 3
    others = [_spawn_worker(sweep, n_trials, options, database) for _ in range(workers - 1)]
    stopper.children += others
    try:
        code = work(sweep, n_trials, options, stopper) if not stopper.stopped else 3
    finally:
        codes = [child.wait() for child in others]
    return max([code, *codes])

