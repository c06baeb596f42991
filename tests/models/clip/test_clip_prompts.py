"""The video teacher's prompt learner (pkd.models.clip.prompts): the text cache, the prompt context, the vision
prompts."""

from __future__ import annotations

import torch

from tests.models.clip.tiny_clip import random_clips, tiny_teacher
from tests.one_thread import one_thread  # noqa: F401 - autouse fixture


def test_text_cache_is_used_in_eval_and_refreshed_after_changes():
    t = tiny_teacher()
    clips = random_clips()
    with torch.no_grad():
        before = t(clips)
        t.clip.ln_final.bias.add_(0.5)  # an in-place change of a text weight: the cache is stale
        after = t(clips)
    assert not torch.allclose(before, after)
    assert torch.equal(t.text_cache, t.text_embeddings().detach())
    state = {k: v.clone() for k, v in t.state_dict().items()}
    fresh = tiny_teacher(seed=5)
    fresh.load_state_dict(state)  # the post-hook refreshes the cache from the loaded weights
    with torch.no_grad():
        assert torch.equal(fresh(clips), after)


def test_prompt_context_from_its_init_text_keeps_the_logits():
    t = tiny_teacher()
    clips = random_clips()
    with torch.no_grad():
        before = t(clips)
        t.add_prompt_context(4, "a photo of a")
        after = t(clips)
    assert t.prompt_ctx.shape == (4, 64) and t.prompt_ctx.requires_grad
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    t.add_prompt_context(3, "a photo of a")  # 3 != 4 tokens: CoOp's random init, "X X X name."
    assert t.n_ctx == 3 and t.prompt_prefix == "X X X"


def test_vision_prompts_join_every_frame_and_keep_reversal_invariance():
    t = tiny_teacher()
    clips = random_clips(n=8, t=4)
    with torch.no_grad():
        before = t(clips)
        t.add_vision_context(3)
        after, backward = t(clips), t(clips.flip(1))
    seen = []
    hook = t.clip.visual.transformer.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    with torch.no_grad():
        t.frame_embeddings(clips[0])
    hook.remove()
    assert seen == [(4, 4 + 1 + 3, 64)]  # 2x2 patches + class token + 3 prompts
    assert not torch.allclose(before, after) and torch.equal(after, backward)
