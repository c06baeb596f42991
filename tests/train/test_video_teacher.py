"""The video teacher's training stages on tiny random tensors: they lower the loss, are deterministic, and the
prompt stage changes only the context vectors."""

from __future__ import annotations

import math

import pytest
import torch

from pkd.config import OptimConfig
from pkd.models.clip import ViFiCLIP
from pkd.train.video_teacher import bridge_and_prompt, contrastive_loss, finetune_vifi, pretrain_image_text
from tests.one_thread import one_thread  # noqa: F401 - autouse fixture

NAMES = ["0 moving left", "0 moving right", "1 moving left", "1 moving right"]
OPTIM = OptimConfig(epochs=6, batch_size=8, lr=3e-3, weight_decay=1e-3)


def _teacher() -> ViFiCLIP:
    torch.manual_seed(0)
    return ViFiCLIP(NAMES, image_size=16).eval()




def _clips(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise clips whose class k has a bright k-th quadrant in every frame (learnable in a few steps)."""
    g = torch.Generator().manual_seed(7)
    labels = torch.arange(n) % len(NAMES)
    clips = 0.3 * torch.rand(n, 3, 1, 16, 16, generator=g)
    for i, k in enumerate(labels.tolist()):
        clips[i, :, :, 8 * (k // 2):8 * (k // 2) + 8, 8 * (k % 2):8 * (k % 2) + 8] += 0.7
    return clips, labels


def _state(t: ViFiCLIP) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in t.state_dict().items()}


def test_contrastive_loss_is_open_clips_with_distinct_captions():
    from open_clip.loss import ClipLoss

    g = torch.Generator().manual_seed(0)
    image, text = (torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=-1) for _ in range(2))
    scale = torch.tensor(14.0)
    torch.testing.assert_close(contrastive_loss(image, text, scale, torch.arange(6)), ClipLoss()(image, text, scale))
    shared = contrastive_loss(image, text, scale, torch.tensor([0, 0, 1, 1, 2, 2]))
    assert torch.isfinite(shared) and shared < contrastive_loss(image, text, scale, torch.arange(6)) + 1


def test_pretraining_lowers_the_contrastive_loss_and_is_deterministic():
    frames = torch.rand(16, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    captions = [f"a photo of a {i % 4}." for i in range(16)]
    a, b = _teacher(), _teacher()
    losses = pretrain_image_text(a, frames, captions, OPTIM, seed=1)
    assert losses == pretrain_image_text(b, frames, captions, OPTIM, seed=1)
    assert losses[-1] < losses[0] and not a.training
    assert all(torch.equal(v, _state(b)[k]) for k, v in _state(a).items())


def test_vifi_finetuning_learns_and_refreshes_the_cache():
    clips, labels = _clips()
    t, epochs = _teacher(), []
    optim = OptimConfig(epochs=30, batch_size=16, lr=3e-4, weight_decay=1e-3)
    losses = finetune_vifi(t, clips, labels, optim, seed=2, on_epoch=lambda e, loss: epochs.append((e, loss)))
    assert losses[-1] < 0.6 * losses[0] and epochs == list(enumerate(losses, start=1))
    assert not t.training and torch.equal(t.text_cache, t.text_embeddings().detach())
    with torch.no_grad():
        assert (t(clips).argmax(1) == labels).float().mean() > 0.9


def test_vifi_finetuning_is_deterministic():
    clips, labels = _clips()
    a, b, c = _teacher(), _teacher(), _teacher()
    optim = OptimConfig(epochs=3, batch_size=8, lr=3e-4)
    losses = finetune_vifi(a, clips, labels, optim, seed=2)
    assert losses == finetune_vifi(b, clips, labels, optim, seed=2)
    assert all(torch.equal(v, _state(b)[k]) for k, v in _state(a).items())
    assert finetune_vifi(c, clips, labels, optim, seed=3) != losses  # the seed orders the batches


def test_prompt_learning_changes_only_the_context_vectors():
    clips, labels = _clips()
    t = _teacher()
    finetune_vifi(t, clips, labels, OptimConfig(epochs=1, batch_size=8, lr=1e-3), seed=0)
    before = _state(t)
    losses = bridge_and_prompt(t, clips, labels, OptimConfig(epochs=8, batch_size=16, lr=5e-2), n_ctx=4, seed=0)
    assert losses[-1] < losses[0]
    after = _state(t)
    assert set(after) - set(before) == {"prompt_ctx"}
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == ["text_cache"]  # the towers are untouched; the cache follows the new context
    init = t.clip.token_embedding(t.tokenize(["a photo of a"])[:, 1:5])[0]
    assert not torch.allclose(after["prompt_ctx"], init)
    assert all(p.requires_grad for p in t.parameters())  # unfrozen again for later stages


def test_vision_and_text_prompts_are_all_that_change():
    clips, labels = _clips()
    t = _teacher()
    before = _state(t)
    losses = bridge_and_prompt(t, clips, labels, OptimConfig(epochs=4, batch_size=16, lr=5e-2), n_ctx=4,
                               n_ctx_vision=2, seed=0)
    assert len(losses) == 4 and all(map(math.isfinite, losses))
    after = _state(t)
    assert set(after) - set(before) == {"prompt_ctx", "vision_ctx"}
    torch.manual_seed(0)  # the stage's seed: the vision prompts' N(0, 0.02) draw, which training then moved
    assert not torch.allclose(after["vision_ctx"], torch.randn(2, 64) * 0.02)
    assert [k for k in before if not torch.equal(before[k], after[k])] == ["text_cache"]


@pytest.mark.parametrize("call, match", [
    (lambda t: finetune_vifi(t, torch.zeros(4, 1, 16, 16), torch.zeros(4, dtype=torch.long), OPTIM), "clips must"),
    (lambda t: finetune_vifi(t, torch.zeros(4, 2, 1, 16, 16), torch.zeros(3, dtype=torch.long), OPTIM), r"one row per label \(3\)"),
    (lambda t: pretrain_image_text(t, torch.zeros(2, 1, 16, 16), ["a"], OPTIM), "frames must be a 4-dim"),
])
def test_bad_tensors_are_one_line(call, match):
    with pytest.raises(ValueError, match=match):
        call(_teacher())


def test_a_diverging_loss_stops_with_advice():
    clips, labels = _clips(8)
    clips[0, 0, 0, 0, 0] = float("nan")  # what an exploding step leaves behind
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        finetune_vifi(_teacher(), clips, labels, OptimConfig(epochs=1, batch_size=8))
