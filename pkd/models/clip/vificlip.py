"""The ViFi-CLIP-style video teacher: an open_clip CLIP applied to every frame, the frame embeddings averaged over
time, cosine similarity against cached text embeddings of one prompt per class (its prompt learner, the text side,
is pkd.models.clip.prompts'; building the CLIP is pkd.models.clip.open_clip's).

ViFi-CLIP (Rasheed et al., CVPR 2023; muzairkhattak/ViFi-CLIP `trainers/vificlip.py`): frames (B*T, C, H, W) ->
image tower -> view(B, T, E).mean(1) -> L2-normalise -> logit_scale.exp() * video @ text.T. No temporal module, so
a clip and its time-reverse get the same logits (here bit for bit: see TemporalMean).

Letters: B clips, T frames per clip, C channels of a frame (1 grey or 3 RGB), H/W frame size, S the CLIP's image
side, E the joint embedding width, K classes, L text context length, W text width, n learnable prompt tokens.

Grey frames: a 1-channel frame is repeated to the CLIP's 3 input channels (open_clip's patch embedding is fixed
at 3), so the code path and real RGB weights stay unchanged; it costs 3x the patch-embedding multiply-adds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from pkd.config import VIDEO_TEACHER
from pkd.flops import Cost, FlopReport, count_flops, register_flop_rule
from pkd.models.checks import check_int
from pkd.models.clip.open_clip import TINY_CLIP, clip_tokenizer, create_clip
from pkd.models.clip.prompts import PromptLearner, check_template
from pkd.models.registry import register_teacher

__all__ = ["ViFiCLIP", "FrameAdapter", "TemporalMean", "CosineHead", "VideoTeacherFlops", "video_teacher_flops"]


class FrameAdapter(nn.Module):
    """Frames as the data gives them -> the CLIP's input: resize to S x S (bilinear, if needed), grey to 3
    channels, and one affine per channel that undoes the data's normalisation and applies the CLIP's mean/std.

    Args:
        in_channels: channels C of the incoming frames (1 or 3).
        image_size: the CLIP's (S, S).
        clip_mean, clip_std: the CLIP's per-channel preprocessing (open_clip's preprocess_cfg).
        input_mean, input_std: how the incoming frames were normalised (raw = x * input_std + input_mean).
    """

    def __init__(self, in_channels: int, image_size: tuple[int, int], clip_mean: Sequence[float],
                 clip_std: Sequence[float], input_mean: float = 0.0, input_std: float = 1.0) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 (grey) or 3 (RGB), got {in_channels!r}")
        self.in_channels, self.image_size = in_channels, tuple(image_size)
        mean, std = torch.tensor(clip_mean).view(3, 1, 1), torch.tensor(clip_std).view(3, 1, 1)
        self.register_buffer("scale", input_std / std, persistent=False)  # (3, 1, 1)
        self.register_buffer("shift", (input_mean - mean) / std, persistent=False)  # (3, 1, 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Args: frames: (N, C, H, W). Returns: (N, 3, S, S)."""
        if frames.dim() != 4 or frames.shape[1] != self.in_channels:
            raise ValueError(f"frames must be (N, {self.in_channels}, H, W), got {tuple(frames.shape)}; set the "
                             f"teacher's in_channels to the data's channels")
        if not frames.is_floating_point():  # uint8 clips (input_std = 1/255) take a quarter of float32's memory
            frames = frames.to(self.scale.dtype)
        if tuple(frames.shape[-2:]) != self.image_size:
            frames = F.interpolate(frames, size=self.image_size, mode="bilinear", align_corners=False)  # (N, C, S, S)
        frames = frames.expand(-1, 3, -1, -1)  # (N, 3, S, S), a view for grey frames
        return frames * self.scale + self.shift  # (N, 3, S, S)


@register_flop_rule(FrameAdapter)
def _frame_adapter(m: FrameAdapter, inputs: tuple, out: torch.Tensor) -> list[Cost]:
    """Bilinear resize 7 FLOPs per output value (4 weighted taps: 4 multiplies, 3 adds) when the size differs;
    the folded affine 2 per element of the 3-channel output."""
    x = inputs[0]
    resize = 7 * x.shape[0] * x.shape[1] * out.shape[-2] * out.shape[-1] if tuple(x.shape[-2:]) != m.image_size else 0
    return [Cost(resize + 2 * out.numel(), 0, f"resize {resize} + affine 2*{out.numel()}")]


