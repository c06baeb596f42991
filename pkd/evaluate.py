"""Measuring a run: logits and accuracies of models on a split, the per-prefix table (prefix.csv), the run's
summary and the figures it gains at the end of a run (early exit via pkd.anytime, the video figures). Training and
`pkd eval` build their rows and end-of-run figures here, the same way.

Shapes: N samples in a split, C classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from pkd.anytime import anytime_curve, anytime_figures, combiner_figures, monotonicity_shares
from pkd.combiners import native_combiner, prefix_probs
from pkd.artifacts import load_ensemble, load_teacher
from pkd.config import RunConfig, saved_run_config
from pkd.data import DatasetSpec, Split, resolve_data_root
from pkd.data.moving_mnist import digit_of, reverse_clips
from pkd.data.run_data import load_run_data
from pkd.drawn import cached_drawn_digits
from pkd.photos import PER_CLASS as PHOTO_PER_CLASS
from pkd.photos import SEED as PHOTO_SEED
from pkd.photos import photo_set
from pkd.distributed import SINGLE, World, gather_rows, shard_range
from pkd.flops import model_cost
from pkd.models.ensemble import Ensemble, PrefixSums
from pkd.runs import Run
from pkd.runs.schema import (DrawnFigures, PhotoFigures, PrefixRow, RobustnessSet, Summary, TeacherFigures,
                             TeacherTest, VideoFigures)
from pkd.stats import mcnemar

EVAL_BATCH = 1000  # samples per forward pass on an accelerator
# ... and on the CPU: batches of 1,000 MNIST images or clips allocate activations of hundreds of MB per pass, which
# the kernel zero-fills page by page; 32 costs 2.3x less CPU time for the MNIST teacher and 1.6x less for the clip
# teacher (1 thread, same logits bit for bit)
CPU_EVAL_BATCH = 32
REPORTED_SPLITS = ("val", "test")  # accuracies in prefix.csv; the train split is never reported
DRAWN_PER_DIGIT, DRAWN_SEED = 100, 0  # the drawn-digit robustness set `pkd eval` measures MNIST runs on


@torch.no_grad()
def predict_logits(model: nn.Module, data_spec: DatasetSpec, inputs: torch.Tensor, device: torch.device,
                   world: World = SINGLE) -> torch.Tensor:
    """Logits of `model` on raw inputs in [0, 1] (N, *sample_shape), in eval mode and batches. Returns (N, C) on CPU.

    Across ranks each computes its contiguous shard and all get the whole (N, C): every sample exactly once.
    """
    model.eval()
    start, stop = shard_range(len(inputs), world)
    out, batch = [], eval_batch(device)
    for i in range(start, stop, batch):
        x = data_spec.normalize(inputs[i:min(i + batch, stop)]).to(device)
        out.append(model(x).float().cpu())
    part = torch.cat(out) if out else torch.zeros(0, data_spec.num_classes)
    return gather_rows(part, len(inputs), world)


def eval_batch(device: torch.device) -> int:
    """Samples per forward pass when measuring on `device` (CPU_EVAL_BATCH on the CPU, else EVAL_BATCH)."""
    return CPU_EVAL_BATCH if torch.device(device).type == "cpu" else EVAL_BATCH


def accuracy(log_probs_or_logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of rows whose argmax is the label: exactly correct / total (nan for no rows)."""
    if not len(labels):
        return float("nan")
    return int((log_probs_or_logits.argmax(dim=-1) == labels).sum()) / len(labels)


def split_accuracies(split_name: str, sums: PrefixSums, logits: torch.Tensor, labels: torch.Tensor,
                     before: torch.Tensor | None = None) -> dict:
    """The prefix's and the newest student's own accuracy on one split (test: prefix_acc, val: prefix_val_acc);
    on test, given `before` (N, C), the prefix's log-probabilities without the newest student, also the step's
    conditional monotonicity shares (PrefixRow.TRUE_PROB_DROP, RIGHT_TO_WRONG)."""
    tag = "" if split_name == "test" else f"{split_name}_"
    out = {f"prefix_{tag}acc": accuracy(sums.log_probs(), labels), f"solo_{tag}acc": accuracy(logits, labels)}
    if split_name == "test" and before is not None:
        drops, flips = monotonicity_shares(torch.stack([before, sums.log_probs()]).exp(), labels)
        out.update({PrefixRow.TRUE_PROB_DROP: drops[0], PrefixRow.RIGHT_TO_WRONG: flips[0]})
    return out


