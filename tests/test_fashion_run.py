"""A Fashion-MNIST run as its users meet it, in real subprocesses: `pkd predict` on a photo file (the app's picture
path), and the classroom config (configs/fashion-mnist-quick.yaml) trained end to end on the run's teacher. The run
is the shipped pretrained/fashion-mnist/seed-0, else the tiny config trained on Fashion-MNIST (tests/app)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pkd.artifacts import load_ensemble, load_teacher
from pkd.data.fashion_mnist import DEBIAN_DIR, load_test_sample
from pkd.photos import rephotograph
from pkd.preprocess import load_image_file, prepare_image
from pkd.runs import Run
from tests.app.test_photo_playground import fashion_run_dir
from tests.pkd_process import ROOT, child_env, pkd, pkd_ok

pytestmark = pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason="Fashion-MNIST absent: apt-get install "
                                "dataset-fashion-mnist")


@pytest.fixture(scope="module")
def fashion_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return Run(fashion_run_dir(tmp_path_factory))


def test_predict_a_photo_file_as_the_app_reads_it(tmp_path: Path, fashion_run: Run) -> None:
    split, index = load_test_sample()
    position = int(np.flatnonzero(split.labels.numpy() == 1)[0])  # a trouser
    photo = tmp_path / "trouser.jpg"
    Image.fromarray(rephotograph(split.inputs[position, 0].numpy(), np.random.default_rng(5))).save(photo, quality=80)
    out = pkd_ok("predict", str(fashion_run.path), str(photo)).stdout
    ensemble, spec = load_ensemble(fashion_run), split.spec
    x = prepare_image(spec, load_image_file(photo))  # the picture path the Playground's upload takes
    with torch.no_grad():
        expected = spec.class_names[int(ensemble.all_prefixes(spec.normalize(x[None]))[-1].argmax())]
    assert re.search(rf"prediction: {re.escape(expected)}\b", out), out
    Image.new("RGB", (120, 90), (235, 230, 225)).save(tmp_path / "table.png")  # a table with nothing on it
    proc = pkd("predict", str(fashion_run.path), str(tmp_path / "table.png"))
    assert proc.returncode == 2 and "no object found" in proc.stdout


def test_the_classroom_config_trains_end_to_end(tmp_path: Path, fashion_run: Run) -> None:
    run_dir = tmp_path / "classroom"
    teacher = f"teacher.checkpoint={fashion_run.teacher_path()}"  # the config's own (the shipped run's) if shipped
    # the config as shipped, on the first 5,000 training images (the whole set: 8 minutes of a loaded CI machine)
    pkd_ok("train", "--config", str(ROOT / "configs" / "fashion-mnist-quick.yaml"), "--run-dir", str(run_dir),
           "--no-progress", teacher, "data.train_limit=5000", env=child_env(OMP_NUM_THREADS="1"), timeout=1800)
    run = Run(run_dir)
    rows, summary = run.prefix_table(), run.summary()
    assert run.state() == "done" and len(rows) == 3 and summary["dataset"] == "fashion_mnist"
    ours, theirs = load_teacher(run).state_dict(), load_teacher(fashion_run).state_dict()
    assert all(torch.equal(ours[key], theirs[key]) for key in theirs)  # that very teacher
    assert rows[-1]["prefix_acc"] > rows[0]["prefix_acc"] > 0.3  # real learning on real clothes (chance: 0.1)
    assert rows[-1]["share_of_teacher"] < 0.1
