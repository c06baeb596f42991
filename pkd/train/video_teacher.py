"""The video teacher's three training stages, after ViFi-CLIP's story, on plain tensors (no data module, no run
directory: pkd.train.progressive wires them in):

1. `pretrain_image_text`: CLIP's contrastive image-text pretraining on single frames with captions.
2. `finetune_vifi`: ViFi-CLIP fine-tuning of both towers on clips (frame encode -> temporal mean -> cosine vs the
   class prompts), cross-entropy with label smoothing, AdamW, cosine schedule after a linear warm-up.
3. `bridge_and_prompt`: ViFi-CLIP's low-data stage: both towers frozen, only prompt vectors learnt: text
   context (CoOp-style, initialised from "a photo of a") and optionally vision prompt tokens (VPT-shallow).

Each is one seeded loop: the same teacher, data and seed give the same weights (same machine). Each returns the
mean training loss of every epoch and leaves the teacher in eval mode with its text cache refreshed.
Letters: N samples, B batch, T frames, C/H/W a frame, K classes, E embedding width.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from pkd.config import OptimConfig
from pkd.models.clip import ViFiCLIP

__all__ = ["contrastive_loss", "pretrain_image_text", "finetune_vifi", "bridge_and_prompt", "CAPTION",
           "FrameTextPretraining", "LABEL_SMOOTHING"]

EpochHook = Callable[[int, float], None]  # (1-based epoch, its mean loss): progress, metrics, checkpoints
MAX_LOGIT_SCALE = math.log(100.0)  # CLIP clamps its temperature to at most 100
CAPTION = "a photo of a {}."  # stage 1's caption of a frame showing digit d: CLIP's template with the digit as name
LABEL_SMOOTHING = 0.1  # ViFi-CLIP's fine-tuning loss (its configs' LABEL_SMOOTHING)


class FrameTextPretraining(torch.nn.Module):
    """Stage 1 inside pkd's training loop (pkd.train.loop.fit): the teacher's CLIP seen as an image-text model on
    single frames. Every frame of a training clip is one image whose caption names the clip's digit
    (CAPTION.format(d)); the loss is `contrastive_loss` against the captions' text embeddings.

    Args:
        teacher: the video teacher (its CLIP is what trains).
        captions: the distinct captions, caption i for digit i (U = 10 for digits).
    """

    def __init__(self, teacher: ViFiCLIP, captions: Sequence[str]) -> None:
        super().__init__()
        self.teacher = teacher
        self.register_buffer("caption_tokens", teacher.tokenize(captions), persistent=False)  # (U, L)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """Args: clips: (B, T, C, H, W) normalised as the data gives them. Returns: (B*T, E) unit image embeddings."""
        frames = clips.flatten(0, 1)  # (B*T, C, H, W)
        return F.normalize(self.teacher.frame_embeddings(frames), dim=-1)  # (B*T, E)

    def loss(self, image: torch.Tensor, caption_ids: torch.Tensor) -> torch.Tensor:
        """Args: image: (B*T, E) from forward; caption_ids: (B,) the caption of each clip. Returns: () the loss."""
        frames = len(image) // len(caption_ids)
        ids = caption_ids.to(image.device).repeat_interleave(frames)  # (B*T,) clip-major, as forward flattens
        text = F.normalize(self.teacher.encode_tokens(self.caption_tokens), dim=-1)  # (U, E)
        scale = self.teacher.clip.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()  # CLIP's temperature cap
        return contrastive_loss(image, text[ids], scale, ids)


def contrastive_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor,
                     caption_ids: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE (Radford et al. 2021) where samples with the same caption are all positives.

    With few distinct captions ("a photo of a 3.") a batch holds many copies of each, and plain CLIP loss would
    push equal captions apart; the target of each row is uniform over the samples sharing its caption. With
    distinct captions this is exactly open_clip's ClipLoss.
    Args: image, text: (B, E) L2-normalised; logit_scale: () the exponentiated scale; caption_ids: (B,).
    """
    logits = logit_scale * image @ text.T  # (B, B)
    same = (caption_ids[:, None] == caption_ids[None, :]).float()  # (B, B), symmetric
    targets = same / same.sum(dim=1, keepdim=True)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def _schedule(params: list[torch.nn.Parameter], optim: OptimConfig, steps: int, warmup: float):
    """AdamW with a linear warm-up over `warmup` of the steps, then a cosine decay to 0."""
    optimizer = torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay)
    warm = max(1, round(warmup * steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    yield from order.split(batch_size)


def _check(name: str, x: torch.Tensor, dims: int, n: int, per: str) -> None:
    if x.dim() != dims or len(x) != n or n == 0:
        raise ValueError(f"{name} must be a {dims}-dimensional tensor with one row per {per} ({n}), got shape "
                         f"{tuple(x.shape)}")


def _finish(teacher: ViFiCLIP) -> None:
    for p in teacher.parameters():
        p.requires_grad_(True)
    teacher.eval()
    teacher.refresh_text_cache()  # the text tower (or the context) changed: the class prompts' cache follows


def _run(teacher: ViFiCLIP, params: list, n: int, optim: OptimConfig, warmup: float, seed: int,
         step_loss: Callable[[torch.Tensor], torch.Tensor], on_epoch: EpochHook | None) -> list[float]:
    """The shared loop: seeded shuffles, AdamW + warm-up/cosine, CLIP's temperature clamp, per-epoch means."""
    generator = torch.Generator().manual_seed(seed)
    steps = optim.epochs * math.ceil(n / optim.batch_size)
    optimizer, scheduler = _schedule(params, optim, steps, warmup)
    losses = []
    for epoch in range(optim.epochs):
        total = 0.0
        for idx in _batches(n, optim.batch_size, generator):
            loss = step_loss(idx)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"video teacher loss became {loss.item()} in epoch {epoch + 1}; "
                                         f"lower the learning rate (optim.lr)")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            with torch.no_grad():
                teacher.clip.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
            total += float(loss.detach()) * len(idx)
        losses.append(total / n)
        if on_epoch is not None:
            on_epoch(epoch + 1, losses[-1])
    return losses


def pretrain_image_text(teacher: ViFiCLIP, frames: torch.Tensor, captions: Sequence[str], optim: OptimConfig,
                        warmup: float = 0.1, seed: int = 0, on_epoch: EpochHook | None = None) -> list[float]:
    """Stage 1: contrastive pretraining of both towers (and the temperature) on frames with captions.

    Args: frames: (N, C, H, W) single frames; captions: N texts, e.g. "a photo of a 3.". Returns: epoch losses.
    """
    _check("frames", frames, 4, len(captions), "caption")
    unique = sorted(set(captions))
    tokens = teacher.tokenize(unique).to(teacher.prompt_tokens.device)  # (U, L)
    ids = torch.tensor([unique.index(c) for c in captions])  # (N,)
    device = tokens.device
    teacher.train()

    def step_loss(idx: torch.Tensor) -> torch.Tensor:
        image = F.normalize(teacher.frame_embeddings(frames[idx].to(device)), dim=-1)  # (B, E)
        text = F.normalize(teacher.encode_tokens(tokens[ids[idx]]), dim=-1)  # (B, E)
        return contrastive_loss(image, text, teacher.clip.logit_scale.exp(), ids[idx].to(device))

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        losses = _run(teacher, list(teacher.clip.parameters()), len(ids), optim, warmup, seed, step_loss, on_epoch)
    _finish(teacher)
    return losses


def finetune_vifi(teacher: ViFiCLIP, clips: torch.Tensor, labels: torch.Tensor, optim: OptimConfig,
                  label_smoothing: float = 0.1, warmup: float = 0.1, seed: int = 0,
                  on_epoch: EpochHook | None = None) -> list[float]:
    """Stage 2: ViFi-CLIP fine-tuning of both towers; the class prompts are encoded live at every step.

    Args: clips: (N, T, C, H, W); labels: (N,) class indices into teacher.class_names. Returns: epoch losses.
    """
    _check("clips", clips, 5, len(labels), "label")
    device = teacher.prompt_tokens.device
    for p in teacher.parameters():
        p.requires_grad_(True)
    teacher.train()

    def step_loss(idx: torch.Tensor) -> torch.Tensor:
        logits = teacher(clips[idx].to(device))  # (B, K)
        return F.cross_entropy(logits, labels[idx].to(device), label_smoothing=label_smoothing)

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        losses = _run(teacher, list(teacher.parameters()), len(labels), optim, warmup, seed, step_loss, on_epoch)
    _finish(teacher)
    return losses


def bridge_and_prompt(teacher: ViFiCLIP, clips: torch.Tensor, labels: torch.Tensor, optim: OptimConfig,
                      n_ctx: int = 4, ctx_init: str = "a photo of a", n_ctx_vision: int = 0,
                      label_smoothing: float = 0.1, warmup: float = 0.1, seed: int = 0,
                      on_epoch: EpochHook | None = None) -> list[float]:
    """Stage 3: freeze both towers and learn only prompt vectors: n_ctx text context vectors and, if
    n_ctx_vision > 0, as many vision prompt tokens (each added if the teacher has not got them).

    Without vision prompts the frozen image tower's video embeddings are computed once and each step runs only
    the text tower over the K prompts. Args: clips: (N, T, C, H, W); labels: (N,). Returns: epoch losses.
    """
    _check("clips", clips, 5, len(labels), "label")
    device = teacher.prompt_tokens.device
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        if teacher.n_ctx != n_ctx:
            teacher.add_prompt_context(n_ctx, ctx_init)
        if n_ctx_vision and (teacher.vision_ctx is None or len(teacher.vision_ctx) != n_ctx_vision):
            teacher.add_vision_context(n_ctx_vision)
    learnt = [teacher.prompt_ctx] + ([teacher.vision_ctx] if n_ctx_vision else [])
    for p in teacher.parameters():
        p.requires_grad_(any(p is q for q in learnt))
    teacher.eval()
    if not n_ctx_vision:
        with torch.no_grad():
            video = torch.cat([teacher.pooled_embedding(chunk.to(device))
                               for chunk in clips.split(optim.batch_size)])  # (N, E)
    scale = teacher.clip.logit_scale.detach()

    def step_loss(idx: torch.Tensor) -> torch.Tensor:
        pooled = teacher.pooled_embedding(clips[idx].to(device)) if n_ctx_vision else video[idx]  # (B, E)
        logits = teacher.head(pooled, teacher.text_embeddings(), scale)  # (B, K)
        return F.cross_entropy(logits, labels[idx].to(device), label_smoothing=label_smoothing)

    losses = _run(teacher, learnt, len(labels), optim, warmup, seed, step_loss, on_epoch)
    _finish(teacher)
    return losses
