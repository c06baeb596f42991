"""Mamba (selective state-space) students: the Mamba block, RMSNorm and an image classifier.

The block follows state-spaces/mamba `mamba_ssm/modules/mamba_simple.py` (slow path) and alxndrTL/mamba.py
`mambapy/mamba.py`: same constructor arguments, parameter names, shapes and initialisation, so a state_dict
moves between pkd, mamba-ssm and mamba.py unchanged.

Letters: B batch, L sequence length, D d_model, ED d_inner = expand * d_model, N d_state, R dt_rank,
C classes (or image channels in `image_shape`), H/W image height/width, P patch size.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from pkd.models import register_student
from pkd.ssm import selective_scan

__all__ = ["Mamba", "RMSNorm", "ResidualBlock", "Tokenizer", "Pool", "MambaClassifier"]


def _check_int(field: str, value: object, low: int = 1) -> int:
    """Return value if it is an int >= low, else raise a one-line ValueError naming the field."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{field} must be an integer >= {low}, got {value!r}")
    return value


def _check_choice(field: str, value: object, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{field} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value  # type: ignore[return-value]


class Mamba(nn.Module):
    """Mamba-1 mixer (B, L, D) -> (B, L, D) with mamba_ssm.modules.mamba_simple.Mamba's arguments and layout."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.d_model = _check_int("d_model", d_model)
        self.d_state = _check_int("d_state", d_state)
        self.d_conv = _check_int("d_conv", d_conv)
        self.expand = _check_int("expand", expand)
        self.d_inner = self.expand * self.d_model  # ED
        if dt_rank != "auto" and (isinstance(dt_rank, bool) or not isinstance(dt_rank, int) or dt_rank < 1):
            raise ValueError(f"dt_rank must be 'auto' or an integer >= 1, got {dt_rank!r}")
        self.dt_rank = math.ceil(self.d_model / 16) if dt_rank == "auto" else dt_rank  # R
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"dt_min and dt_max must satisfy 0 < dt_min <= dt_max, got {dt_min!r}, {dt_max!r}")
        _check_choice("dt_init", dt_init, ("random", "constant"))
        factory = {"device": device, "dtype": dtype}

        # Module creation and random draws happen in mamba_simple's order, so one seed gives the same weights.
        self.in_proj = nn.Linear(self.d_model, 2 * self.d_inner, bias=bias, **factory)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner,
                                padding=d_conv - 1, bias=conv_bias, **factory)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * self.d_state, bias=False, **factory)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **factory)

        # dt_proj weight: preserve variance at initialisation.
        dt_init_std = self.dt_rank**-0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, dt_init_std)
        else:
            nn.init.uniform_(self.dt_proj.weight, -dt_init_std, dt_init_std)
        # dt bias: softplus(bias) = dt, dt log-uniform in [dt_min, dt_max] (inverse softplus, pytorch#72759).
        dt = torch.exp(
            torch.rand(self.d_inner, **factory) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp(min=dt_init_floor)  # (ED,)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.dt_proj.bias._no_reinit = True  # type: ignore[attr-defined]

        # S4D-real initialisation A = -(1..N), stored as log in fp32; D skip = 1.
        A = torch.arange(1, self.d_state + 1, dtype=torch.float32, device=device).repeat(self.d_inner, 1)  # (ED, N)
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device))  # (ED,)
        self.D._no_weight_decay = True  # type: ignore[attr-defined]

        self.out_proj = nn.Linear(self.d_inner, self.d_model, bias=bias, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mix along the sequence.

        Args:
            x: (B, L, D) input.
        Returns:
            (B, L, D) output.
        """
        _, L, _ = x.shape
        # As mamba_simple's slow path: matmul and transpose B L C -> B C L at once. `W @ t` folds (B, L) into one
        # GEMM and returns a (B, C, L) view of its (B, L, C) result, so no transposed copy is made here; the scan
        # backend makes its inputs contiguous itself (u already is, after the conv).
        xz = self.in_proj.weight @ x.transpose(1, 2)  # (2ED, D) @ (B, D, L) -> (B, 2ED, L)
        if self.in_proj.bias is not None:
            xz = xz + self.in_proj.bias[:, None]  # (B, 2ED, L)
        u, z = xz.chunk(2, dim=1)  # (B, ED, L), (B, ED, L)

        u = F.silu(self.conv1d(u)[..., :L])  # causal depthwise conv: (B, ED, L + d_conv - 1) -> (B, ED, L)

        x_dbl = self.x_proj.weight @ u  # (R+2N, ED) @ (B, ED, L) -> (B, R+2N, L)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=1)  # (B, R|N|N, L)
        delta = self.dt_proj.weight @ dt  # (ED, R) @ (B, R, L) -> (B, ED, L); bias added inside the scan

        A = -torch.exp(self.A_log.float())  # (ED, N)
        y = selective_scan(u, delta, A, B, C, self.D.float(), z=z,
                           delta_bias=self.dt_proj.bias.float(), delta_softplus=True)  # (B, ED, L)
        return self.out_proj(y.transpose(1, 2))  # (B, L, ED) -> (B, L, D)


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last dimension: x / sqrt(mean(x^2) + eps) * weight (mamba.py's keys)."""

    def __init__(self, d_model: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(_check_int("d_model", d_model)))  # (D,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: (..., D). Returns: (..., D)."""
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class ResidualBlock(nn.Module):
    """Pre-norm residual Mamba layer x + mixer(norm(x)); keys `mixer.*`, `norm.weight` as in mamba.py."""

    def __init__(self, d_model: int, **mamba_kwargs: object) -> None:
        super().__init__()
        self.mixer = Mamba(d_model, **mamba_kwargs)  # type: ignore[arg-type]
        self.norm = RMSNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: (B, L, D). Returns: (B, L, D)."""
        return x + self.mixer(self.norm(x))


class Tokenizer(nn.Module):
    """Image (B, C, H, W) -> token sequence (B, L, F): rows (L=H, F=W*C) or P x P patches (L=HW/P^2, F=P*P*C)."""

    def __init__(self, tokens: str, patch: int) -> None:
        super().__init__()
        self.tokens = tokens
        self.patch = patch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: (B, C, H, W). Returns: (B, L, F)."""
        b, c, h, w = x.shape
        if self.tokens == "rows":
            if c == 1:
                return x.reshape(b, h, w)  # (B, H, W): a view
            return x.permute(0, 2, 3, 1).reshape(b, h, w * c)  # (B, H, W*C)
        p = self.patch
        x = x.reshape(b, c, h // p, p, w // p, p)  # (B, C, H/P, P, W/P, P)
        return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)  # (B, L, P*P*C)


class Pool(nn.Module):
    """Sequence pooling (B, L, D) -> (B, D): mean over tokens or the last token."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: (B, L, D). Returns: (B, D)."""
        return x.mean(dim=1) if self.mode == "mean" else x[:, -1]


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
        c, h, w = (_check_int(f"image_shape[{i}]", v) for i, v in enumerate(image_shape))
        self.image_shape = (c, h, w)
        _check_int("num_classes", num_classes, 2)
        _check_choice("tokens", tokens, ("rows", "patch"))
        _check_int("patch", patch)
        _check_choice("pool", pool, ("mean", "last"))
        if tokens == "patch" and (h % patch or w % patch):
            raise ValueError(f"patch must divide image height {h} and width {w}, got {patch}; try one of "
                             f"{[p for p in range(1, min(h, w) + 1) if h % p == 0 and w % p == 0]}")
        self.seq_len = h if tokens == "rows" else (h // patch) * (w // patch)  # L
        in_features = w * c if tokens == "rows" else patch * patch * c  # F

        self.tokenizer = Tokenizer(tokens, patch)
        self.embed = nn.Linear(in_features, _check_int("d_model", d_model))
        self.layers = nn.ModuleList(
            ResidualBlock(d_model, d_state=d_state, d_conv=d_conv, expand=expand)
            for _ in range(_check_int("n_layers", n_layers))
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
