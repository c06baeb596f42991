"""The ViFi-CLIP-style video teacher: an open_clip CLIP applied to every frame, the frame embeddings averaged over
time, cosine similarity against cached text embeddings of one prompt per class.

ViFi-CLIP (Rasheed et al., CVPR 2023; muzairkhattak/ViFi-CLIP `trainers/vificlip.py`): frames (B*T, C, H, W) ->
image tower -> view(B, T, E).mean(1) -> L2-normalise -> logit_scale.exp() * video @ text.T. No temporal module, so
a clip and its time-reverse get the same logits (here bit for bit: see TemporalMean).

Letters: B clips, T frames per clip, C channels of a frame (1 grey or 3 RGB), H/W frame size, S the CLIP's image
side, E the joint embedding width, K classes, L text context length, W text width, n learnable prompt tokens.

open_clip is imported lazily by `load_open_clip()` (about 3 s: it pulls in timm and huggingface_hub) when the
first teacher is built, so importing this module costs nothing and image runs never import open_clip. Nothing
here downloads: models are built with `pretrained=None` from pkd's own config `pkd-tiny-clip.json` (beside this
file) or any stock open_clip config name; the BPE tokenizer ships inside the open_clip wheel; real weights come
only from local files (`load_clip_weights`).

Grey frames: a 1-channel frame is repeated to the CLIP's 3 input channels (open_clip's patch embedding is fixed
at 3), so the code path and real RGB weights stay unchanged; it costs 3x the patch-embedding multiply-adds.
"""

from __future__ import annotations

import logging
import pickle
import re
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from pkd.flops import Cost, FlopReport, count_flops, register_flop_rule, residual_add
from pkd.models.registry import register_teacher
from pkd.models.checks import check_int

logger = logging.getLogger(__name__)

__all__ = ["TINY_CLIP", "TINY_CLIP_RN", "load_open_clip", "ViFiCLIP", "FrameAdapter", "TemporalMean", "CosineHead",
           "load_clip_weights", "VideoTeacherFlops", "video_teacher_flops"]

TINY_CLIP = "pkd-tiny-clip"  # vision 64x64, patch 8, width 64, 2 layers; text context 16, width 64, 2 layers
# The same text tower with CLIP's ModifiedResNet image tower (as RN50, one bottleneck per stage, stem width 8):
# it learns digits from scratch far faster on a CPU than the tiny ViT (97% of frames after 2 epochs, not 84%).
TINY_CLIP_RN = "pkd-tiny-clip-rn"
_CONFIGS = [Path(__file__).with_name(f"{name}.json") for name in (TINY_CLIP, TINY_CLIP_RN)]
_OPEN_CLIP = None


def load_open_clip():
    """Import open_clip once, register pkd's tiny config and the FLOP rules of open_clip's modules; return it."""
    global _OPEN_CLIP
    if _OPEN_CLIP is None:
        import open_clip
        from open_clip import modified_resnet, transformer

        for config in _CONFIGS:
            open_clip.add_model_config(config)
        _register_open_clip_rules(transformer)
        _register_modified_resnet_rules(modified_resnet)
        _OPEN_CLIP = open_clip
    return _OPEN_CLIP


@lru_cache(maxsize=None)
def _tokenizer(name: str):
    """open_clip's tokenizer of a config (its BPE vocabulary is parsed once per process, about a second)."""
    return load_open_clip().get_tokenizer(name)


class _NoRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:  # open_clip warns on every random init, which is ours
        return "initialized randomly" not in record.getMessage()


