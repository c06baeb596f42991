"""The tiny video teacher the clip tests build (pkd's tiny open_clip config at 16x16, 12 class names) and random
clips for it."""

from __future__ import annotations

import torch

from pkd.models.clip import ViFiCLIP

NAMES = [f"{d} moving {m}" for d in range(3) for m in ("left", "right", "up", "down")]
SIDE = 16  # the tiny config at 16x16: a 2x2 patch grid keeps these tests fast


def tiny_teacher(seed: int = 0, **kwargs) -> ViFiCLIP:
    torch.manual_seed(seed)
    return ViFiCLIP(NAMES, image_size=SIDE, **kwargs).eval()


def random_clips(n: int = 4, t: int = 5, side: int = SIDE, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, t, 1, side, side, generator=torch.Generator().manual_seed(seed))
