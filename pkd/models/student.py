"""The registered Mamba student: images (B, C, H, W) -> tokens (B, L, F) -> n Mamba layers (B, L, D) -> logits (B, C).

Built from pkd.models.tokenizers (image <-> tokens) and pkd.models.mamba (the layer); its state_dict keys are
`embed.*`, `layers.{i}.mixer.*` / `layers.{i}.norm.weight` (mamba.py's names), `norm_f.weight`, `head.*`.

Letters: B batch, L sequence length, D d_model, F token features, C classes (or image channels in `image_shape`),
H/W image height/width, P patch size.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from pkd.models import register_student
from pkd.models.checks import check_choice, check_int
from pkd.models.mamba import ResidualBlock, RMSNorm
from pkd.models.tokenizers import Pool, Tokenizer

__all__ = ["MambaClassifier"]


@register_student("mamba")
class MambaClassifier(nn.Module):
    """Image classifier: tokenizer -> linear embedding -> n pre-norm Mamba layers -> norm -> pool -> linear head.

    Args:
        image_shape: (C, H, W) of the normalised input.
        num_classes: number of classes C.
        tokens: "rows" (L = H tokens of W*C features) or "patch" (L = (H/P)(W/P) tokens of P*P*C).
        patch: patch size P when tokens == "patch"; must divide H and W.
        d_model, n_layers, d_state, expand, d_conv: Mamba sizes (mamba-ssm names).
        pool: "mean" over tokens or the "last" token.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        tokens: str = "rows",
        patch: int = 4,
        d_model: int = 32,
        n_layers: int = 1,
        d_state: int = 16,
        expand: int = 2,
        d_conv: int = 4,
        pool: str = "mean",
    ) -> None:
        super().__init__()
        if not isinstance(image_shape, (list, tuple)) or len(image_shape) != 3:
            raise ValueError(f"image_shape must be [C, H, W] with 3 positive integers, got {image_shape!r}")
        c, h, w = (check_int(f"image_shape[{i}]", v) for i, v in enumerate(image_shape))
        self.image_shape = (c, h, w)
        check_int("num_classes", num_classes, 2)
        check_choice("tokens", tokens, ("rows", "patch"))
        check_int("patch", patch)
        check_choice("pool", pool, ("mean", "last"))
        if tokens == "patch" and (h % patch or w % patch):
            raise ValueError(f"patch must divide image height {h} and width {w}, got {patch}; try one of "
                             f"{[p for p in range(1, min(h, w) + 1) if h % p == 0 and w % p == 0]}")
        self.seq_len = h if tokens == "rows" else (h // patch) * (w // patch)  # L
        in_features = w * c if tokens == "rows" else patch * patch * c  # F

        self.tokenizer = Tokenizer(tokens, patch)
        self.embed = nn.Linear(in_features, check_int("d_model", d_model))
        self.layers = nn.ModuleList(
            ResidualBlock(d_model, d_state=d_state, d_conv=d_conv, expand=expand)
            for _ in range(check_int("n_layers", n_layers))
        )
        self.norm_f = RMSNorm(d_model)
        self.pool = Pool(pool)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: (B, C, H, W) normalised images. Returns: (B, num_classes) logits."""
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"expected input (B, {', '.join(map(str, self.image_shape))}), got {tuple(x.shape)}")
        x = self.embed(self.tokenizer(x))  # (B, L, F) -> (B, L, D)
        for layer in self.layers:
            x = layer(x)  # (B, L, D)
        return self.head(self.pool(self.norm_f(x)))  # (B, D) -> (B, num_classes)