def _create_clip(name: str, image_size: int | None) -> nn.Module:
    """open_clip.create_model(name, pretrained=None): a randomly initialised CLIP, nothing downloaded."""
    open_clip = load_open_clip()
    if name not in open_clip.list_models():
        raise ValueError(f"unknown open_clip config '{name}'; use '{TINY_CLIP}' or a stock name such as ViT-B-16 "
                         f"(open_clip.list_models() lists {len(open_clip.list_models())})")
    cfg = open_clip.get_model_config(name)
    vision, text = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    if "timm_model_name" in vision or "hf_model_name" in text \
            or "hf_tokenizer_name" in text or cfg.get("custom_text") or "multimodal_cfg" in cfg:
        raise ValueError(f"open_clip config '{name}' is not a plain CLIP with open_clip's own image tower (a ViT or "
                         f"CLIP's ModifiedResNet), text tower and tokenizer (nothing to download), which the video "
                         f"teacher needs (e.g. ViT-B-16 or RN50)")
    if isinstance(vision.get("layers"), (list, tuple)) and (image_size or vision.get("image_size", 224)) < 32:
        raise ValueError(f"CLIP's ModifiedResNet downsamples 32x: image_size must be >= 32 for '{name}', got "
                         f"{image_size}; set teacher.params.image_size (frames are resized to it)")
    quiet = _NoRandomInitWarning()
    logging.getLogger().addFilter(quiet)
    try:
        clip = open_clip.create_model(name, pretrained=None, force_image_size=image_size)
    finally:
        logging.getLogger().removeFilter(quiet)
    return clip


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


