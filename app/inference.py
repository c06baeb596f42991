"""The Playground's prediction path, built only from library calls (no Streamlit, no model maths of its own).

Shape letters: K students, C classes, H/W image height/width.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pkd import data as pkd_data
from pkd import preprocess
from pkd.models.ensemble import Ensemble


@dataclass
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


def prepare_canvas(image_data: np.ndarray | None) -> torch.Tensor | None:
    """A canvas's RGBA pixels -> the (1, 28, 28) image in [0, 1] the models see, or None for a blank canvas.

    Raises:
        ValueError: the image is not a light drawing on a dark background, or its ink is only a dot (the
            message says what to do; `pkd predict` refuses the same pictures).
    """
    if image_data is None:
        return None
    image = preprocess.prepare_drawing(image_data)
    if image is not None and preprocess.ink_extent(image_data) < preprocess.MIN_INK_EXTENT:
        raise ValueError("Too little ink: a dot or a speck is not a digit. Draw the whole digit, larger.")
    return image


@torch.no_grad()
def predict_digit(
    ensemble: Ensemble,
    spec: pkd_data.DatasetSpec,
    image: torch.Tensor,
    teacher: torch.nn.Module | None = None,
    teacher_flops: int | None = None,
) -> DigitReport:
    """All K prefix predictions, each student's own vote and the teacher's answer for one image.

    Args:
        ensemble: the run's students (eval mode).
        spec: the dataset spec (normalisation).
        image: (C, H, W) pixels in [0, 1], e.g. from prepare_canvas or a test split.
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
    spec: pkd_data.DatasetSpec,
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
