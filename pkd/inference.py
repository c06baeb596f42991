"""One input through a run's models: what the app's Playground and Clips pages and `pkd predict` show.

A digit (`predict_digit` -> DigitReport): every prefix's answer, each student's own vote and the teacher's; where
the anytime ensemble stops under a FLOP budget or a confidence threshold (`anytime_digit`).

What distillation does with that image (`digit_soft_targets`): the teacher's probabilities at temperature T beside
the student's and the loss between them, computed by pkd.kd's loss itself. How a student reads it
(`read_tokens`): its answer and its memory (the first layer's SSM state) after every token, fed one at a time
through the recurrent `Mamba.step`.

A clip (`clip_report` -> ClipReport): the students read a clip in time order, so their answer exists after every
frame: `stream_prefix_probs` feeds the frames one at a time through each student's streaming API
(`MambaClassifier.start_stream` / `stream`), so the answer after frame t is computed from frames 1..t only, and
equals the full forward pass of those t frames. The ViFi-CLIP teacher averages its frame embeddings, so it answers
only for the whole clip, the same both ways round.

Inputs come from `pkd.preprocess` (pictures, canvas drawings, clip files), in [0, 1]; normalising is done here.

Letters: T frames, K students, C classes, Ch image channels, H/W image height/width, S frame side (H = W = S),
n tokens per frame, F token features.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn as nn

from pkd.data.moving_mnist import reverse_clips
from pkd.data.spec import DatasetSpec
from pkd.flops import count_flops
from pkd.kd import SoftTargets, soft_targets
from pkd.models.ensemble import Ensemble, PrefixSums

__all__ = ["ClipReport", "DigitReport", "TokenReading", "anytime_digit", "clip_report", "digit_soft_targets",
           "frame_flops", "predict_digit", "read_tokens", "stream_logits", "stream_prefix_probs", "teacher_probs"]


# --------------------------------------------------------------------------------------------- one image

@dataclasses.dataclass
class DigitReport:
    """Everything the Playground shows for one image.

    Attributes:
        prefix_probs: K lists of C probabilities, the ensemble of students 1..k.
        student_probs: K lists of C probabilities, student k alone.
        cumulative_flops: FLOPs per sample of students 1..k, K values.
        share_of_teacher: cumulative FLOPs as a fraction of the teacher's, K values (None if unknown).
        teacher_probs: C probabilities of the teacher, or None without a teacher.
    """

    prefix_probs: list[list[float]]
    student_probs: list[list[float]]
    cumulative_flops: list[int]
    share_of_teacher: list[float | None]
    teacher_probs: list[float] | None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@torch.no_grad()
def predict_digit(
    ensemble: Ensemble,
    spec: DatasetSpec,
    image: torch.Tensor,
    teacher: torch.nn.Module | None = None,
    teacher_flops: int | None = None,
) -> DigitReport:
    """All K prefix predictions, each student's own vote and the teacher's answer for one image.

    Args:
        ensemble: the run's students (eval mode).
        spec: the dataset spec (normalisation).
        image: (C, H, W) pixels in [0, 1], e.g. from preprocess.prepare_canvas or a test split.
        teacher: the run's teacher, optional.
        teacher_flops: the teacher's FLOPs per sample (for the share of teacher FLOPs).

    Returns:
        The DigitReport.
    """
    x = spec.normalize(image[None].float())  # (1, C, H, W)
    prefixes = [lp.exp()[0].tolist() for lp in ensemble.all_prefixes(x)]  # K x (C,)
    solo = [torch.softmax(student(x), dim=-1)[0].tolist() for student in ensemble.students]  # K x (C,)
    cumulative = ensemble.cumulative_flops()
    share = [c / teacher_flops if teacher_flops else None for c in cumulative]
    teacher_probs = torch.softmax(teacher(x), dim=-1)[0].tolist() if teacher is not None else None
    return DigitReport(prefixes, solo, cumulative, share, teacher_probs)


@torch.no_grad()
def anytime_digit(
    ensemble: Ensemble,
    spec: DatasetSpec,
    image: torch.Tensor,
    flop_budget: float | None = None,
    confidence: float | None = None,
) -> dict:
    """Where the anytime ensemble stops for one image: Ensemble.predict with a FLOP budget and/or a threshold.

    Returns:
        {"class": int, "prob": float, "k_used": int, "flops": int}.
    """
    x = spec.normalize(image[None].float())  # (1, C, H, W)
    pred = ensemble.predict(x, flop_budget=flop_budget, confidence=confidence)
    cls = int(pred.classes[0])
    return {"class": cls, "prob": float(pred.probs[0, cls]), "k_used": int(pred.k_used[0]),
            "flops": int(pred.flops[0])}


@torch.no_grad()
def trained_logits(ensemble: Ensemble, x: torch.Tensor, k: int) -> torch.Tensor:
    """The logits student k's loss compares with the teacher's: in a residual ensemble the running sum E_k of
    students 1..k (student k learns to correct the sum), in an independent one student k's own z_k.

    Args:
        x: (B, Ch, H, W) normalised images. k: 1..K.
    Returns:
        (B, C) logits.
    """
    k = ensemble._check_k(k)
    if ensemble.mode != "residual":
        return ensemble.students[k - 1](x)  # (B, C)
    sums = PrefixSums(ensemble.mode)
    for student, scale in zip(ensemble.students[:k], ensemble.prev_scales[:k]):
        sums.add(student(x), scale)
    return sums.logits  # (B, C)


@torch.no_grad()
def digit_soft_targets(
    ensemble: Ensemble,
    spec: DatasetSpec,
    image: torch.Tensor,
    teacher: nn.Module,
    k: int,
    label: int,
    alpha: float,
    temperature: float,
) -> SoftTargets:
    """The distillation loss of student k on one image, part by part (pkd.kd.soft_targets on the run's models).

    Args:
        image: (Ch, H, W) pixels in [0, 1]. k: which student's loss (1..K). label: the true class.
        alpha, temperature: the loss's alpha and T (the run's own, or a learner's choice).
    """
    x = spec.normalize(image[None].float())  # (1, Ch, H, W)
    return soft_targets(trained_logits(ensemble, x, k)[0], teacher(x).float()[0], label, alpha, temperature)


@dataclasses.dataclass
class TokenReading:
    """A student reading one image token by token (rows of pixels, or patches).

    Attributes:
        probs: (L, C) the student's probabilities after tokens 1..t (row t), equal to its forward pass of them.
        states: (L, ED, N) its first layer's SSM state (its memory) after token t.
        tokens: "rows", "cols" or "patch": what a token is. per_token: rows (or columns) per token, or the patch side.
        stem: True when the tokens are cut from a conv stem's feature map rather than from the pixels.
    """

    probs: torch.Tensor
    states: torch.Tensor
    tokens: str
    per_token: int
    stem: bool = False


@torch.no_grad()
def read_tokens(student: nn.Module, spec: DatasetSpec, image: torch.Tensor) -> TokenReading:
    """Feed one image's tokens to a student one at a time through its recurrent state (``stream``: the first
    token fills the zero state, each later one is one ``Mamba.step``), keeping its answer and memory after each.

    Args:
        student: a MambaClassifier of images (eval mode). image: (Ch, H, W) pixels in [0, 1].
    """
    if not hasattr(student, "start_stream") or len(getattr(student, "image_shape", ())) != 3:
        raise ValueError(f"{type(student).__name__} does not read images token by token (no streaming API)")
    tokens = student.tokenize(spec.normalize(image[None].float()))  # (1, L, F)
    state, probs, states = student.start_stream(1), [], []
    for t in range(tokens.shape[1]):
        logits = student.stream(tokens[:, t:t + 1], state)[0, -1]  # (C,)
        probs.append(torch.softmax(logits.float(), dim=-1))
        states.append(state.params.key_value_memory_dict[0][1][0].clone())  # (ED, N) of layer 0
    layout = student.tokenizer
    per_token = layout.patch if layout.tokens == "patch" else layout.rows_per_token
    return TokenReading(torch.stack(probs), torch.stack(states), layout.tokens, int(per_token),
                        getattr(student, "stem", None) is not None)


# --------------------------------------------------------------------------------------------- one clip

@dataclasses.dataclass
class ClipReport:
    """Everything the Clips page shows for one clip (as given: reverse it first to ask about it backwards).

    Attributes:
        prefix_probs: (T, K, C) probabilities of students 1..k together after frames 1..t.
        cumulative_flops: T lists of K ints: FLOPs of students 1..k for the first t frames (see ``frame_flops``).
        teacher_probs: (C,) the teacher's probabilities on the whole clip, or None without a teacher.
        teacher_probs_reversed: (C,) the same on the clip played backwards, or None.
    """

    prefix_probs: torch.Tensor
    cumulative_flops: list[list[int]]
    teacher_probs: torch.Tensor | None = None
    teacher_probs_reversed: torch.Tensor | None = None

    @property
    def frames(self) -> int:
        return int(self.prefix_probs.shape[0])

    def teacher_order_blind(self) -> bool | None:
        """True when the teacher's answer on the reversed clip is its answer on the clip, to 1e-6 (None: no
        teacher): what ViFi-CLIP's temporal mean guarantees."""
        if self.teacher_probs is None or self.teacher_probs_reversed is None:
            return None
        return bool(torch.allclose(self.teacher_probs, self.teacher_probs_reversed, rtol=0.0, atol=1e-6))


