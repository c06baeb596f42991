"""What the command line shows: logging set-up, the training progress bars and the printed tables.

Library modules only log (`logging.getLogger(__name__)`) and never print; the CLI's commands and the training
process (pkd.train.job) print through this module. Nothing heavy is imported here (no torch), so that
`python -m pkd --help` and `pkd runs` start quickly.
"""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from pkd.procs import open_console

def setup_logging(log_file: Path | None = None, verbose: bool = False, rank: int = 0) -> None:
    """Log to stderr (and `log_file`); ranks after 0 mark their lines with their rank."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    where = f" [rank {rank}]" if rank else ""
    fmt = logging.Formatter(f"%(asctime)s %(levelname)s{where} %(name)s: %(message)s", "%H:%M:%S")
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(fmt)
    root.addHandler(stream)
    if log_file is not None:
        # never through a link, never a FIFO (it would block): pkd.procs.open_console's rules
        file_handler = logging.StreamHandler(io.TextIOWrapper(open_console(log_file), encoding="utf-8",
                                                              line_buffering=True))
        file_handler.setFormatter(fmt)
        root.addHandler(file_handler)


class Progress:
    """tqdm bar per stage (teacher, student k), fed by the training loop's progress callback."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None
        self.key = None

    def __call__(self, info: dict) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        key = (info["stage"], info["student"])
        if key != self.key:
            self.close()
            label = "teacher" if info["stage"] == "teacher" else f"student {info['student']}"
            self.bar = tqdm(total=100, desc=label, unit="%", leave=True, file=sys.stderr,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")
            self.key = key
        self.bar.n = int(100 * info["progress"])
        from pkd.runs.schema import Metric  # here: this module loads without torch (pkd.runs imports it)

        val_acc = f"val{Metric.ACC_SUFFIX}"
        post = {"epoch": f"{info['epoch']}/{info['epochs']}"}
        if "loss" in info:
            post["loss"] = f"{info['loss']:.4f}"
        if val_acc in info:
            post[val_acc] = f"{info[val_acc]:.4f}"
        self.bar.set_postfix(post, refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def print_summary(summary: dict) -> None:
    """The table `pkd train` and `pkd eval` print: the teacher, then every prefix k's FLOPs and accuracy."""
    from pkd.runs.schema import PrefixRow, Summary, TeacherFigures

    teacher = summary.get(Summary.TEACHER, {})
    print(f"teacher {teacher.get(TeacherFigures.ARCH)}: {teacher.get(TeacherFigures.FLOPS, 0):,} FLOPs/sample, "
          f"test acc {teacher.get(TeacherFigures.TEST_ACC, float('nan')):.4f}")
    print(f"{'k':>3} {'student FLOPs':>14} {'cumulative':>12} {'% teacher':>10} {'prefix acc':>11} {'solo acc':>9}")
    for row in summary.get(Summary.PREFIXES, []):
        print(f"{row[PrefixRow.K]:>3} {row[PrefixRow.STUDENT_FLOPS]:>14,} {row[PrefixRow.CUMULATIVE_FLOPS]:>12,} "
              f"{100 * row[PrefixRow.SHARE_OF_TEACHER]:>9.2f}% {row[PrefixRow.PREFIX_ACC]:>11.4f} "
              f"{row[PrefixRow.SOLO_ACC]:>9.4f}")


def print_budgets(summary: dict) -> None:
    """`pkd eval`'s lines after the table: the early exit at the val-fitted budgets, the AUC, the reversal test and
    digit identity of clip runs, the drawn digits."""
    from pkd.runs.schema import AnytimeAuc, Summary, TeacherFigures, ValFittedPoint as Point

    teacher_flops = summary[Summary.TEACHER][TeacherFigures.FLOPS]
    for point in summary.get(Summary.ANYTIME_VAL_FITTED, []):
        rule = ("every student" if point[Point.CONFIDENCE] is None
                else f"exit at confidence {point[Point.CONFIDENCE]:.4f}")
        print(f"early exit, budget {100 * point[Point.BUDGET] / teacher_flops:5.2f}% of the teacher ({rule}, fitted "
              f"on val): test acc {point[Point.ACC]:.4f} at {100 * point[Point.MEAN_FLOPS] / teacher_flops:.2f}% "
              "on average")
    auc = summary.get(Summary.ANYTIME_AUC, {})
    if auc.get(AnytimeAuc.TEST) is not None:
        print(f"anytime AUC (1%..100% of the teacher's FLOPs, log scale): val {auc[AnytimeAuc.VAL]:.4f}, "
              f"test {auc[AnytimeAuc.TEST]:.4f}")
    if summary.get(Summary.VIDEO):
        _print_video(summary[Summary.VIDEO])
    drawn = summary.get(Summary.DRAWN)
    if drawn:
        _print_drawn(drawn)
    photos = summary.get(Summary.PHOTOS)
    if photos:
        _print_photos(photos)


def _print_video(video: dict) -> None:
    """print_budgets' lines of a clip run: the reversal test, digit identity, base-to-novel (with novel classes)."""
    from pkd.runs.schema import VideoFigures as Video

    print(f"reversal test ({video[Video.N]} {video[Video.SPLIT]} clips played backwards; share whose class "
          f"changes): teacher {video[Video.TEACHER_REVERSAL_CHANGE]:.4f}, prefixes "
          + " ".join(f"{k}:{v:.4f}" for k, v in enumerate(video[Video.PREFIX_REVERSAL_CHANGE], start=1)))
    print(f"digit identity (the digit of the predicted class): teacher {video[Video.TEACHER_DIGIT_ACC]:.4f}, "
          "prefixes " + " ".join(f"{k}:{v:.4f}" for k, v in enumerate(video[Video.PREFIX_DIGIT_ACC], start=1)))
    if Video.TEACHER_HM in video:
        print("base-to-novel (base / novel / harmonic mean): teacher " + "/".join(
            f"{video[key]:.4f}" for key in (Video.TEACHER_BASE_ACC, Video.TEACHER_NOVEL_ACC, Video.TEACHER_HM))
            + ", prefixes " + " ".join(f"{k}:{b:.4f}/{n:.4f}/{h:.4f}" for k, (b, n, h) in enumerate(
                zip(video[Video.PREFIX_BASE_ACC], video[Video.PREFIX_NOVEL_ACC], video[Video.PREFIX_HM]), start=1)))


def _print_photos(photos: dict) -> None:
    """print_budgets' line of summary.json's accuracies on the re-photographed set."""
    from pkd.runs.schema import PhotoFigures as Photos

    print(f"re-photographed test images ({photos[Photos.N]}, pkd.photos seed {photos[Photos.SEED]}): teacher "
          f"{photos[Photos.TEACHER_ACC]:.4f}, prefixes "
          + " ".join(f"{k}:{acc:.4f}" for k, acc in enumerate(photos[Photos.PREFIX_ACC], start=1)))


def _print_drawn(drawn: dict) -> None:
    """print_budgets' line of summary.json's drawn-digit accuracies."""
    from pkd.runs.schema import DrawnFigures as Drawn

    print(f"drawn digits ({drawn[Drawn.N]}, pkd.drawn seed {drawn[Drawn.SEED]}): teacher "
          f"{drawn[Drawn.TEACHER_ACC]:.4f}, prefixes "
          + " ".join(f"{k}:{acc:.4f}" for k, acc in enumerate(drawn[Drawn.PREFIX_ACC], start=1)))


def print_front(points: list[dict], split: str) -> None:
    """The Pareto front `pkd sweep` and `pkd pareto` print: one line per (run, k) point, cheapest first."""
    from pkd.runs import printable

    print(f"Pareto front of (cumulative FLOPs, {split} accuracy) over every prefix k of every run:")
    print(f"{'cumulative FLOPs':>16} {'% teacher':>10} {'val acc':>8} {'test acc':>8} {'k':>3}  run")
    for p in points:
        share = f"{100 * p['share']:.2f}%" if isinstance(p.get("share"), (int, float)) else "-"
        accs = [f"{p[key]:.4f}" if isinstance(p.get(key), (int, float)) else "-" for key in ("val_acc", "test_acc")]
        print(f"{p['flops']:>16,} {share:>10} {accs[0]:>8} {accs[1]:>8} {p['k']:>3}  {printable(p['run'], 300)}")


def print_runs(runs: list) -> None:
    """`pkd runs`' table: one line per run (pkd.runs.Run) with its state, dataset, mode, students done of planned,
    teacher and final accuracy, share of the teacher's FLOPs and path (and its problem, if it has one)."""
    from pkd.runs import printable
    from pkd.runs.schema import RunInfo as Info

    print(f"{'state':<8} {'dataset':<8} {'mode':<12} {'K':>5} {'teacher':>8} {'final':>7} {'% teacher':>10}  path")
    def number(value, fmt: str) -> str:  # "-" for figures a run does not have (yet)
        return format(value, fmt) if isinstance(value, (int, float)) else "-"

    for run in runs:
        info = run.info()
        share = f"{100 * info[Info.FINAL_SHARE]:.2f}%" if isinstance(info[Info.FINAL_SHARE], (int, float)) else "-"
        print(f"{info[Info.STATE]:<8} {info[Info.DATASET]:<8} {info[Info.MODE]:<12} "
              f"{info[Info.K_DONE]:>2}/{info[Info.K_PLANNED]:<2} "
              f"{number(info[Info.TEACHER_ACC], '.4f'):>8} {number(info[Info.FINAL_ACC], '.4f'):>7} {share:>10}  "
              f"{printable(info[Info.PATH], 400)}" + (f"  problem: {info[Info.PROBLEM]}" if info[Info.PROBLEM] else ""))


def print_prediction(pred: Any, names: Sequence[str], students: int, top: Any, detail: str = "") -> None:
    """`pkd predict`'s answer for one input (pkd.models.ensemble's prediction `pred` of a batch of one): the class,
    its probability, the students and FLOPs it took (then `detail`), and the `top` class indices' probabilities."""
    probs = pred.probs[0]
    print(f"prediction: {names[int(pred.classes[0])]} (p={float(probs.max()):.3f}) using {int(pred.k_used[0])} of "
          f"{students} students, {int(pred.flops[0]):,} FLOPs{detail}")
    print("top 3: " + ", ".join(f"{names[int(i)]} {float(probs[i]):.3f}" for i in top))


def print_per_frame(per_frame: Any, flops: list[list[int]], names: Sequence[str], shown: int) -> None:
    """`pkd predict --per-frame`'s table: the answer of prefixes 1..`shown` after every frame, from `per_frame`
    (T, K, C) probabilities and `flops` (T x K, the FLOPs so far)."""
    print(f"{'frame':>5}  {'students':<8}  {'answer so far':<16}  {'p':>5}  {'FLOPs so far':>12}")
    for t in range(per_frame.shape[0]):
        for k in range(shown):
            p = per_frame[t, k]
            who = "1" if k == 0 else f"1-{k + 1}"
            print(f"{t + 1:>5}  {who:<8}  {names[int(p.argmax())]:<16}  {float(p.max()):5.3f}  "
                  f"{flops[t][k]:>12,}")