def before_adding(sums: PrefixSums) -> torch.Tensor | None:
    """The prefix's log-probabilities (N, C) before the next student joins (None before the first)."""
    return sums.log_probs() if sums.k else None


def prefix_row(k: int, arch: str, student: nn.Module, data_spec: DatasetSpec, previous: list[dict],
               teacher_flops: int, prev_scale: float, accuracies: dict) -> dict:
    """Row k of prefix.csv: the student's size and FLOPs, the prefix's cumulative FLOPs, its accuracies."""
    flops, params = model_cost(student, data_spec.sample_shape)
    cumulative = (previous[-1][PrefixRow.CUMULATIVE_FLOPS] if previous else 0) + flops
    return {PrefixRow.K: k, PrefixRow.ARCH: arch, PrefixRow.PARAMS: params, PrefixRow.STUDENT_FLOPS: flops,
            PrefixRow.CUMULATIVE_FLOPS: cumulative, PrefixRow.SHARE_OF_TEACHER: cumulative / teacher_flops,
            PrefixRow.PREV_SCALE: prev_scale, **accuracies}


def teacher_row(arch: str, teacher: nn.Module, data_spec: DatasetSpec, logits: dict[str, torch.Tensor],
                splits: dict[str, Split]) -> dict:
    """The teacher's FLOPs, parameters and accuracies (summary.json's "teacher")."""
    flops, params = model_cost(teacher, data_spec.sample_shape)
    return {TeacherFigures.ARCH: arch, TeacherFigures.FLOPS: flops, TeacherFigures.PARAMS: params,
            TeacherFigures.VAL_ACC: accuracy(logits["val"], splits["val"].labels),
            TeacherFigures.TEST_ACC: accuracy(logits["test"], splits["test"].labels)}


def run_summary(cfg: RunConfig, teacher: dict, rows: list[dict], k_planned: int) -> dict:
    """summary.json without the anytime curve (added once every student is trained)."""
    return {Summary.NAME: cfg.name, Summary.DATASET: cfg.data.dataset, Summary.MODE: cfg.distill.mode,
            Summary.K_PLANNED: k_planned, Summary.FLOPS_UNIT: "FLOPs per sample (2 per multiply-add)",
            Summary.TEACHER: teacher, Summary.PREFIXES: rows}


def evaluate_run(run: Run, device: torch.device | str = "cpu", drawn_per_digit: int = DRAWN_PER_DIGIT) -> dict:
    """Recompute every figure of a run from its saved weights; rewrite prefix.csv and summary.json.

    The summary is the one training writes (teacher row, prefixes, and once every planned student is trained the
    early-exit curve, val-fitted budgets and AUC) plus, for MNIST runs, accuracies on the drawn-digit set, and for
    Fashion-MNIST runs (a spec with ``photos``) on the re-photographed set (``drawn_per_digit`` 0 skips both).
    """
    cfg = saved_run_config(run.config())
    device = torch.device(device)
    data_spec, splits = load_run_data(cfg, REPORTED_SPLITS)  # no training split: a 50,000-clip one is 4 GB
    ensemble = load_ensemble(run, device=device)
    teacher = load_teacher(run, device=device)
    logits = {name: predict_logits(teacher, data_spec, splits[name].inputs, device) for name in REPORTED_SPLITS}
    teacher_figures = teacher_row(cfg.teacher.arch, teacher.cpu(), data_spec, logits, splits)
    rows, student_logits = prefix_rows(ensemble, cfg.students.arch, data_spec, splits, teacher_figures["flops"],
                                       device)
    run.write_prefix_table(rows)
    summary = run_summary(cfg, teacher_figures, rows, len(cfg.students.schedule))
    cpu_forward = (logits["test"], student_logits["test"]) if device.type == "cpu" else None
    summary.update(end_of_run_figures(summary, ensemble, teacher, data_spec, splits, student_logits, logits["test"],
                                      cpu_forward))
    if cfg.data.dataset == "mnist" and drawn_per_digit > 0:
        summary["drawn"] = drawn_figures(teacher, ensemble.cpu(), data_spec, drawn_per_digit)
    if data_spec.photos and drawn_per_digit > 0:
        summary[Summary.PHOTOS] = photo_figures(teacher, ensemble.cpu(), data_spec, splits["test"])
    run.write_summary(summary)
    return summary


