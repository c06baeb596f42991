"""ViFi-CLIP's prompt learner on an open_clip CLIP: the class prompts and their text embeddings (with a cache), the
learnable text context (CoOp; ViFi-CLIP's "bridge and prompt") and the vision prompts (VPT-shallow).

`PromptLearner` is the text side the video teacher (pkd.models.clip.vificlip.ViFiCLIP) builds on: a base class,
not a submodule, so the prompt parameters and the cache stay the teacher's own attributes (`prompt_ctx`,
`vision_ctx`, `text_cache`): the keys of its state dict, which saved teachers and ViFi-CLIP's checkpoints map to.

Letters: N texts, K classes, L text context length, W text width, E the joint embedding width, n learnable
prompt tokens.
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from pkd.models.checks import check_int
from pkd.models.clip.open_clip import text_global_pool

logger = logging.getLogger(__name__)

__all__ = ["PromptLearner", "check_template"]


def check_template(template: str) -> None:
    """A class prompt's template must hold one "{}" for the class name."""
    if not isinstance(template, str) or template.count("{}") != 1:
        raise ValueError(f"template must be a string with one '{{}}' for the class name, got {template!r}")


class PromptLearner(nn.Module):
    """The class prompts of a CLIP-based classifier and what learns them; a subclass sets `self.clip` (an
    open_clip CLIP), `self.tokenizer` (its tokenizer) and `self.context_length`, then calls `init_prompts`.

    The class prompts' text embeddings (K, E) are computed once and kept in the buffer `text_cache` (saved with
    the state dict). Training forwards (train mode, grad enabled, some text weight trainable) encode the prompts
    live so the text tower learns; everything else reads the cache, which is refreshed by `refresh_text_cache()`:
    at construction, after `load_state_dict`, by `load_clip_weights` and `set_classes`, at the end of every
    training stage in pkd.train.video_teacher, and on an eval forward that finds a text weight changed in place
    since the last refresh (tracked with the tensors' version counters).
    """

    def init_prompts(self, class_names: Sequence[str], template: str, n_ctx: int, ctx_init: str,
                     n_ctx_vision: int) -> None:
        """The prompts of these classes (see ViFiCLIP's arguments), their cache filled; the vision prompts hook
        into a ViT's tokens."""
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

    def text_params(self) -> list[torch.Tensor]:
        """Every weight the class-prompt embeddings depend on (the text tower and the prompt context)."""
        clip = self.clip
        parts = [clip.token_embedding, clip.transformer, clip.ln_final, clip.positional_embedding,
                 clip.text_projection, self.prompt_ctx]
        return [p for part in parts if part is not None
                for p in (part.parameters() if isinstance(part, nn.Module) else [part])]

    def _text_version(self) -> tuple[int, ...]:
        return tuple(p._version for p in self.text_params())

    def refresh_text_cache(self) -> None:
        """Recompute the cached class-prompt embeddings (K, E) from the current text tower."""
        with torch.no_grad():
            self.text_cache.copy_(self.text_embeddings())
        self._cache_version = self._text_version()

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)  # .to()/.float() move the cache with the weights: still valid
        self._cache_version = self._text_version()
        return out

    def class_text(self) -> torch.Tensor:
        """The class prompts' embeddings (K, E) a forward scores against: encoded live while the text tower trains,
        else the cache (refreshed first if a text weight changed in place since)."""
        if self.training and torch.is_grad_enabled() and any(p.requires_grad for p in self.text_params()):
            return self.text_embeddings()  # (K, E), the text tower is being trained
        if self._text_version() != self._cache_version:
            logger.info("text weights changed since the text cache was computed: refreshing it")
            self.refresh_text_cache()
        return self.text_cache  # (K, E)

    # ------------------------------------------------------------------------------------------------ vision prompts

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
