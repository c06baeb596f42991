"""Training-time augmentations of image batches, each drawing its randomness from an explicit generator.

Shape letters: B batch, C channels, H/W height/width. A clip batch (B, T, C, H, W) is passed in as (B, T*C, H, W),
so one draw per clip moves every frame alike. Inputs are in [0, 1]; outputs stay there (zero fill).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by its own integer (dy, dx) in [-max_shift, max_shift], filling with zeros.

    Args:
        x: (B, C, H, W).
        max_shift: largest shift per axis, in pixels (>= 1).
        generator: CPU generator; draws randint (2, B).

    Returns:
        (B, C, H, W), identical to a random crop after ``max_shift`` px of zero padding.
    """
    b, c, h, w = x.shape
    s = max_shift
    shifts = torch.randint(-s, s + 1, (2, b), generator=generator).to(x.device)  # (2, B)
    padded = F.pad(x, (s, s, s, s)).permute(0, 2, 3, 1)  # (B, H+2s, W+2s, C)
    rows = (s - shifts[0])[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = (s - shifts[1])[:, None] + torch.arange(w, device=x.device)  # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None]  # (B, 1, 1)
    out = padded[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()  # (B, C, H, W)


def random_hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2.

    Args:
        x: (B, C, H, W).
        generator: CPU generator; draws rand (B,).

    Returns:
        (B, C, H, W).
    """
    flip = torch.rand(x.shape[0], generator=generator).to(x.device) < 0.5  # (B,)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)  # (B, C, H, W)


def random_rotate(x: torch.Tensor, max_deg: float, generator: torch.Generator) -> torch.Tensor:
    """Rotate each image about its centre by an angle uniform in [-max_deg, max_deg] degrees (bilinear, zero fill).

    Args:
        x: (B, C, H, W).
        max_deg: largest rotation in degrees (> 0).
        generator: CPU generator; draws rand (B,) in float64.

    Returns:
        (B, C, H, W), clamped to [0, 1].
    """
    b = x.shape[0]
    angle = (torch.rand(b, generator=generator, dtype=torch.float64) * 2 - 1) * math.radians(max_deg)  # (B,)
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)  # (B, H, W, 2)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # (B, C, H, W)
    return out.clamp_(0.0, 1.0)