def _check_clip(clip: torch.Tensor, spec: DatasetSpec) -> None:
    if spec.kind != "clip":
        raise ValueError(f"dataset '{spec.name}' takes images {spec.sample_shape}, not clips")
    if not torch.is_floating_point(clip) or tuple(clip.shape) != tuple(spec.sample_shape):
        raise ValueError(f"dataset '{spec.name}' takes one clip of shape {tuple(spec.sample_shape)}, got "
                         f"{tuple(clip.shape)} {clip.dtype}")


@torch.no_grad()
def stream_logits(student: nn.Module, clip: torch.Tensor) -> torch.Tensor:
    """A student's logits after each frame, fed one frame at a time through its streaming API.

    Args:
        student: a MambaClassifier of clips (T, Ch, S, S), eval mode.
        clip: (T, Ch, S, S) normalised frames.

    Returns:
        (T, C) logits; row t uses frames 1..t+1 only.
    """
    if not hasattr(student, "start_stream") or len(getattr(student, "image_shape", ())) != 4:
        raise ValueError(f"{type(student).__name__} does not read clips frame by frame (no streaming API)")
    state = student.start_stream(1)
    out = []
    for t in range(clip.shape[0]):
        tokens = student.frame_tokens(clip[t][None], clip[t - 1][None] if t else None)  # (1, n, F)
        out.append(student.stream(tokens, state)[:, -1])  # (1, n, C) -> (1, C) after the frame's last token
    return torch.cat(out)  # (T, C)


