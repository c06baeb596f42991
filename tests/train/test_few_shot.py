"""ViFi-CLIP's zero-shot, few-shot and bridge-and-prompt settings as run stages: `data.shots` (K training clips per
class), `teacher.init` (start from a saved teacher) and `teacher.prompt` (only the text context learnt), each in a
real `python -m pkd train` run of configs/tiny-video.yaml, with `pkd eval` reproducing the result."""

from __future__ import annotations

import signal

import pytest
import torch

from pkd.artifacts import load_teacher
from pkd.config import ConfigError, load_config
from pkd.data import Split
from pkd.data.run_data import few_shot
from pkd.runs import Run
from tests.pkd_process import ROOT, child_env, pkd, pkd_ok

TINY_VIDEO = str(ROOT / "configs" / "tiny-video.yaml")
ARGS = ("--no-progress", "--no-kernel-build")
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
SMALL = ("data.train_limit=256", "data.val_limit=64", "data.test_limit=64")
# stage 1 only: the zero-shot teacher the few-shot runs start from
ZERO_SHOT = (*SMALL, "teacher.optim.epochs=0", "students.schedule=[{d_model: 8}]")
# from the zero-shot teacher: no stage 1, stage 2 on 2 clips per class, then 2 epochs of prompt learning
FEW_SHOT = (*SMALL, "data.train_limit=512", "data.shots=2", "teacher.pretrain.epochs=0", "teacher.optim.epochs=1", "teacher.params={n_ctx: 4}",
            "teacher.prompt.epochs=2", "teacher.prompt.batch_size=8", "students.schedule=[{d_model: 8}]")


def train(path, *overrides, env=None):
    return pkd("train", "--config", TINY_VIDEO, "--run-dir", str(path), *ARGS, *overrides,
               env=env or child_env(**ONE_THREAD), timeout=600)


@pytest.fixture(scope="module")
def zero_shot(tmp_path_factory):
    path = tmp_path_factory.mktemp("few-shot") / "zero-shot"
    assert train(path, *ZERO_SHOT).returncode == 0
    return Run(path)


@pytest.fixture(scope="module")
def few_shot_run(zero_shot, tmp_path_factory):
    path = tmp_path_factory.mktemp("few-shot") / "two-shot"
    result = train(path, *FEW_SHOT, f"teacher.init={zero_shot.teacher_path()}")
    assert result.returncode == 0, result.stderr[-2000:]
    return Run(path)


def test_few_shot_keeps_k_samples_of_every_class_seeded_and_in_order():
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 0, 0])
    split = Split(inputs=torch.arange(10).float().reshape(10, 1, 1, 1), labels=labels)
    picked = few_shot(split, 2, seed=0)
    assert picked.labels.bincount().tolist() == [2, 2, 2]
    kept = picked.inputs.flatten().long()
    assert kept.tolist() == sorted(kept.tolist()) and torch.equal(labels[kept], picked.labels)
    assert torch.equal(few_shot(split, 2, seed=0).inputs, picked.inputs)  # the same seed picks the same samples
    assert any(not torch.equal(few_shot(split, 2, seed=s).inputs, picked.inputs) for s in range(1, 6))
    with pytest.raises(ValueError, match="class 2 has only 2; lower data.shots"):
        few_shot(split, 3, seed=0)
    no_class_1 = Split(inputs=split.inputs[labels != 1], labels=labels[labels != 1])
    assert few_shot(no_class_1, 2, seed=0).labels.unique().tolist() == [0, 2]  # novel classes stay absent