@register_teacher("vifi_clip")
class ViFiCLIP(nn.Module):
    """Video classifier after ViFi-CLIP on an open_clip CLIP: frame encode -> temporal mean -> cosine vs classes.

    The class prompts' text embeddings (K, E) are computed once and kept in the buffer `text_cache` (saved with
    the state dict). Training forwards (train mode, grad enabled, some text weight trainable) encode the prompts
    live so the text tower learns; everything else reads the cache, which is refreshed by `refresh_text_cache()`:
    at construction, after `load_state_dict`, by `load_clip_weights` and `set_classes`, at the end of every
    training stage in pkd.train.video_teacher, and on an eval forward that finds a text weight changed in place
    since the last refresh (tracked with the tensors' version counters).

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
        if not isinstance(template, str) or template.count("{}") != 1:
            raise ValueError(f"template must be a string with one '{{}}' for the class name, got {template!r}")
        self.clip = _create_clip(clip_model, image_size)
        self.tokenizer = _tokenizer(clip_model)
        self.context_length = self.clip.context_length
        pre = self.clip.visual.preprocess_cfg
        side = self.clip.visual.image_size  # a ViT's is (S, S), CLIP's ModifiedResNet's an int
        self.adapter = FrameAdapter(in_channels, (side, side) if isinstance(side, int) else side, pre["mean"], pre["std"],
                                    input_mean, input_std)
        self.pool = TemporalMean()
        self.head = CosineHead()
        self.template, self.n_ctx, self.prompt_ctx, self.ctx_init = template, 0, None, ctx_init
        self.prompt_prefix = ""  # the text the context vectors replace (set by add_prompt_context)
        self.set_classes(class_names, refresh=False)
        if n_ctx:
            self.add_prompt_context(n_ctx, ctx_init, refresh=False)
        self.vision_ctx = None
        if hasattr(self.clip.visual, "ln_pre"):  # a ViT (CLIP's ModifiedResNet has no tokens to prompt)
            self.clip.visual.ln_pre.register_forward_pre_hook(self._append_vision_ctx)
        if n_ctx_vision:
            self.add_vision_context(n_ctx_vision)
        self.register_load_state_dict_post_hook(lambda module, keys: module.refresh_text_cache())
        self.refresh_text_cache()

    @staticmethod
    def data_params(data_spec) -> dict:
        """The params this teacher's spec takes from the dataset (a pkd.data.DatasetSpec; see
        pkd.models.registry.teacher_data_params): its text prompts are the dataset's class names, it reads the
        frames' channels, undoes their normalisation (its FrameAdapter) and by default runs its CLIP at the frames'
        own side (no resize)."""
        return {"class_names": list(data_spec.class_names), "in_channels": data_spec.sample_shape[-3],
                "input_mean": float(data_spec.mean[0]), "input_std": float(data_spec.std[0]),
                "image_size": data_spec.sample_shape[-1]}

    # ------------------------------------------------------------------------------------------------ text side

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids (N, L) of texts; a text longer than the context is refused (open_clip would cut it)."""
        for text in texts:
            n = len(self.tokenizer.encode(text)) + 2  # + start and end tokens
            if n > self.context_length:
                raise ValueError(f"prompt {text!r} needs {n} tokens but the CLIP's context is {self.context_length}; "
                                 f"shorten the class name or template, or use a config with a longer context_length")
        return self.tokenizer(list(texts))  # (N, L)

    def _prompts(self, class_names: Sequence[str]) -> list[str]:
        if not self.n_ctx:
            return [self.template.format(name) for name in class_names]
        return [f"{self.prompt_prefix} {name}." for name in class_names]  # CoOp / ViFi: context, name, full stop

    def set_classes(self, class_names: Sequence[str], refresh: bool = True) -> None:
        """Score these K classes from now on (e.g. novel classes in a base-to-novel evaluation)."""
        if isinstance(class_names, str) or len(class_names) < 2 or len(set(class_names)) != len(class_names) or \
                not all(isinstance(c, str) and c.strip() for c in class_names):
            raise ValueError(f"class_names must be at least 2 distinct non-empty strings, got {class_names!r}")
        self.class_names = tuple(class_names)
        tokens = self.tokenize(self._prompts(self.class_names))  # (K, L)
        device = self.clip.logit_scale.device
        self.register_buffer("prompt_tokens", tokens.to(device), persistent=False)
        self.register_buffer("text_cache", torch.zeros(len(tokens), self.clip.visual.output_dim,
                                                       device=device))  # (K, E)
        if refresh:
            self.refresh_text_cache()

    def add_prompt_context(self, n_ctx: int, ctx_init: str = "a photo of a", refresh: bool = True) -> None:
        """Learnable prompt context (CoOp; ViFi-CLIP's "bridge and prompt"): n vectors of width W replace the
        prompt's first n tokens after the start token, before the class name. Initialised from the embedding of
        ctx_init when it has exactly n tokens (with the default template this leaves the logits unchanged),
        else N(0, 0.02) as CoOp does (prompts then read "X X ... X name.")."""
        check_int("n_ctx", n_ctx)
        init = self.tokenizer.encode(ctx_init) if ctx_init else []
        self.prompt_prefix = ctx_init if len(init) == n_ctx else " ".join(["X"] * n_ctx)
        self.n_ctx, self.ctx_init = n_ctx, ctx_init
        self.set_classes(self.class_names, refresh=False)
        with torch.no_grad():
            if len(init) == n_ctx:
                ctx = self.clip.token_embedding(self.prompt_tokens[:1, 1:1 + n_ctx])[0]  # (n, W)
            else:
                ctx = torch.randn(n_ctx, self.clip.token_embedding.weight.shape[1]) * 0.02
        self.prompt_ctx = nn.Parameter(ctx.clone().to(self.clip.logit_scale.device))  # (n, W)
        if refresh:
            self.refresh_text_cache()

    def reset_prompt_context(self) -> None:
        """Initialise the prompt context again from the current token embeddings (after the text tower trained or
        was loaded: context vectors embedded by an older text tower would no longer read as ctx_init)."""
        if self.n_ctx:
            self.add_prompt_context(self.n_ctx, self.ctx_init)

    def encode_tokens(self, tokens: torch.Tensor, ctx: torch.Tensor | None = None) -> torch.Tensor:
        """open_clip's CLIP.encode_text, with optional context vectors in place of tokens 1..n.

        Args: tokens: (N, L) ids; ctx: (n, W) or None. Returns: (N, E) unnormalised text features.
        """
        from open_clip.transformer import text_global_pool

        clip = self.clip
        x = clip.token_embedding(tokens)  # (N, L, W)
        if ctx is not None:
            x = torch.cat([x[:, :1], ctx.expand(len(x), -1, -1), x[:, 1 + len(ctx):]], dim=1)  # (N, L, W)
        x = x + clip.positional_embedding  # (N, L, W)
        x = clip.transformer(x, attn_mask=clip.attn_mask)  # (N, L, W)
        x = clip.ln_final(x)  # (N, L, W)
        x = text_global_pool(x, tokens, clip.text_pool_type, eos_token_id=clip.text_eos_id)  # (N, W) end tokens
        return clip.text_projection(x) if isinstance(clip.text_projection, nn.Linear) else x @ clip.text_projection

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised embeddings (N, E) of free texts (captions), without the prompt context."""
        return F.normalize(self.encode_tokens(self.tokenize(texts).to(self.prompt_tokens.device)), dim=-1)

    def text_embeddings(self, class_names: Sequence[str] | None = None) -> torch.Tensor:
        """L2-normalised embeddings (K, E) of the class prompts (template, or context + name), computed now."""
        tokens = self.prompt_tokens if class_names is None else \
            self.tokenize(self._prompts(class_names)).to(self.prompt_tokens.device)
        return F.normalize(self.encode_tokens(tokens, self.prompt_ctx), dim=-1)  # (K, E)

    def _text_params(self) -> list[torch.Tensor]:
        """Every weight the class-prompt embeddings depend on (the text tower and the prompt context)."""
        clip = self.clip
        parts = [clip.token_embedding, clip.transformer, clip.ln_final, clip.positional_embedding,
                 clip.text_projection, self.prompt_ctx]
        return [p for part in parts if part is not None
                for p in (part.parameters() if isinstance(part, nn.Module) else [part])]

    def _text_version(self) -> tuple[int, ...]:
        return tuple(p._version for p in self._text_params())

    def refresh_text_cache(self) -> None:
        """Recompute the cached class-prompt embeddings (K, E) from the current text tower."""
        with torch.no_grad():
            self.text_cache.copy_(self.text_embeddings())
        self._cache_version = self._text_version()

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)  # .to()/.float() move the cache with the weights: still valid
        self._cache_version = self._text_version()
        return out

    def _text_for_forward(self) -> torch.Tensor:
        if self.training and torch.is_grad_enabled() and any(p.requires_grad for p in self._text_params()):
            return self.text_embeddings()  # (K, E), the text tower is being trained
        if self._text_version() != self._cache_version:
            logger.info("text weights changed since the text cache was computed: refreshing it")
            self.refresh_text_cache()
        return self.text_cache  # (K, E)

    # ------------------------------------------------------------------------------------------------ video side

    def add_vision_context(self, n_ctx: int) -> None:
        """Learnable vision prompts (VPT-shallow, as ViFi-CLIP's `image_encoder.VPT`): n vectors of the ViT's width,
        N(0, 0.02), appended to every frame's tokens after the positional embedding (before ln_pre). The frame's
        feature stays the class token's, so the prompts act only through attention."""
        check_int("n_ctx_vision", n_ctx)
        if getattr(self.clip.visual, "pool_type", None) != "tok" or getattr(self.clip.visual, "attn_pool", 1) is not None:
            raise ValueError("vision prompts need a ViT that pools its class token (pool_type 'tok')")
        width = self.clip.visual.positional_embedding.shape[1]
        self.vision_ctx = nn.Parameter(
            (torch.randn(n_ctx, width) * 0.02).to(self.clip.logit_scale.device))  # (n, W_vision)

    def prompt_params(self) -> dict[str, int]:
        """The constructor arguments that rebuild this teacher's prompt parameters (for its saved spec)."""
        return {"n_ctx": self.n_ctx, "n_ctx_vision": 0 if self.vision_ctx is None else len(self.vision_ctx)}

    def _append_vision_ctx(self, module: nn.Module, args: tuple) -> tuple | None:
        """Forward pre-hook of the ViT's ln_pre: (N, P+1, W) tokens -> (N, P+1+n, W) with the vision prompts."""
        if self.vision_ctx is None:
            return None
        x = args[0]
        return (torch.cat([x, self.vision_ctx.to(x.dtype).expand(len(x), -1, -1)], dim=1), *args[1:])

    def frame_embeddings(self, frames: torch.Tensor) -> torch.Tensor:
        """Args: frames: (N, C, H, W) as the data gives them. Returns: (N, E) unnormalised image features."""
        return self.clip.visual(self.adapter(frames))  # (N, E)

    def video_embedding(self, clips: torch.Tensor) -> torch.Tensor:
        """Args: clips: (B, T, C, H, W). Returns: (B, E) L2-normalised mean frame embedding."""
        return F.normalize(self._pooled(clips), dim=-1)

    def _pooled(self, clips: torch.Tensor) -> torch.Tensor:
        if clips.dim() != 5:
            raise ValueError(f"clips must be (B, T, C, H, W), got shape {tuple(clips.shape)}")
        b, t = clips.shape[:2]
        x = self.frame_embeddings(clips.reshape(b * t, *clips.shape[2:]))  # (B*T, E)
        return self.pool(x.view(b, t, -1))  # (B, E)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """Args: clips: (B, T, C, H, W). Returns: (B, K) logits, logit_scale.exp() * cosine(video, class text)."""
        return self.head(self._pooled(clips), self._text_for_forward(), self.clip.logit_scale)  # (B, K)


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


def _register_open_clip_rules(transformer) -> None:
    """FLOP rules for open_clip's own modules (torch's layers inside them are counted by pkd.flops)."""

    @register_flop_rule(transformer.VisionTransformer)
    def _vit(m, inputs: tuple, out) -> list[Cost]:
        """The ViT's functional parts: positional add N*(P+1)*W, projection of the pooled token 2*N*W*E."""
        if m.attn_pool is not None or m.output_tokens:
            raise ValueError("no FLOP rule for open_clip's attentional pooling / token outputs; register one")
        n, (tokens, w) = inputs[0].shape[0], m.positional_embedding.shape
        mm = 2 * n * w * m.proj.shape[1] if m.proj is not None else 0
        return [Cost(n * tokens * w + mm, mm, f"pos {n * tokens * w} + 2*{n}*{w}*{m.output_dim}")]

    @register_flop_rule(transformer.ResidualAttentionBlock)
    def _block(m, inputs: tuple, out: torch.Tensor) -> list[Cost]:
        """Pre-norm transformer block's two residual adds (attention, MLP): 2 per element of its output."""
        return [Cost(2 * out.numel(), 0, f"2*{out.numel()} (two residual adds)")]

    @register_flop_rule(transformer.QuickGELU)
    def _quick_gelu(m, inputs: tuple, out: torch.Tensor) -> list[Cost]:
        """QuickGELU x*sigmoid(1.702x): multiply, exp, add, divide, multiply = 5 per element."""
        return [Cost(5 * out.numel(), 0, f"5*{out.numel()}")]

    @register_flop_rule(transformer.LayerScale)
    def _layer_scale(m, inputs: tuple, out: torch.Tensor) -> list[Cost]:
        """LayerScale x*gamma: 1 per element."""
        return [Cost(out.numel(), 0, f"{out.numel()} (1/elem)")]


def _register_modified_resnet_rules(modified_resnet) -> None:
    """FLOP rules for the functional parts of CLIP's ModifiedResNet image tower (its convs, BatchNorms, ReLUs and
    average pools are counted by pkd.flops)."""
    register_flop_rule(modified_resnet.Bottleneck)(residual_add)  # out += identity

    @register_flop_rule(modified_resnet.AttentionPool2d, opaque=True)
    def _attention_pool(m, inputs: tuple, out: torch.Tensor) -> list[Cost]:
        """CLIP's attention pooling of (N, C, H, W) over L = HW+1 tokens (the mean token first), every token a
        query as open_clip computes it (only the first is kept): mean N*C*HW, positions N*L*C, q/k/v projections
        3*2*N*L*C*C (+ biases 3*N*L*C), q scaling N*L*C, scores and mix 2*2*N*L*L*C, softmax 5*N*h*L*L, output
        projection 2*N*L*C*E (+ bias N*L*E). Functional (F.multi_head_attention_forward), so one opaque rule."""
        n, c, h, w = inputs[0].shape
        tokens, e, heads = h * w + 1, m.c_proj.out_features, m.num_heads
        proj, scores, out_proj = 3 * 2 * n * tokens * c * c, 2 * 2 * n * tokens * tokens * c, 2 * n * tokens * c * e
        softmax = 5 * n * heads * tokens * tokens
        other = n * c * h * w + n * tokens * c + 3 * n * tokens * c + n * tokens * c + softmax + n * tokens * e
        contraction = proj + scores + out_proj
        return [Cost(contraction + other, contraction, f"proj {proj} + scores/mix {scores} + out {out_proj} + "
                                                       f"softmax {softmax} (+ {other - softmax} mean/pos/bias/scale)")]


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
    text_params = sum(p.numel() for p in teacher._text_params())
    return VideoTeacherFlops(clip=report, per_frame=frames // clip_shape[0], text=replace(text, params=text_params))


# ---------------------------------------------------------------------------------------------------- weights

# ViFi-CLIP wraps the CLIP: image_encoder = clip.visual, text_encoder = (transformer, positional_embedding,
# ln_final, text_projection), prompt_learner = buffers derived from the class names (+ ctx when prompting).
_VIFI_PREFIXES = (("image_encoder.VPT", "vision_ctx"), ("image_encoder.", "visual."), ("text_encoder.", ""),
                  ("prompt_learner.ctx", "prompt_ctx"))
_VIFI_DERIVED = ("prompt_learner.token_prefix", "prompt_learner.token_suffix",
                 "prompt_learner.complete_text_embeddings")
_WRAPPERS = ("module.", "model.", "clip.", "_orig_mod.")


class _IgnoredObject:
    """Stand-in for the yacs CfgNode (a dict subclass) that ViFi-CLIP pickles into its checkpoints: it is read
    as a plain OrderedDict of primitives (no yacs needed, none of its code run) and then ignored."""

    def __new__(cls, *args: object) -> OrderedDict:
        return OrderedDict()


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of one file: safetensors, or a torch file read with weights_only=True (never arbitrary pickles)."""
    with open(path, "rb") as f:
        head = f.read(9)
    if zipfile.is_zipfile(path) and any(n.endswith("constants.pkl") for n in zipfile.ZipFile(path).namelist()):
        raise ValueError(f"{path}: a TorchScript archive (as OpenAI's CLIP downloads are), which pkd does not run; "
                         f"load it in a trusted session and save its state_dict() with safetensors")
    try:
        if len(head) == 9 and head[8:9] == b"{":  # safetensors: 8-byte header length, then JSON
            from safetensors import SafetensorError
            from safetensors.torch import load_file

            try:
                return load_file(str(path), device="cpu")
            except SafetensorError as e:
                raise ValueError(f"safetensors: {e}") from None
        with torch.serialization.safe_globals([(_IgnoredObject, "yacs.config.CfgNode")]):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f"a Python object ({found.group(1)})" if found else "Python objects"
        raise ValueError(f"{path}: refused, it holds {what} beyond tensors (it could run code when loaded); "
                         f"re-save only its weights, e.g. safetensors.torch.save_file(model.state_dict(), "
                         f"'clip.safetensors')") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: not a readable safetensors or torch weights file (truncated or damaged? "
                         f"{first[:160]}); copy it again or re-save it") from None
    for key in ("state_dict", "model"):  # open_clip training checkpoints / ViFi-CLIP's epoch_saving
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError(f"{path}: expected a state dict of tensors (or {{'state_dict': ...}} / {{'model': ...}}), "
                         f"got {type(data).__name__}; save model.state_dict()")
    return data


def _open_clip_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map DDP/ViFi-CLIP/pkd key spellings to open_clip's CLIP keys (+ `prompt_ctx`); drop ViFi's derived buffers."""
    out = {}
    for key, value in state.items():
        for wrapper in _WRAPPERS:
            key = key[len(wrapper):] if key.startswith(wrapper) else key
        if key in _VIFI_DERIVED or key == "text_cache":
            continue
        for old, new in _VIFI_PREFIXES:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    return out


def load_clip_weights(teacher: ViFiCLIP, paths: str | Path | Sequence[str | Path]) -> None:
    """Load a user's open_clip or ViFi-CLIP weights into the teacher (teacher.checkpoint), files in order.

    ViFi-CLIP checkpoints hold no token embedding (its prompts were embedded once, into buffers): list the base
    CLIP's weights first, then the ViFi-CLIP file. Every key of the teacher's CLIP must be covered, every key read
    must fit; otherwise one line names the missing/unexpected keys and shape mismatches and what to do.
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    state: dict[str, torch.Tensor] = {}
    for path in paths:
        path = Path(path).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"teacher.checkpoint {path} does not exist; give a local .safetensors/.pt file")
        state.update(_open_clip_keys(_read_state_dict(path)))
    own = teacher.clip.state_dict()
    if "visual.positional_embedding" in state and state["visual.positional_embedding"].shape != \
            own["visual.positional_embedding"].shape:
        from open_clip.model import resize_pos_embed

        resize_pos_embed(state, teacher.clip)  # real weights at another image size: interpolate the grid
    ctx, vision_ctx = state.pop("prompt_ctx", None), state.pop("vision_ctx", None)
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in sorted(set(own) & set(state))
              if state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        hint = ("ViFi-CLIP files hold no token embedding: list the base CLIP weights first, then the ViFi-CLIP file"
                if missing == ["token_embedding.weight"] else
                "ViFi-CLIP's deep prompts (PROMPT_DEPTH above 1) are not supported, only shallow ones (depth 1)"
                if any("VPT_shallow" in k for k in unexpected) else
                "build the teacher with the open_clip config the weights were trained with (teacher params "
                "clip_model, e.g. ViT-B-16)")
        raise ValueError(f"{', '.join(map(str, paths))} does not fit open_clip '{teacher.clip.__class__.__name__}' "
                         f"of this teacher: missing {len(missing)} {missing[:4]}, unexpected {len(unexpected)} "
                         f"{unexpected[:4]}, shape mismatches {shapes[:3]}; {hint}")
    teacher.clip.load_state_dict(state, strict=True)
    if ctx is not None:
        if ctx.dim() != 2 or ctx.shape[1] != teacher.clip.token_embedding.weight.shape[1]:
            raise ValueError(f"prompt context of shape {tuple(ctx.shape)} does not fit text width "
                             f"{teacher.clip.token_embedding.weight.shape[1]}")
        teacher.add_prompt_context(ctx.shape[0], "", refresh=False)
        with torch.no_grad():
            teacher.prompt_ctx.copy_(ctx)
    else:  # a context built before these weights came would be the embedding of another text tower
        teacher.reset_prompt_context()
    if vision_ctx is not None:
        if vision_ctx.dim() != 2 or vision_ctx.shape[1] != teacher.clip.visual.positional_embedding.shape[1]:
            raise ValueError(f"vision prompts of shape {tuple(vision_ctx.shape)} do not fit the ViT's width "
                             f"{teacher.clip.visual.positional_embedding.shape[1]}")
        teacher.add_vision_context(vision_ctx.shape[0])
        with torch.no_grad():
            teacher.vision_ctx.copy_(vision_ctx)
    teacher.refresh_text_cache()
    logger.info("loaded %d CLIP tensors from %s", len(state), ", ".join(map(str, paths)))