def end_of_run_figures(summary: dict, ensemble: Ensemble, teacher: nn.Module, data_spec: DatasetSpec,
                       splits: dict[str, Split], student_logits: dict[str, list[torch.Tensor]],
                       teacher_test_logits: torch.Tensor,
                       cpu_forward: tuple[torch.Tensor, list[torch.Tensor]] | None = None) -> dict:
    """The figures summary.json gains at the end of a run, computed the same way by training and `pkd eval`.

    Once every planned student is trained (as many prefix rows as summary["k_planned"]): "anytime" (the
    confidence early-exit curve on test), "anytime_val_fitted", "anytime_auc", "combiners" (pkd.anytime) and
    "teacher_tests" (each prefix against the teacher, teacher_tests). For a clip
    dataset: "video" (the reversal test and digit identity, video_figures). Moves the ensemble (and for a clip
    dataset the teacher) to the CPU.

    Args:
        summary: the run's summary so far (run_summary: its "teacher", "prefixes" and "k_planned").
        ensemble: the saved students.
        teacher: the run's teacher.
        data_spec: the run's dataset.
        splits: at least "val" and "test".
        student_logits: {"val": K tensors (N, C), "test": K tensors (N, C)}, every student's logits.
        teacher_test_logits: (N, C) the teacher's logits on the test split.
        cpu_forward: the teacher's (N, C) and the students' K x (N, C) test logits when the caller computed them on
            the CPU (`pkd eval` there): video_figures reuses them instead of running the models again.
    """
    out = {}
    ensemble.cpu()
    if len(summary[Summary.PREFIXES]) == summary[Summary.K_PLANNED]:
        labels = {name: splits[name].labels for name in REPORTED_SPLITS}
        out[Summary.ANYTIME] = anytime_curve(ensemble, student_logits["test"], labels["test"])
        out.update(anytime_figures(ensemble, student_logits, labels, summary))
        out[Summary.COMBINERS] = combiner_figures(ensemble, student_logits, labels)
        out[Summary.TEACHER_TESTS] = teacher_tests(ensemble, student_logits["test"], teacher_test_logits,
                                                   labels["test"])
    if data_spec.kind == "clip":
        out[Summary.VIDEO] = video_figures(teacher.cpu(), ensemble, data_spec, splits["test"], cpu_forward)
    return out


def teacher_tests(ensemble: Ensemble, test_logits: list[torch.Tensor], teacher_test_logits: torch.Tensor,
                  labels: torch.Tensor) -> list[dict]:
    """summary.json's "teacher_tests": McNemar's exact test of each prefix k (its own combiner) against the teacher
    on the test samples. test_logits: K tensors (N, C); teacher_test_logits: (N, C); labels: (N,)."""
    prefix_classes = prefix_probs(test_logits, native_combiner(ensemble.mode), ensemble.prev_scales).argmax(-1)
    teacher_right = (teacher_test_logits.argmax(-1) == labels).tolist()
    out = []
    for k, classes in enumerate(prefix_classes, start=1):  # (N,) each
        test = mcnemar((classes == labels).tolist(), teacher_right)
        out.append({TeacherTest.K: k, TeacherTest.N: test.n, TeacherTest.PREFIX_ONLY: test.a_only,
                    TeacherTest.TEACHER_ONLY: test.b_only, TeacherTest.DIFF: test.diff,
                    TeacherTest.P_VALUE: test.p_value, TeacherTest.VERDICT: test.verdict})
    return out


