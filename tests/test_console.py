"""pkd.console: the CLI's logging set-up and its printed tables (pure functions of records; no run needed)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import torch

from pkd.console import Progress, print_front, print_per_frame, print_prediction, setup_logging


def test_a_rank_after_0_marks_its_log_lines_and_a_file_gets_them_too(tmp_path, capsys):
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        setup_logging(tmp_path / "train.log", verbose=True, rank=1)
        logging.getLogger("pkd.probe").debug("hello")
        for handler in root.handlers:
            handler.flush()
        assert root.level == logging.DEBUG and len(root.handlers) == 2
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    line = (tmp_path / "train.log").read_text().strip()
    assert line.endswith("DEBUG [rank 1] pkd.probe: hello") and line in capsys.readouterr().err


def test_a_disabled_progress_bar_shows_nothing(capsys):
    progress = Progress(enabled=False)
    progress({"stage": "teacher", "student": 0, "progress": 0.5, "epoch": 1, "epochs": 2})
    progress.close()
    assert capsys.readouterr() == ("", "")


def test_the_front_shows_a_missing_figure_as_a_dash(capsys):
    print_front([{"flops": 12345, "share": 0.25, "val_acc": 0.9, "test_acc": None, "k": 2, "run": "/runs/a"}], "val")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Pareto front of (cumulative FLOPs, val accuracy)")
    assert lines[2].split() == ["12,345", "25.00%", "0.9000", "-", "2", "/runs/a"]


def test_a_prediction_and_its_answers_frame_by_frame(capsys):
    probs = torch.tensor([[0.1, 0.7, 0.2]])
    pred = SimpleNamespace(probs=probs, classes=torch.tensor([1]), k_used=torch.tensor([2]), flops=torch.tensor([1500]))
    print_prediction(pred, ["a", "b", "c"], 3, torch.argsort(probs[0], descending=True), detail=", all 4 frames")
    per_frame = torch.tensor([[[0.6, 0.4, 0.0], [0.2, 0.8, 0.0]]])  # (T, K, C) = (1, 2, 3)
    print_per_frame(per_frame, [[10, 30]], ["a", "b", "c"], shown=2)
    assert capsys.readouterr().out.splitlines() == [
        "prediction: b (p=0.700) using 2 of 3 students, 1,500 FLOPs, all 4 frames",
        "top 3: b 0.700, c 0.200, a 0.100",
        "frame  students  answer so far         p  FLOPs so far",
        "    1  1         a                 0.600            10",
        "    1  1-2       b                 0.800            30"]
