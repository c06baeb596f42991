"""The ViFi-CLIP-style video teacher: ViFi-CLIP's formula, exact time-reversal invariance, the text cache, prompt
context, bad input, and the loader of local open_clip / ViFi-CLIP weights (including hostile files)."""

from __future__ import annotations

import os
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pkd.models import build_teacher
from pkd.models.clip_teacher import ViFiCLIP, load_clip_weights
from tests.one_thread import one_thread  # noqa: F401 - autouse fixture

NAMES = [f"{d} moving {m}" for d in range(3) for m in ("left", "right", "up", "down")]
SIDE = 16  # the tiny config at 16x16: a 2x2 patch grid keeps these tests fast




def _teacher(seed: int = 0, **kwargs) -> ViFiCLIP:
    torch.manual_seed(seed)
    return ViFiCLIP(NAMES, image_size=SIDE, **kwargs).eval()


@pytest.fixture(scope="module")
def teacher() -> ViFiCLIP:
    return _teacher()


def _clips(n: int = 4, t: int = 5, side: int = SIDE, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, t, 1, side, side, generator=torch.Generator().manual_seed(seed))


def test_logits_are_vifi_clips_formula(teacher):
    clips = _clips()
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
    clips = _clips(n=64, t=8, side=24, seed=3)  # frames resized 24 -> 16 on the way in
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
    t = _teacher(input_std=1 / 255)
    clips = (_clips() * 255).round().to(torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(t(clips), _teacher()(clips.float() / 255), rtol=1e-5, atol=1e-5)


def test_text_cache_is_used_in_eval_and_refreshed_after_changes():
    t = _teacher()
    clips = _clips()
    with torch.no_grad():
        before = t(clips)
        t.clip.ln_final.bias.add_(0.5)  # an in-place change of a text weight: the cache is stale
        after = t(clips)
    assert not torch.allclose(before, after)
    assert torch.equal(t.text_cache, t.text_embeddings().detach())
    state = {k: v.clone() for k, v in t.state_dict().items()}
    fresh = _teacher(seed=5)
    fresh.load_state_dict(state)  # the post-hook refreshes the cache from the loaded weights
    with torch.no_grad():
        assert torch.equal(fresh(clips), after)


def test_training_forward_trains_the_text_tower():
    t = _teacher().train()
    t(_clips()).sum().backward()
    assert t.clip.token_embedding.weight.grad is not None and t.clip.visual.conv1.weight.grad is not None


def test_prompt_context_from_its_init_text_keeps_the_logits():
    t = _teacher()
    clips = _clips()
    with torch.no_grad():
        before = t(clips)
        t.add_prompt_context(4, "a photo of a")
        after = t(clips)
    assert t.prompt_ctx.shape == (4, 64) and t.prompt_ctx.requires_grad
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    t.add_prompt_context(3, "a photo of a")  # 3 != 4 tokens: CoOp's random init, "X X X name."
    assert t.n_ctx == 3 and t.prompt_prefix == "X X X"


def test_vision_prompts_join_every_frame_and_keep_reversal_invariance():
    t = _teacher()
    clips = _clips(n=8, t=4)
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


def test_registry_and_set_classes():
    t = build_teacher("vifi_clip", class_names=NAMES[:4], image_size=SIDE)
    assert isinstance(t, ViFiCLIP) and t.text_cache.shape == (4, 64)
    t.eval().set_classes(["7 moving left", "7 moving right", "7 moving up"])  # novel classes via the text tower
    with torch.no_grad():
        assert t(_clips(n=2)).shape == (2, 3)


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


def test_importing_the_module_does_not_import_open_clip():
    code = "import pkd.models.clip_teacher, pkd.models, pkd.flops, sys; assert 'open_clip' not in sys.modules"
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------------------------------------ weight loader


def _logits(t: ViFiCLIP) -> torch.Tensor:
    with torch.no_grad():
        return t(_clips())


def test_loads_open_clip_state_dicts_in_both_formats(tmp_path):
    from safetensors.torch import save_file

    source, target = _teacher(seed=0), _teacher(seed=1)
    assert not torch.allclose(_logits(source), _logits(target))
    state = source.clip.state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "clip.safetensors")
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "clip.pt")
    for name in ("clip.safetensors", "clip.pt"):
        fresh = _teacher(seed=2)
        load_clip_weights(fresh, tmp_path / name)
        assert torch.equal(_logits(fresh), _logits(source)), name