def prefix_rows(ensemble: Ensemble, arch: str, data_spec: DatasetSpec, splits: dict[str, Split],
                teacher_flops: int, device: torch.device) -> tuple[list[dict], dict[str, list[torch.Tensor]]]:
    """prefix.csv's rows (each prefix's and student's accuracy on the reported splits, sizes and FLOPs) and every
    student's logits on those splits ({split: K tensors (N, C)}, for the early-exit figures)."""
    sums = {name: PrefixSums(ensemble.mode) for name in REPORTED_SPLITS}
    rows: list[dict] = []
    student_logits: dict[str, list[torch.Tensor]] = {name: [] for name in REPORTED_SPLITS}
    for j, student in enumerate(ensemble.students):
        accuracies = {}
        for name in REPORTED_SPLITS:
            logits = predict_logits(student, data_spec, splits[name].inputs, device)  # (N, C)
            student_logits[name].append(logits)
            before = before_adding(sums[name])
            sums[name].add(logits, ensemble.prev_scales[j])
            accuracies.update(split_accuracies(name, sums[name], logits, splits[name].labels, before))
        rows.append(prefix_row(j + 1, arch, student.cpu(), data_spec, rows, teacher_flops,
                               ensemble.prev_scales[j], accuracies))
        student.to(device)
    return rows, student_logits


def drawn_figures(teacher: nn.Module, ensemble: Ensemble, data_spec: DatasetSpec, per_digit: int,
                  seed: int = DRAWN_SEED) -> dict:
    """summary.json's "drawn": teacher and prefix 1..K accuracies on the drawn-digit robustness set (pkd.drawn)."""
    images, labels = cached_drawn_digits(per_digit, seed, resolve_data_root())  # (N, 1, 28, 28), (N,)
    return {DrawnFigures.PER_DIGIT: per_digit, DrawnFigures.SEED: seed,
            **set_accuracies(teacher, ensemble, data_spec, images, labels)}


def photo_figures(teacher: nn.Module, ensemble: Ensemble, data_spec: DatasetSpec, test: Split,
                  per_class: int = PHOTO_PER_CLASS, seed: int = PHOTO_SEED) -> dict:
    """summary.json's "photos": teacher and prefix 1..K accuracies on the re-photographed test images (pkd.photos),
    read through the app's picture path."""
    images, labels = photo_set(test, per_class, seed)  # (N, 1, 28, 28), (N,)
    return {PhotoFigures.PER_CLASS: per_class, PhotoFigures.SEED: seed,
            **set_accuracies(teacher, ensemble, data_spec, images, labels)}


def set_accuracies(teacher: nn.Module, ensemble: Ensemble, data_spec: DatasetSpec, images: torch.Tensor,
                   labels: torch.Tensor) -> dict:
    """The size of a robustness set (images (N, ...) in [0, 1], labels (N,)) and the teacher's and each prefix
    1..K's accuracy on it, on the CPU: the part "drawn" and "photos" share (RobustnessSet's keys)."""
    cpu = torch.device("cpu")
    sums, prefix_acc = PrefixSums(ensemble.mode), []
    for student, scale in zip(ensemble.students, ensemble.prev_scales):
        sums.add(predict_logits(student, data_spec, images, cpu), scale)
        prefix_acc.append(accuracy(sums.log_probs(), labels))
    return {RobustnessSet.N: len(labels),
            RobustnessSet.TEACHER_ACC: accuracy(predict_logits(teacher.cpu(), data_spec, images, cpu), labels),
            RobustnessSet.PREFIX_ACC: prefix_acc}


