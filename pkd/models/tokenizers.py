"""Images to token sequences and back: Tokenizer (B, C, H, W) -> (B, L, F), Pool (B, L, D) -> (B, D), an optional
convolutional stem before the tokens, and their FLOP rules.

A sequence model sees an image as L tokens: its rows or its P x P patches; a classifier head sees one pooled token.

Letters: B batch, C image channels, H/W image height/width, P patch size, L sequence length, F token features,
D model width.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from pkd.flops import Cost, no_flops, register_flop_rule

__all__ = ["Tokenizer", "Pool", "FrameDifference", "ConvStem"]


class Tokenizer(nn.Module):
    """Image (B, C, H, W) -> token sequence (B, L, F): rows, R at a time (L=H/R, F=R*W*C), columns left to right,
    R at a time (L=W/R, F=R*H*C: the rows of the transposed image), or P x P patches (L=HW/P^2, F=P*P*C)."""

    def __init__(self, tokens: str, patch: int, rows_per_token: int = 1) -> None:
        super().__init__()
        self.tokens = tokens
        self.patch = patch
        self.rows_per_token = rows_per_token

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: (B, C, H, W). Returns: (B, L, F)."""
        if self.tokens == "cols":
            x = x.transpose(-1, -2)  # (B, C, W, H): columns become rows
        b, c, h, w = x.shape
        if self.tokens in ("rows", "cols"):
            r = self.rows_per_token
            if c == 1:
                return x.reshape(b, h // r, r * w)  # (B, H/R, R*W): a view
            return x.permute(0, 2, 3, 1).reshape(b, h // r, r * w * c)  # (B, H/R, R*W*C)
        p = self.patch
        x = x.reshape(b, c, h // p, p, w // p, p)  # (B, C, H/P, P, W/P, P)
        return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)  # (B, L, P*P*C)


register_flop_rule(Tokenizer)(no_flops)  # a reshape / permute


class ConvStem(nn.Sequential):
    """Image (B, C, H, W) -> feature map (B, C_k, H_k, W_k): k 3x3 stride-2 convolutions (padding 1), each with ReLU.

    A cheap translation-equivariant front end before the tokens, as in VideoMamba's and ViT-hybrid stems: a digit's
    strokes give the same features wherever it has moved, and each stride halves the tokens the Mamba layers read.
    Counted by the Conv2d and ReLU rules; H_k = ceil(H / 2^k).
    """

    def __init__(self, in_channels: int, channels: Sequence[int]) -> None:
        layers: list[nn.Module] = []
        for width in channels:
            layers += [nn.Conv2d(in_channels, width, kernel_size=3, stride=2, padding=1), nn.ReLU()]
            in_channels = width
        super().__init__(*layers)

    @staticmethod
    def out_shape(channels: Sequence[int], c: int, h: int, w: int) -> tuple[int, int, int]:
        """(C, H, W) of the feature map a (c, h, w) input gives after the convolutions of `channels`."""
        for width in channels:
            c, h, w = width, (h - 1) // 2 + 1, (w - 1) // 2 + 1
        return c, h, w


class FrameDifference(nn.Module):
    """Clip (B, T, C, H, W) -> each frame minus the one before it, (B, T, C, H, W); zeros for the first frame."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: (B, T, C, H, W). Returns: (B, T, C, H, W)."""
        return torch.cat([torch.zeros_like(x[:, :1]), x[:, 1:] - x[:, :-1]], dim=1)


@register_flop_rule(FrameDifference)
def _frame_difference(m: FrameDifference, inputs: tuple, out: torch.Tensor) -> list[Cost]:
    """One subtraction per pixel of frames 2..T: B*(T-1)*C*H*W."""
    x = inputs[0]
    n = x[:, 1:].numel()
    return [Cost(n, 0, f"{n} (frame differences)")]


class Pool(nn.Module):
    """Sequence pooling (B, L, D) -> (B, D): mean over tokens or the last token."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: (B, L, D). Returns: (B, D)."""
        return x.mean(dim=1) if self.mode == "mean" else x[:, -1]


@register_flop_rule(Pool)
def _pool(m: Pool, inputs: tuple, out: torch.Tensor) -> list[Cost]:
    """Sequence pooling of (B, L, D): mean = (L-1)*D adds + D divides = L*D; last token = 0."""
    n = inputs[0].numel() if m.mode == "mean" else 0
    return [Cost(n, 0, f"{n} (mean over L)" if n else "0 (last token)")]
