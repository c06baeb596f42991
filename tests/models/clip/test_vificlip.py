"""The ViFi-CLIP-style video teacher (pkd.models.clip.vificlip): ViFi-CLIP's formula, exact time-reversal
invariance, grey and uint8 frames, the registry, bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pkd.models import build_teacher
from pkd.models.clip import ViFiCLIP
from tests.models.clip.tiny_clip import NAMES, SIDE, random_clips, tiny_teacher
from tests.one_thread import one_thread  # noqa: F401 - autouse fixture


@pytest.fixture(scope="module")
def teacher() -> ViFiCLIP:
    return tiny_teacher()


def test_logits_are_vifi_clips_formula(teacher):
    clips = random_clips()
    with torch.no_grad():
        frames = teacher.clip.encode_image(teacher.adapter(clips.flatten(0, 1)))  # (B*T, E)
        video = F.normalize(frames.view(4, 5, -1).mean(dim=1), dim=-1)
        text = teacher.clip.encode_text(teacher.prompt_tokens, normalize=True)
        expected = teacher.clip.logit_scale.exp() * video @ text.T
        logits = teacher(clips)
    assert logits.shape == (4, len(NAMES))
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(teacher.video_embedding(clips), video, rtol=1e-5, atol=1e-6)
    assert torch.equal(teacher.text_cache, teacher.text_embeddings())


def test_time_reversal_gives_identical_logits(teacher):
    clips = random_clips(n=64, t=8, side=24, seed=3)  # frames resized 24 -> 16 on the way in
    with torch.no_grad():
        forward, backward = teacher(clips), teacher(clips.flip(1))
    torch.testing.assert_close(forward, backward, rtol=0, atol=1e-6)
    assert torch.equal(forward.argmax(1), backward.argmax(1))
    assert torch.equal(forward, backward)  # the symmetric temporal sum makes it bit-identical


def test_prompts_and_grey_frames(teacher):
    assert teacher.prompt_tokens.shape == (len(NAMES), teacher.context_length)
    x = torch.rand(2, 1, SIDE, SIDE)
    out = teacher.adapter(x)
    assert out.shape == (2, 3, SIDE, SIDE)
    mean = torch.tensor(teacher.clip.visual.preprocess_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(teacher.clip.visual.preprocess_cfg["std"]).view(1, 3, 1, 1)
    torch.testing.assert_close(out, (x.expand(-1, 3, -1, -1) - mean) / std)


def test_uint8_frames_with_their_scale_equal_float_frames():
    t = tiny_teacher(input_std=1 / 255)
    clips = (random_clips() * 255).round().to(torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(t(clips), tiny_teacher()(clips.float() / 255), rtol=1e-5, atol=1e-5)


def test_training_forward_trains_the_text_tower():
    t = tiny_teacher().train()
    t(random_clips()).sum().backward()
    assert t.clip.token_embedding.weight.grad is not None and t.clip.visual.conv1.weight.grad is not None


def test_registry_and_set_classes():
    t = build_teacher("vifi_clip", class_names=NAMES[:4], image_size=SIDE)
    assert isinstance(t, ViFiCLIP) and t.text_cache.shape == (4, 64)
    t.eval().set_classes(["7 moving left", "7 moving right", "7 moving up"])  # novel classes via the text tower
    with torch.no_grad():
        assert t(random_clips(n=2)).shape == (2, 3)


@pytest.mark.parametrize("kwargs, match", [
    ({"class_names": ["a", "a"]}, "at least 2 distinct"),
    ({"class_names": "ab"}, "at least 2 distinct"),
    ({"class_names": ["a " * 20, "b"]}, r"needs 27 tokens but the CLIP's context is 16"),
    ({"class_names": ["a", "b"], "clip_model": "ViT-Q-99"}, "unknown open_clip config 'ViT-Q-99'"),
    ({"class_names": ["a", "b"], "clip_model": "convnext_base"}, "not a plain CLIP with open_clip's own image"),
    ({"class_names": ["a", "b"], "clip_model": "pkd-tiny-clip-rn", "image_size": 16},
     "CLIP's ModifiedResNet downsamples 32x: image_size must be >= 32"),
    ({"class_names": ["a", "b"], "template": "no slot"}, "template must be a string with one"),
    ({"class_names": ["a", "b"], "in_channels": 2}, "in_channels must be 1"),
    ({"class_names": ["a", "b"], "image_size": 4}, "image_size must be an integer >= 8"),
])
def test_bad_arguments_are_one_line(kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        ViFiCLIP(**kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("shape, match", [((2, 1, SIDE, SIDE), r"clips must be \(B, T, C, H, W\)"),
                                          ((2, 3, 3, SIDE, SIDE), r"frames must be \(N, 1, H, W\)")])
def test_bad_clip_shapes(teacher, shape, match):
    with pytest.raises(ValueError, match=match):
        teacher(torch.zeros(shape))