def _vifi_state(source: ViFiCLIP) -> dict[str, torch.Tensor]:
    """A prompted ViFi-CLIP checkpoint's 'model': DDP prefix, image_encoder (+ its shallow prompts VPT) /
    text_encoder / prompt_learner (ctx + derived buffers), no token embedding (trainers/vificlip.py's names)."""
    out = {"module.logit_scale": source.clip.logit_scale.detach(),
           "module.prompt_learner.ctx": source.prompt_ctx.detach(),
           "module.prompt_learner.token_prefix": torch.zeros(len(NAMES), 1, 64),
           "module.prompt_learner.token_suffix": torch.zeros(len(NAMES), 11, 64),
           "module.image_encoder.VPT": source.vision_ctx.detach()}
    for key, value in source.clip.state_dict().items():
        if key.startswith("visual."):
            out["module.image_encoder." + key[len("visual."):]] = value
        elif not key.startswith(("token_embedding", "logit_scale")):
            out["module.text_encoder." + key] = value
    return out


def test_loads_a_vifi_clip_checkpoint_after_its_base_clip(tmp_path, monkeypatch):
    source = _teacher(seed=0, n_ctx=4, n_ctx_vision=2)
    yacs, config = types.ModuleType("yacs"), types.ModuleType("yacs.config")
    config.CfgNode = type("CfgNode", (dict,), {"__module__": "yacs.config"})
    monkeypatch.setitem(sys.modules, "yacs", yacs)
    monkeypatch.setitem(sys.modules, "yacs.config", config)
    node = config.CfgNode(MODEL=config.CfgNode(ARCH="ViT-B/16"), SEED=1024)
    torch.save({"model": _vifi_state(source), "optimizer": {}, "epoch": 29, "config": node}, tmp_path / "vifi.pth")
    torch.save({"token_embedding.weight": source.clip.token_embedding.weight.detach()}, tmp_path / "base.pt")
    monkeypatch.delitem(sys.modules, "yacs.config")  # the loader must not need yacs (nor build its objects)
    fresh = _teacher(seed=3)
    with pytest.raises(ValueError, match=r"missing 1 \['token_embedding.weight'\].*list the base CLIP weights first"):
        load_clip_weights(fresh, tmp_path / "vifi.pth")
    load_clip_weights(fresh, [tmp_path / "base.pt", tmp_path / "vifi.pth"])
    assert fresh.n_ctx == 4 and fresh.vision_ctx.shape == (2, 64)
    torch.testing.assert_close(_logits(fresh), _logits(source), rtol=0, atol=1e-5)
    state = _vifi_state(source)
    state["module.image_encoder.transformer.resblocks.1.VPT_shallow"] = torch.zeros(2, 64)  # deep prompts
    torch.save({"model": state}, tmp_path / "deep.pth")
    with pytest.raises(ValueError, match="deep prompts .* are not supported"):
        load_clip_weights(_teacher(), [tmp_path / "base.pt", tmp_path / "deep.pth"])


def test_mismatched_weights_name_keys_and_shapes(tmp_path):
    state = _teacher().clip.state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["ln_final.bias"]
    state["text_projection"] = torch.zeros(64, 32)
    torch.save(state, tmp_path / "odd.pt")
    with pytest.raises(ValueError) as info:
        load_clip_weights(_teacher(), tmp_path / "odd.pt")
    message = str(info.value)
    assert "\n" not in message and "missing 1 ['ln_final.bias']" in message and "unexpected 1 ['extra.weight']" in \
        message and "text_projection (64, 32) vs (64, 64)" in message and "clip_model" in message


def test_a_pickle_that_would_run_code_is_refused_unrun(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    torch.save({"state_dict": {"w": torch.zeros(1)}, "evil": Evil()}, tmp_path / "evil.pt")
    with open(tmp_path / "evil.pkl", "wb") as f:  # a plain (non-zip) pickle too
        import pickle

        pickle.dump(Evil(), f, protocol=2)
    for name in ("evil.pt", "evil.pkl"):
        with pytest.raises(ValueError, match=r"refused, it holds a Python object \(posix.system\) beyond") as info:
            load_clip_weights(_teacher(), tmp_path / name)
        assert "\n" not in str(info.value)
    assert not marker.exists()


def test_truncated_and_missing_files_are_one_line(tmp_path):
    from safetensors.torch import save_file

    state = _teacher().clip.state_dict()
    torch.save(state, tmp_path / "whole.pt")
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "whole.safetensors")
    for name in ("whole.pt", "whole.safetensors"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"cut-{name}").write_bytes(data[: len(data) // 2])
        with pytest.raises(ValueError, match="not a readable safetensors or torch weights file") as info:
            load_clip_weights(_teacher(), tmp_path / f"cut-{name}")
        assert "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_clip_weights(_teacher(), tmp_path / "nope.pt")
    with zipfile.ZipFile(tmp_path / "scripted.pt", "w") as archive:  # what torch.jit.save writes: code + constants
        archive.writestr("scripted/code/__torch__.py", "class Linear: ...")
        archive.writestr("scripted/constants.pkl", b"")
    with pytest.raises(ValueError, match="a TorchScript archive .* save its state_dict"):
        load_clip_weights(_teacher(), tmp_path / "scripted.pt")