@pytest.mark.parametrize("overrides, message", [
    (["teacher.prompt.epochs=2"], "teacher.prompt.epochs: learning prompts needs teacher.params.n_ctx"),
    (["teacher.arch=mnist_cnn", "teacher.pretrain.epochs=0", "teacher.prompt.epochs=1"], "prompt learning is for teacher.arch vifi_clip only"),
    (["teacher.init=configs/tiny.yaml", "teacher.checkpoint=configs/tiny.yaml"], "give one"),
    (["teacher.init=no/such/teacher.pt"], "teacher.init: file 'no/such/teacher.pt' does not exist"),
    (["teacher.arch=mnist_cnn", "teacher.pretrain.epochs=0", "teacher.init=configs/tiny.yaml"], "use teacher.checkpoint"),
    (["teacher.optim.epochs=0", "teacher.pretrain.epochs=0"], "0 epochs needs teacher.checkpoint"),
    (["data.shots=0"], "data.shots: 0 must be a positive number"),
])
def test_bad_teacher_stage_configs_are_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(TINY_VIDEO, overrides)


def test_stage_1_alone_is_a_zero_shot_teacher(zero_shot):
    events = zero_shot.metrics()
    phases = {e.get("phase") for e in events if e.get("event") == "epoch" and e.get("stage") == "teacher"}
    assert phases == {"pretrain"}  # no fine-tuning epoch: the clips are classified through untrained prompts
    assert zero_shot.summary()["teacher"]["test_acc"] >= 0.0


def test_a_few_shot_run_trains_on_k_clips_per_class_and_eval_reproduces_it(few_shot_run, zero_shot):
    events = few_shot_run.metrics()
    assert any(e["event"] == "teacher_init" and e["source"] == str(zero_shot.teacher_path()) for e in events)
    start = [e for e in events if e["event"] == "prompt_start"]
    prompt = [e for e in events if e.get("event") == "epoch" and e.get("phase") == "prompt"]
    assert len(start) == 1 and {"val_acc", "test_acc"} <= set(start[0]) and [e["epoch"] for e in prompt] == [1, 2]
    assert few_shot_run.status()["progress"] == 1.0
    summary, table = few_shot_run.summary(), few_shot_run.prefix_table()
    pkd_ok("eval", str(few_shot_run.path), env=child_env(**ONE_THREAD))
    assert few_shot_run.prefix_table() == table and few_shot_run.summary()["teacher"] == summary["teacher"]


def test_bridge_and_prompt_changes_only_the_context_vectors(zero_shot, tmp_path):
    """From the zero-shot teacher with no fine-tuning: after the prompt stage every CLIP weight is the init's,
    bit for bit, and only prompt_ctx moved (from the embedding of 'a photo of a')."""
    path = tmp_path / "prompt-only"
    overrides = [o for o in FEW_SHOT if not o.startswith("teacher.optim")] + ["teacher.optim.epochs=0"]
    assert train(path, *overrides, f"teacher.init={zero_shot.teacher_path()}").returncode == 0
    before, after = zero_shot.load_teacher()["state_dict"], Run(path).load_teacher()["state_dict"]
    assert set(after) - set(before) == {"prompt_ctx"}
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("clip."))
    teacher = load_teacher(zero_shot)
    start = teacher.clip.token_embedding(teacher.tokenize(["a photo of a"])[0, 1:5]).detach()  # (4, W)
    assert after["prompt_ctx"].shape == start.shape and not torch.equal(after["prompt_ctx"], start)


def test_a_run_killed_after_the_prompt_stage_resumes_to_the_same_teacher(zero_shot, few_shot_run, tmp_path):
    """Killed while writing teacher.pt (stage 3 done, nothing saved): the resume runs stage 3 again from stage 2's
    last checkpoint and ends with the uninterrupted run's teacher and students, bit for bit."""
    path = tmp_path / "killed"
    init = f"teacher.init={zero_shot.teacher_path()}"
    killed = train(path, *FEW_SHOT, init, env=child_env(PKD_FAULT="kill:teacher.pt:1", **ONE_THREAD))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not Run(path).has_teacher() and Run(path).status().get("phase") == "prompt"
    pkd_ok("train", "--resume", str(path), *ARGS, env=child_env(**ONE_THREAD))
    a, b = few_shot_run.load_teacher()["state_dict"], Run(path).load_teacher()["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert Run(path).prefix_table() == few_shot_run.prefix_table()
