"""The registered Mamba student: images (B, C, H, W) or clips (B, T, C, H, W) -> tokens (B, L, F) -> n Mamba layers
(B, L, D) -> logits (B, C); and the same student run token by token (`stream`), as a clip arrives frame by frame.

Built from pkd.models.tokenizers (image <-> tokens) and pkd.models.mamba (the layer); its state_dict keys are
`embed.*`, `layers.{i}.mixer.*` / `layers.{i}.norm.weight` (mamba.py's names), `norm_f.weight`, `head.*`.
A clip is read in time order, each frame's tokens (rows or patches) in turn, as VideoMamba scans `b (t n) m`.

Letters: B batch, L sequence length, D d_model, F token features, C classes (or image channels in `image_shape`),
T frames, H/W image height/width, P patch size, n tokens fed in one `stream` call.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch
import torch.nn as nn

from pkd.models.registry import register_student
from pkd.models.checks import check_choice, check_int
from pkd.models.mamba import InferenceParams, ResidualBlock, RMSNorm
from pkd.models.tokenizers import ConvStem, FrameDifference, Pool, Tokenizer

__all__ = ["MambaClassifier", "StreamState"]


@dataclasses.dataclass
class StreamState:
    """Where a token-by-token run of a student stands.

    Attributes:
        params: the layers' recurrent states (``key_value_memory_dict[i]`` for layer i) and tokens seen so far
            (``seqlen_offset``).
        pooled: pool "mean": the sum of the final-norm outputs so far, (B, D); None before the first token.
    """

    params: InferenceParams
    pooled: torch.Tensor | None = None

    @property
    def seen(self) -> int:
        """Tokens consumed so far."""
        return self.params.seqlen_offset


def _token_layout(tokens: str, patch: int, rows_per_token: int, shape: tuple[int, int, int],
                  stemmed: bool) -> tuple[int, int, int]:
    """(tokens per image, features per token F, rows per token) of a tokenizer reading (C, H, W) inputs; a bad size
    raises a one-line error naming what must divide what and the values that would."""
    c, h, w = shape
    where = "the stem's output" if stemmed else "the image"
    check_choice("tokens", tokens, ("rows", "cols", "patch"))
    check_int("patch", patch)
    check_int("rows_per_token", rows_per_token)
    sides = {"rows": ("height", h), "cols": ("width", w)}
    if tokens in sides:
        side, lines = sides[tokens]  # rows or columns an image has
        if lines % rows_per_token:
            raise ValueError(f"rows_per_token must divide {side} {lines} of {where}, got {rows_per_token}; try one "
                             f"of {[r for r in range(1, lines + 1) if lines % r == 0]}")
        return lines // rows_per_token, rows_per_token * (h * w // lines) * c, rows_per_token
    if h % patch or w % patch:
        raise ValueError(f"patch must divide height {h} and width {w} of {where}, got {patch}; try one of "
                         f"{[p for p in range(1, min(h, w) + 1) if h % p == 0 and w % p == 0]}")
    return (h // patch) * (w // patch), patch * patch * c, 1


@register_student("mamba")
class MambaClassifier(nn.Module):
    """Image or clip classifier: tokenizer -> linear embedding -> n pre-norm Mamba layers -> norm -> pool -> head.

    Args:
        image_shape: (C, H, W) of a normalised image, or (T, C, H, W) of a clip (its frames read in order).
        num_classes: number of classes C.
        tokens: "rows" (L = H/R tokens of R*W*C features: R = rows_per_token rows each), "cols" (L = W/R tokens
            of R*H*C: columns left to right, a reader whose mistakes differ from a row reader's) or "patch"
            (L = (H/P)(W/P) tokens of P*P*C).
        rows_per_token: R, rows (or columns) read as one token when tokens == "rows" ("cols"); 2 halves L and the
            cost of every layer per image; must divide H (W).
        patch: patch size P when tokens == "patch"; must divide H and W.
        d_model, n_layers, d_state, expand, d_conv: Mamba sizes (mamba-ssm names).
        pool: "mean" over tokens or the "last" token.
        frame_diff: clips only: each frame's tokens also carry the frame minus the one before it (zero for the
            first frame), TSN's "RGB difference" input (Wang et al. 2016), so a small student sees motion directly.
        stem: channels of 3x3 stride-2 convolutions (each with ReLU) run on every image or frame before the tokens
            (empty: none); rows, columns and patches are then those of the (C_k, H_k, W_k) feature map.
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
        frame_diff: bool = False,
        rows_per_token: int = 1,
        stem: Sequence[int] = (),
    ) -> None:
        super().__init__()
        if not isinstance(image_shape, (list, tuple)) or len(image_shape) not in (3, 4):
            raise ValueError(f"image_shape must be [C, H, W] (an image) or [T, C, H, W] (a clip) of positive "
                             f"integers, got {image_shape!r}")
        self.image_shape = tuple(check_int(f"image_shape[{i}]", v) for i, v in enumerate(image_shape))
        frames, (c, h, w) = (self.image_shape[0] if len(self.image_shape) == 4 else 1), self.image_shape[-3:]
        if not isinstance(frame_diff, bool) or (frame_diff and len(self.image_shape) != 4):
            raise ValueError(f"frame_diff must be true or false, and true only for clips (T, C, H, W), got "
                             f"{frame_diff!r} for input {list(self.image_shape)}")
        c *= 2 if frame_diff else 1  # each frame beside its change
        if not isinstance(stem, (list, tuple)):
            raise ValueError(f"stem must be a list of conv channel counts such as [8, 16] (or [] for none), "
                             f"got {stem!r}")
        stem = [check_int(f"stem[{i}]", v) for i, v in enumerate(stem)]
        self.stem = ConvStem(c, stem) if stem else None
        c, h, w = ConvStem.out_shape(stem, c, h, w)  # what the tokenizer reads
        check_int("num_classes", num_classes, 2)
        check_choice("pool", pool, ("mean", "last"))
        self.frame_len, in_features, rows = _token_layout(tokens, patch, rows_per_token, (c, h, w), bool(stem))
        self.seq_len = frames * self.frame_len  # L
        self.frame_diff = FrameDifference() if frame_diff else None
        self.tokenizer = Tokenizer(tokens, patch, rows)
        self.embed = nn.Linear(in_features, check_int("d_model", d_model))
        self.layers = nn.ModuleList(
            ResidualBlock(d_model, d_state=d_state, d_conv=d_conv, expand=expand, layer_idx=i)
            for i in range(check_int("n_layers", n_layers))
        )
        self.norm_f = RMSNorm(d_model)
        self.pool = Pool(pool)
        self.head = nn.Linear(d_model, num_classes)

    def tokenize(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: (B, *image_shape) normalised images or clips. Returns: (B, L, F) tokens, frame after frame."""
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"expected input (B, {', '.join(map(str, self.image_shape))}), got {tuple(x.shape)}")
        if len(self.image_shape) == 3:
            return self.tokenize_image(x)  # (B, L, F)
        return self.tokenize_frames(x)

    def tokenize_image(self, x: torch.Tensor) -> torch.Tensor:
        """One image (or frame, beside its change) per row: (B, C, H, W) -> (B, L/T, F), through the stem if any."""
        return self.tokenizer(x if self.stem is None else self.stem(x))

    def tokenize_frames(self, x: torch.Tensor) -> torch.Tensor:
        """The tokens of a clip's first t frames, as `tokenize` makes them (frame t reads frames 1..t only).

        Args: x: (B, t, C, H, W) normalised, 1 <= t <= T. Returns: (B, t * L/T, F).
        """
        b, t = x.shape[:2]
        if self.frame_diff is not None:
            x = torch.cat([x, self.frame_diff(x)], dim=2)  # (B, T, 2C, H, W): each frame beside its change
        tokens = self.tokenize_image(x.flatten(0, 1))  # (B*T, L/T, F)
        return tokens.reshape(b, t * tokens.shape[1], tokens.shape[2])  # (B, L, F)

    def frame_tokens(self, frame: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
        """One frame's tokens as `tokenize` makes them inside a clip, for `stream` (frame by frame, causal).

        Args: frame: (B, C, H, W) normalised; previous: the frame before it (None for a clip's first frame).
        Returns: (B, L/T, F).
        """
        if self.frame_diff is not None:
            change = torch.zeros_like(frame) if previous is None else frame - previous  # (B, C, H, W)
            frame = torch.cat([frame, change], dim=1)  # (B, 2C, H, W)
        return self.tokenize_image(frame)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: (B, *image_shape) normalised images (B, C, H, W) or clips (B, T, C, H, W).
        Returns: (B, num_classes) logits."""
        return self.forward_tokens(self.tokenize(x))

    def forward_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Classify a token sequence of any length (e.g. the first frames of a clip).

        Args:
            tokens: (B, L', F) from ``tokenize`` (or a prefix of them).
        Returns:
            (B, num_classes) logits.
        """
        x = self.embed(tokens)  # (B, L', F) -> (B, L', D)
        for layer in self.layers:
            x = layer(x)  # (B, L', D)
        return self.head(self.pool(self.norm_f(x)))  # (B, D) -> (B, num_classes)

    def start_stream(self, batch_size: int) -> StreamState:
        """A fresh state for ``stream`` over a batch of batch_size sequences (states are allocated at first use)."""
        return StreamState(InferenceParams(max_seqlen=self.seq_len, max_batch_size=batch_size))

    def stream(self, tokens: torch.Tensor, state: StreamState) -> torch.Tensor:
        """Feed the next n tokens (e.g. one frame's) and get the logits after each of them; ``state`` advances.

        After the call, ``logits[:, j]`` equals ``forward_tokens`` of every token fed so far up to this call's j-th.
        The first call runs its tokens through the parallel scan (filling the layers' states, as mamba-ssm
        prefills a prompt); later calls run ``Mamba.step`` once per token. Pool "mean" keeps a running sum of
        the final-norm outputs, so the answer after t tokens is head(sum / t): the mean over the prefix (the head
        is linear, so this is exactly the full forward of the prefix); pool "last" reads the newest output.

        Args:
            tokens: (B, n, F), n >= 1, the next tokens of ``tokenize``'s sequence.
            state: from ``start_stream`` (or a previous call).
        Returns:
            (B, n, num_classes) logits after each of the n tokens.
        """
        if tokens.dim() != 3 or tokens.shape[1] < 1 or tokens.shape[0] != state.params.max_batch_size:
            raise ValueError(f"stream takes tokens (B={state.params.max_batch_size}, n >= 1, F), got "
                             f"{tuple(tokens.shape)}; start a new stream for another batch size")
        x = self.embed(tokens)  # (B, n, D)
        if state.params.seqlen_offset == 0:  # prefill: one parallel pass that leaves each layer's last states
            for layer in self.layers:
                x = layer(x, inference_params=state.params)  # (B, n, D)
            state.params.seqlen_offset = x.shape[1]
        else:  # one recurrent step per token (seqlen_offset > 0 -> Mamba.step)
            outs = []
            for t in range(x.shape[1]):
                h = x[:, t:t + 1]  # (B, 1, D)
                for layer in self.layers:
                    h = layer(h, inference_params=state.params)  # (B, 1, D)
                outs.append(h)
                state.params.seqlen_offset += 1
            x = torch.cat(outs, dim=1)  # (B, n, D)
        return self.head(self._pool_steps(self.norm_f(x), state))  # (B, n, D) -> (B, n, num_classes)

    def _pool_steps(self, y: torch.Tensor, state: StreamState) -> torch.Tensor:
        """The pooled feature after each of the n newest tokens: (B, n, D) -> (B, n, D); updates state.pooled."""
        if self.pool.mode == "last":
            return y  # (B, n, D)
        sums = y.cumsum(dim=1)  # (B, n, D)
        if state.pooled is not None:
            sums = sums + state.pooled[:, None]  # (B, n, D)
        state.pooled = sums[:, -1]  # (B, D)
        seen = state.params.seqlen_offset
        count = torch.arange(seen - y.shape[1] + 1, seen + 1, device=y.device, dtype=y.dtype)  # (n,)
        return sums / count[:, None]  # (B, n, D) running mean