@torch.no_grad()
def stream_prefix_probs(ensemble: Ensemble, clip: torch.Tensor) -> torch.Tensor:
    """Every prefix's probabilities after every frame, computed frame by frame (no frame after t is read).

    Args:
        ensemble: a clip run's students.
        clip: (T, Ch, S, S) normalised frames.

    Returns:
        (T, K, C) probabilities: [t, k-1] is students 1..k together after frames 1..t+1; equal (to rounding) to
        the ensemble's full forward pass of the clip cut after frame t+1.
    """
    sums, out = PrefixSums(ensemble.mode), []
    for student, scale in zip(ensemble.students, ensemble.prev_scales):
        sums.add(stream_logits(student, clip), scale)  # the T frames as a batch of T answers (T, C)
        out.append(sums.log_probs().exp())  # (T, C)
    return torch.stack(out, dim=1)  # (T, K, C)


class _FirstFrames(nn.Module):
    """A student fed a clip's first t frames, for counting what they cost (frame differences included)."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.student.forward_tokens(self.student.tokenize_frames(frames))  # (1, t, Ch, S, S) -> (1, C)


def frame_flops(ensemble: Ensemble) -> list[list[int]]:
    """FLOPs of students 1..k for the first t frames of a clip, counted by pkd.flops on the forward pass of
    those t frames (after all T frames: the ensemble's cumulative FLOPs).

    Returns:
        T lists of K ints, [t-1][k-1] = FLOPs of students 1..k on frames 1..t.
    """
    per_student = []  # K lists of T
    for student in ensemble.students:
        frames, frame_shape = student.image_shape[0], student.image_shape[1:]  # T, (Ch, S, S)
        counted = _FirstFrames(student)
        per_student.append([int(count_flops(counted, (t, *frame_shape)).flops) for t in range(1, frames + 1)])
    frames = len(per_student[0])
    return [np.cumsum([per_student[j][t] for j in range(ensemble.k)]).astype(int).tolist() for t in range(frames)]


@torch.no_grad()
def teacher_probs(teacher: nn.Module, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's probabilities on the whole clip and on the clip played backwards.

    Args:
        teacher: a clip run's teacher, eval mode.
        clip: (T, Ch, S, S) normalised frames.

    Returns:
        (C,) forwards, (C,) backwards.
    """
    both = torch.stack([clip, reverse_clips(clip)])  # (2, T, Ch, S, S)
    probs = torch.softmax(teacher(both).float(), dim=-1)  # (2, C)
    return probs[0], probs[1]


def clip_report(
    ensemble: Ensemble,
    spec: DatasetSpec,
    clip: torch.Tensor,
    teacher: nn.Module | None = None,
    flops: list[list[int]] | None = None,
) -> ClipReport:
    """Every prefix's answer after every frame, their FLOPs, and the teacher's answer both ways round.

    Args:
        ensemble: the run's students.
        spec: the run's clip dataset (normalisation).
        clip: (T, Ch, S, S) raw frames in [0, 1] (reverse_clips first to ask about the clip backwards).
        teacher: the run's teacher, optional.
        flops: ``frame_flops(ensemble)`` if the caller keeps it; computed when None.
    """
    _check_clip(clip, spec)
    x = spec.normalize(clip.float())  # (T, Ch, S, S)
    probs = stream_prefix_probs(ensemble, x)  # (T, K, C)
    forwards, backwards = teacher_probs(teacher, x) if teacher is not None else (None, None)
    return ClipReport(probs, flops if flops is not None else frame_flops(ensemble), forwards, backwards)
