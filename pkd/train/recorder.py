"""What a training process writes to its run directory, in one object: live status, epoch records, resume
checkpoints, saved models and result tables. The loop and the stages write only through it, so a process that
must not write (a second rank, a dry run) gets a `NullRecorder` and the same code runs unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from pkd.runs import Run
from pkd.runs.schema import MetricEvent

ProgressFn = Callable[[dict], None]


@dataclass
class FitState:
    """What a resume checkpoint restores for the model being trained."""

    epoch: int = 0  # epochs completed
    model: dict | None = None
    optimizer: dict | None = None
    scheduler: dict | None = None
    record: dict | None = None  # the metrics record of that epoch (re-logged if a kill lost it)


def checkpoint_state(run: Run, stage: str, k: int) -> FitState | None:
    """The run's resume checkpoint as a FitState if it belongs to (stage, k), else None."""
    checkpoint = run.load_checkpoint()
    if not (checkpoint and checkpoint.get("stage") == stage and checkpoint.get("k") == k):
        return None
    record = checkpoint.get("record")
    return FitState(epoch=int(checkpoint["epoch"]), model=checkpoint["model"], optimizer=checkpoint["optimizer"],
                    scheduler=checkpoint["scheduler"], record=record if isinstance(record, dict) else None)


class Recorder:
    """The one writer of a run during training (reads go straight to the Run)."""

    def __init__(self, run: Run, callback: ProgressFn | None = None) -> None:
        self.run = run
        self.callback = callback

    # ------------------------------------------------------------------ live status
    def status(self, *, durable: bool = True, **fields: Any) -> None:
        self.run.write_status(durable=durable, **fields)

    def progress(self, info: dict, durable: bool = True, **extra: Any) -> None:
        """status.json gets `info` (durable=False: no fsync, for the per-second heartbeat inside an epoch); the
        progress callback (the CLI's bar) gets `info` and `extra`."""
        self.status(durable=durable, **info)
        if self.callback:
            self.callback({**info, **extra})

    # ------------------------------------------------------------------ epochs and resume
    def epoch_done(self, checkpoint: dict, record: dict) -> None:
        """An epoch's resume checkpoint, then its metrics record (a kill in between re-logs it on resume)."""
        self.run.save_checkpoint(checkpoint)
        self.run.log_metrics(MetricEvent.EPOCH, **record)

    def resume_state(self, stage: str, k: int) -> FitState | None:
        """The checkpoint of (stage, k) if the run's checkpoint is one; re-logs its epoch record if a kill lost it."""
        state = checkpoint_state(self.run, stage, k)
        if state and state.record and not self.has_event(MetricEvent.EPOCH, stage=stage, student=k,
                                                         epoch=state.epoch):
            # killed between the checkpoint and its metrics line
            self.run.log_metrics(MetricEvent.EPOCH, **state.record)
        return state

    def stage_done(self) -> None:
        """The stage's model is saved: its resume checkpoint is no longer needed."""
        self.run.clear_checkpoint()

    # ------------------------------------------------------------------ events, models and results
    def has_event(self, event: str, **match: Any) -> bool:
        return any(r.get("event") == event and all(r.get(key) == value for key, value in match.items())
                   for r in self.run.metrics())

    def log_once(self, event: str, match: dict, **fields: Any) -> None:
        """Append an event record unless one with the same `match` fields is there (a resumed run)."""
        if not self.has_event(event, **match):
            self.run.log_metrics(event, **match, **fields)

    def log(self, event: str, **fields: Any) -> None:
        self.run.log_metrics(event, **fields)

    def save_teacher(self, state_dict: dict, model_spec: dict) -> None:
        self.run.save_teacher(state_dict, model_spec)

    def save_teacher_logits(self, key: dict, logits: dict) -> None:
        self.run.save_teacher_logits(key, logits)

    def save_student(self, k: int, state_dict: dict, model_spec: dict, prev_scale: float) -> None:
        self.run.save_student(k, state_dict, model_spec, prev_scale)

    def prefix_table(self, rows: list[dict]) -> None:
        self.run.write_prefix_table(rows)

    def summary(self, summary: dict) -> None:
        self.run.write_summary(summary)


class NullRecorder(Recorder):
    """A recorder for a process that trains beside the writer but must not write: every write is skipped."""

    def status(self, *, durable: bool = True, **fields: Any) -> None:
        pass

    def epoch_done(self, checkpoint: dict, record: dict) -> None:
        pass

    def resume_state(self, stage: str, k: int) -> FitState | None:
        return checkpoint_state(self.run, stage, k)

    def stage_done(self) -> None:
        pass

    def log_once(self, event: str, match: dict, **fields: Any) -> None:
        pass

    def log(self, event: str, **fields: Any) -> None:
        pass

    def save_teacher(self, state_dict: dict, model_spec: dict) -> None:
        pass

    def save_teacher_logits(self, key: dict, logits: dict) -> None:
        pass

    def save_student(self, k: int, state_dict: dict, model_spec: dict, prev_scale: float) -> None:
        pass

    def prefix_table(self, rows: list[dict]) -> None:
        pass

    def summary(self, summary: dict) -> None:
        pass
