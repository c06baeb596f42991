"""The clip part of `pkd export RUN --web` (pkd.web.build): what a video run's page needs besides the model.

A clip run's page (pkd/web/page/clips.js) plays test clips and clips made from a drawing, forwards and backwards.
Its records: the clip generator's sizes (`pkd.preprocess.clip_config`, so that the page's JavaScript port of
`pkd.data.moving_mnist.make_clip` makes the same clip as the app's Clips page), the motions, each class's
time-reversed class, and TEST_CLIPS test clips as uint8 frames with their labels and the teacher's answer (the page
does not run the teacher: it averages its frames, so its answer is the same both ways round, computed here once).

Letters: N clips, T frames, S frame side, C classes.
"""

from __future__ import annotations

import base64

import numpy as np
import torch

from pkd.data import DatasetSpec, load_split
from pkd.data.moving_mnist import MOTIONS, REVERSE_MOTION, reverse_label
from pkd.preprocess.clips import clip_config
from pkd.runs import Run, get_field

TEST_CLIPS = 12  # test clips the page offers (a seeded pick, two of each motion where the split has them)


def clip_settings(spec: DatasetSpec) -> dict:
    """The page's clip records without the test clips: the generator's sizes, motions and reversed classes."""
    cfg = clip_config(spec)
    frames, _, side, _ = spec.sample_shape
    return {
        "frames": frames, "side": side, "frameMs": 400,  # the app's clip GIF shows each frame 400 ms
        "clipConfig": {"frames": cfg.frames, "canvas": cfg.canvas, "speed": cfg.speed_max, "zoom": list(cfg.zoom)},
        "motions": list(MOTIONS),
        "reverseMotion": list(REVERSE_MOTION),  # the motion of a clip played backwards
        # the class of the same clip played backwards (same digit, reversed motion); None: labels name no motion
        "reverseClass": [int(reverse_label(c)) for c in range(spec.num_classes)] if spec.motion_labels else None,
    }


def pick_clips(labels: torch.Tensor, n: int) -> np.ndarray:
    """Indices of n test clips, a seeded pick spread over the motions (label % 6) when labels name them."""
    order = np.random.default_rng(0).permutation(len(labels))[:50 * n]
    seen: dict[int, int] = {}  # motion -> clips of it met so far
    rank = []  # per clip in `order`: how many clips of its motion came before it
    for motion in (labels[order] % len(MOTIONS)).tolist():
        rank.append(seen.get(motion, 0))
        seen[motion] = rank[-1] + 1
    return order[np.argsort(rank, kind="stable")[:n]]  # the first clip of each motion, then the second of each, ...


def teacher_answers(run: Run, spec: DatasetSpec, clips: torch.Tensor) -> list[list[float]] | None:
    """The teacher's probabilities (N, C) on the clips (N, T, 1, S, S) in [0, 1], rounded to 1e-4, normalised as
    `pkd eval` feeds it (pkd.evaluate.predict_logits); None without a teacher."""
    from pkd.artifacts import load_teacher
    from pkd.evaluate import predict_logits

    if not run.has_teacher():
        return None
    try:
        teacher = load_teacher(run).eval()
    except (OSError, ValueError, RuntimeError):
        return None
    probs = torch.softmax(predict_logits(teacher, spec, clips, torch.device("cpu")), dim=-1)  # (N, C)
    return [[round(p, 4) for p in row] for row in probs.tolist()]


def test_clips(run: Run, spec: DatasetSpec) -> dict | None:
    """TEST_CLIPS clips of the run's test split as base64 uint8 (N, T, S, S), their labels and the teacher's answers;
    None when the split cannot be read here (the page then offers drawings only)."""
    try:
        split = load_split(spec.name, "test", get_field(run.config(), "data", "root"))
    except (OSError, ValueError, RuntimeError):
        return None
    pick = torch.from_numpy(pick_clips(split.labels, min(TEST_CLIPS, len(split.labels))))
    frames = (split.inputs[pick] * 255).round().clamp(0, 255).to(torch.uint8)  # (N, T, 1, S, S)
    return {"pixels": base64.b64encode(frames.numpy().tobytes()).decode(), "labels": split.labels[pick].tolist(),
            "teacher": teacher_answers(run, spec, frames.float() / 255)}