class TemporalMean(nn.Module):
    """Mean over time (B, T, E) -> (B, E), summed in an order-symmetric way so that a clip and its time-reverse
    give bit-identical results: y_t = x_t + x_(T-1-t) is the same for both (addition commutes exactly in IEEE
    arithmetic), and sum_t y_t / 2T is the mean."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: (B, T, E). Returns: (B, E)."""
        return (x + x.flip(1)).sum(dim=1) / (2 * x.shape[1])  # (B, E)


@register_flop_rule(TemporalMean)
def _temporal_mean(m: TemporalMean, inputs: tuple, out: torch.Tensor) -> list[Cost]:
    """Symmetric mean of (B, T, E): T*E pair adds, (T-1)*E sums, E divides = 2*T*E per clip."""
    n = 2 * inputs[0].numel()
    return [Cost(n, 0, f"2*{inputs[0].numel()} (pair adds + sum + divide)")]


class CosineHead(nn.Module):
    """CLIP's similarity head: logit_scale.exp() * normalise(video) @ text.T, text already L2-normalised."""

    def forward(self, video: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
        """Args: video: (B, E); text: (K, E), unit rows; logit_scale: () log of the temperature's inverse.
        Returns: (B, K) logits."""
        return logit_scale.exp() * F.normalize(video, dim=-1) @ text.T  # (B, K)


@register_flop_rule(CosineHead)
def _cosine_head(m: CosineHead, inputs: tuple, out: torch.Tensor) -> list[Cost]:
    """Per clip: L2-normalise E (square E, sum E-1, sqrt 1, divide E = 3E), similarity 2*E*K, scale K; exp 1."""
    (b, e), k = inputs[0].shape, inputs[1].shape[0]
    mm = 2 * b * e * k
    return [Cost(3 * b * e + mm + b * k + 1, mm, f"normalise 3*{b}*{e} + 2*{b}*{e}*{k} + scale {b}*{k} + exp 1")]


@register_teacher(VIDEO_TEACHER)
class ViFiCLIP(PromptLearner):
    """Video classifier after ViFi-CLIP on an open_clip CLIP: frame encode -> temporal mean -> cosine vs classes.
    The class prompts, their cache and the learnable prompts are the PromptLearner's (pkd.models.clip.prompts).

    Args:
        class_names: the K class names, e.g. "3 moving left".
        clip_model: open_clip config name (pkd's tiny one, or a stock one for real weights such as ViT-B-16).
        image_size: the CLIP's input side S (None: the config's); frames of another size are resized to it.
        template: the prompt of a class ("{}" is the name); ViFi-CLIP's training prompt by default.
        n_ctx: learnable text prompt context tokens (0: none; see add_prompt_context).
        ctx_init: their initialisation text when it has exactly n_ctx tokens.
        n_ctx_vision: learnable vision prompt tokens appended to every frame's tokens (0: none; see
            add_vision_context).
        in_channels: channels C of the frames (1: grey, repeated to the CLIP's 3).
        input_mean, input_std: the normalisation the frames arrive with (0 and 1: raw pixels in [0, 1]).
    """

    def __init__(
        self,
        class_names: Sequence[str],
        clip_model: str = TINY_CLIP,
        image_size: int | None = None,
        template: str = "a photo of a {}.",
        n_ctx: int = 0,
        ctx_init: str = "a photo of a",
        n_ctx_vision: int = 0,
        in_channels: int = 1,
        input_mean: float = 0.0,
        input_std: float = 1.0,
    ) -> None:
        super().__init__()
        if image_size is not None:
            check_int("image_size", image_size, 8)
        check_template(template)
        self.clip = create_clip(clip_model, image_size)
        self.tokenizer = clip_tokenizer(clip_model)
        self.context_length = self.clip.context_length
        pre = self.clip.visual.preprocess_cfg
        side = self.clip.visual.image_size  # a ViT's is (S, S), CLIP's ModifiedResNet's an int
        self.adapter = FrameAdapter(in_channels, (side, side) if isinstance(side, int) else side, pre["mean"], pre["std"],
                                    input_mean, input_std)
        self.pool = TemporalMean()
        self.head = CosineHead()
        self.init_prompts(class_names, template, n_ctx, ctx_init, n_ctx_vision)

    @staticmethod
    def data_params(data_spec) -> dict:
        """The params this teacher's spec takes from the dataset (a pkd.data.DatasetSpec; see
        pkd.models.registry.teacher_data_params): its text prompts are the dataset's class names, it reads the
        frames' channels, undoes their normalisation (its FrameAdapter) and by default runs its CLIP at the frames'
        own side (no resize)."""
        return {"class_names": list(data_spec.class_names), "in_channels": data_spec.sample_shape[-3],
                "input_mean": float(data_spec.mean[0]), "input_std": float(data_spec.std[0]),
                "image_size": data_spec.sample_shape[-1]}

    # ------------------------------------------------------------------------------------------------ video side

    def frame_embeddings(self, frames: torch.Tensor) -> torch.Tensor:
        """Args: frames: (N, C, H, W) as the data gives them. Returns: (N, E) unnormalised image features."""
        return self.clip.visual(self.adapter(frames))  # (N, E)

    def video_embedding(self, clips: torch.Tensor) -> torch.Tensor:
        """Args: clips: (B, T, C, H, W). Returns: (B, E) L2-normalised mean frame embedding."""
        return F.normalize(self.pooled_embedding(clips), dim=-1)

    def pooled_embedding(self, clips: torch.Tensor) -> torch.Tensor:
        """Args: clips: (B, T, C, H, W). Returns: (B, E) the mean frame embedding, unnormalised (what the head
        scores; ViFi-CLIP's bridge and prompt caches it while the image tower is frozen)."""
        if clips.dim() != 5:
            raise ValueError(f"clips must be (B, T, C, H, W), got shape {tuple(clips.shape)}")
        b, t = clips.shape[:2]
        x = self.frame_embeddings(clips.reshape(b * t, *clips.shape[2:]))  # (B*T, E)
        return self.pool(x.view(b, t, -1))  # (B, E)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """Args: clips: (B, T, C, H, W). Returns: (B, K) logits, logit_scale.exp() * cosine(video, class text)."""
        return self.head(self.pooled_embedding(clips), self.class_text(), self.clip.logit_scale)  # (B, K)


# ---------------------------------------------------------------------------------------------------- FLOPs


class _PromptTextPass(nn.Module):
    """Runs the teacher's text tower once over its K class prompts (for counting that one-off cost)."""

    def __init__(self, teacher: ViFiCLIP) -> None:
        super().__init__()
        self.teacher = teacher

    def forward(self, unused: torch.Tensor) -> torch.Tensor:
        return self.teacher.text_embeddings()  # (K, E)


@register_flop_rule(_PromptTextPass)
def _prompt_text_pass(m: _PromptTextPass, inputs: tuple, out: torch.Tensor) -> list[Cost]:
    """The text tower's functional parts (its modules count themselves): positional add K*L*W, causal-mask adds
    layers*heads*K*L*L, end-token projection 2*K*W*E, L2-normalise 3*K*E."""
    clip = m.teacher.clip
    (k, e), (L, w) = out.shape, clip.positional_embedding.shape
    blocks = clip.transformer.resblocks
    mask = len(blocks) * blocks[0].attn.num_heads * k * L * L if clip.attn_mask is not None else 0
    mm = 2 * k * w * e
    return [Cost(k * L * w + mask + mm + 3 * k * e, mm, f"pos {k * L * w} + mask {mask} + 2*{k}*{w}*{e} + norm")]


@dataclass(frozen=True)
class VideoTeacherFlops:
    """Inference cost of the video teacher on one clip, and the one-off cost of its class-prompt text embeddings.

    Attributes:
        clip: FLOPs per clip, T x the frame tower + temporal mean + cosine head against the cached text (report).
        per_frame: FLOPs of the frame tower (adapter + image tower) for one frame.
        text: the text tower over all K class prompts, paid once (the cache), not per clip (report; its params
            are the text tower's).
    """

    clip: FlopReport
    per_frame: int
    text: FlopReport


def video_teacher_flops(teacher: ViFiCLIP, clip_shape: Sequence[int]) -> VideoTeacherFlops:
    """Count the teacher per clip of clip_shape (T, C, H, W) and its text tower's one-off cost.

    Returns:
        VideoTeacherFlops; `clip.flops` is what a prefix.csv row calls the teacher's FLOPs.
    """
    if len(clip_shape) != 4:
        raise ValueError(f"clip_shape must be (T, C, H, W), got {tuple(clip_shape)!r}")
    teacher.refresh_text_cache()  # so the counted forward reads the cache and runs no text tower
    report = count_flops(teacher, tuple(clip_shape))
    frames = sum(r.flops for r in report.rows if r.name.startswith(("adapter", "clip.visual")))
    text = count_flops(_PromptTextPass(teacher), (1,))
    text_params = sum(p.numel() for p in teacher.text_params())
    return VideoTeacherFlops(clip=report, per_frame=frames // clip_shape[0], text=replace(text, params=text_params))
