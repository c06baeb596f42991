"""The training process writes its run only through a Recorder; a NullRecorder trains the same and writes nothing."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from pkd.config import OptimConfig, load_config
from pkd.data import Split, get_dataset_spec
from pkd.runs import Run
from pkd.train.loop import Placement, Stage, fit
from pkd.train.recorder import NullRecorder, Recorder
from tests.pkd_process import TINY


def _fit_once(run: Run, recorder: Recorder) -> nn.Module:
    """Two epochs of a linear model on 64 random MNIST-shaped images."""
    torch.manual_seed(0)
    spec = get_dataset_spec("mnist")
    train = Split(inputs=torch.rand(64, *spec.sample_shape), labels=torch.randint(0, 10, (64,)))
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))

    def loss(logits, idx, x):  # noqa: ARG001
        return {"loss": F.cross_entropy(logits, train.labels[idx])}

    stage = Stage("teacher", 0, OptimConfig(epochs=2, batch_size=16, lr=0.01), seed=0)
    fit(model, stage, train, spec, loss, lambda: {"val_acc": 0.5}, recorder, Placement(torch.device("cpu")),
        recorder.resume_state("teacher", 0))
    return model


def test_null_recorder_trains_identically_and_writes_nothing(tmp_path):
    cfg = load_config(TINY).to_dict()
    writer, silent = Run.create_at(tmp_path / "writer", cfg), Run.create_at(tmp_path / "silent", cfg)
    before = sorted(p.name for p in silent.path.rglob("*"))
    a, b = _fit_once(writer, Recorder(writer)), _fit_once(silent, NullRecorder(silent))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert sorted(p.name for p in silent.path.rglob("*")) == before  # not one file written or changed
    epochs = [r for r in writer.metrics() if r["event"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2] and writer.load_checkpoint()["epoch"] == 2


def test_resume_relogs_an_epoch_record_a_kill_lost(tmp_path):
    """Killed between the checkpoint and its metrics line: resuming logs that epoch's record exactly once."""
    run = Run.create_at(tmp_path / "r", load_config(TINY).to_dict())
    record = {"stage": "student", "student": 1, "epoch": 1, "epochs": 2, "val_acc": 0.5}
    run.save_checkpoint({"stage": "student", "k": 1, "epoch": 1, "model": {}, "optimizer": {}, "scheduler": {},
                         "record": record})
    recorder = Recorder(run)
    for _ in range(2):
        state = recorder.resume_state("student", 1)
        assert state.epoch == 1 and state.record == record
    assert [r["epoch"] for r in run.metrics() if r["event"] == "epoch"] == [1]
    assert recorder.resume_state("student", 2) is None and recorder.resume_state("teacher", 0) is None