def video_figures(teacher: nn.Module, ensemble: Ensemble, data_spec: DatasetSpec, split: Split,
                  cpu_forward: tuple[torch.Tensor, list[torch.Tensor]] | None = None) -> dict:
    """summary.json's "video" for a clip dataset (Moving MNIST's classes, 6 * digit + motion), on one split:

    - reversal_change: the share of clips whose predicted class changes when the clip is played backwards
      (reverse_clips). ViFi-CLIP's temporal mean is blind to order, so the teacher's is exactly 0; a student that
      reads the motion right changes its answer on every clip (its reverse has the reversed class).
    - digit_acc: accuracy of the digit part of the predicted class (digit_of), what order blindness leaves alone.
    - base_acc / novel_acc / hm, for a spec with novel_classes (ViFi-CLIP's base-to-novel protocol): accuracy on
      the base classes' test clips choosing among the base classes only, the same for the novel ones, and their
      harmonic mean.
    Teacher and every prefix 1..K (teacher_*, prefix_* lists); computed on the CPU. `cpu_forward`: the teacher's
    (N, C) and the students' K x (N, C) logits on `split` as it is, already computed on the CPU (the same figures,
    the models run on the reversed clips only).
    """
    cpu = torch.device("cpu")
    backwards = reverse_clips(split.inputs)  # (N, T, C, H, W)
    digits = digit_of(split.labels)  # (N,)

    def figures(forward: torch.Tensor, backward: torch.Tensor) -> tuple[float, float]:
        pred, pred_back = forward.argmax(-1), backward.argmax(-1)  # (N,) each
        return float((pred != pred_back).double().mean()), float((digit_of(pred) == digits).double().mean())

    teacher_logits, student_logits = cpu_forward or (predict_logits(teacher, data_spec, split.inputs, cpu), [
        predict_logits(student, data_spec, split.inputs, cpu) for student in ensemble.students])  # (N, C), K x (N, C)
    teacher_change, teacher_digit = figures(teacher_logits, predict_logits(teacher, data_spec, backwards, cpu))
    sums = {"forward": PrefixSums(ensemble.mode), "backward": PrefixSums(ensemble.mode)}
    change, digit, b2n = [], [], []
    for student, scale, forward in zip(ensemble.students, ensemble.prev_scales, student_logits, strict=True):
        sums["forward"].add(forward, scale)
        sums["backward"].add(predict_logits(student, data_spec, backwards, cpu), scale)
        c, d = figures(sums["forward"].log_probs(), sums["backward"].log_probs())
        change.append(c)
        digit.append(d)
        b2n.append(base_to_novel(sums["forward"].log_probs(), split.labels, data_spec.novel_classes))
    out = {VideoFigures.SPLIT: split.split or "test", VideoFigures.N: len(split.labels),
           VideoFigures.TEACHER_REVERSAL_CHANGE: teacher_change, VideoFigures.TEACHER_DIGIT_ACC: teacher_digit,
           VideoFigures.PREFIX_REVERSAL_CHANGE: change, VideoFigures.PREFIX_DIGIT_ACC: digit}
    if data_spec.novel_classes:
        teacher_b2n = base_to_novel(teacher_logits, split.labels, data_spec.novel_classes)
        for key in ("base_acc", "novel_acc", "hm"):
            out[f"teacher_{key}"], out[f"prefix_{key}"] = teacher_b2n[key], [row[key] for row in b2n]
    return out


def base_to_novel(scores: torch.Tensor, labels: torch.Tensor, novel: Sequence[int]) -> dict[str, float]:
    """ViFi-CLIP's base-to-novel figures from (N, C) scores: base clips classified among the base classes only,
    novel clips among the novel ones, and the harmonic mean 2*b*n / (b + n). Empty when ``novel`` is."""
    if not novel:
        return {}
    is_novel = torch.zeros(scores.shape[1], dtype=torch.bool)
    is_novel[list(novel)] = True
    accs = {}
    for key, side in (("base_acc", ~is_novel), ("novel_acc", is_novel)):
        rows = side[labels]  # (N,) the clips of this side's classes
        masked = scores[rows].masked_fill(~side, float("-inf"))  # (n, C) the other side's classes out
        accs[key] = float((masked.argmax(-1) == labels[rows]).double().mean()) if rows.any() else 0.0
    b, n = accs["base_acc"], accs["novel_acc"]
    return {**accs, "hm": 2 * b * n / (b + n) if b + n > 0 else 0.0}
