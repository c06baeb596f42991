"""Building the video teacher's CLIP with open_clip: the one module that imports open_clip, and only inside
functions (tests/test_layout.py checks it).

open_clip is imported lazily by `load_open_clip()` (about 3 s: it pulls in timm and huggingface_hub) when the
first teacher is built, so importing pkd.models costs nothing and image runs never import open_clip. Nothing
here downloads: models are built with `pretrained=None` from pkd's own config `pkd-tiny-clip.json` (beside this
file) or any stock open_clip config name; the BPE tokenizer ships inside the open_clip wheel; real weights come
only from local files (pkd.models.clip.weights.load_clip_weights). Loading open_clip also registers the FLOP rules
of its own modules (pkd.flops).
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn as nn

from pkd.flops import Cost, register_flop_rule, residual_add

__all__ = ["TINY_CLIP", "TINY_CLIP_RN", "load_open_clip", "clip_tokenizer", "create_clip", "text_global_pool",
           "resize_pos_embed"]

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
def clip_tokenizer(name: str):
    """open_clip's tokenizer of a config (its BPE vocabulary is parsed once per process, about a second)."""
    return load_open_clip().get_tokenizer(name)


class _NoRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:  # open_clip warns on every random init, which is ours
        return "initialized randomly" not in record.getMessage()


def create_clip(name: str, image_size: int | None) -> nn.Module:
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


def text_global_pool(x: torch.Tensor, tokens: torch.Tensor, pool_type: str, eos_token_id: int | None
                     ) -> torch.Tensor:
    """open_clip's pooling of a text tower's output (N, L, W) -> (N, W): the end tokens' features."""
    from open_clip.transformer import text_global_pool as pool

    return pool(x, tokens, pool_type, eos_token_id=eos_token_id)


def resize_pos_embed(state: dict[str, torch.Tensor], clip: nn.Module) -> None:
    """open_clip's interpolation of a ViT's positional grid in `state` (in place) to the size of `clip`'s."""
    from open_clip.model import resize_pos_embed as resize

    resize(state, clip)


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
