"""The loader of local open_clip / ViFi-CLIP weights into the video teacher (pkd.models.clip.weights), hostile
files included."""

from __future__ import annotations

import os
import sys
import types
import zipfile

import pytest
import torch

from pkd.models.clip import ViFiCLIP, load_clip_weights
from tests.models.clip.tiny_clip import NAMES, random_clips, tiny_teacher
from tests.one_thread import one_thread  # noqa: F401 - autouse fixture


def logits_of(t: ViFiCLIP) -> torch.Tensor:
    with torch.no_grad():
        return t(random_clips())


def test_loads_open_clip_state_dicts_in_both_formats(tmp_path):
    from safetensors.torch import save_file

    source, target = tiny_teacher(seed=0), tiny_teacher(seed=1)
    assert not torch.allclose(logits_of(source), logits_of(target))
    state = source.clip.state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "clip.safetensors")
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "clip.pt")
    for name in ("clip.safetensors", "clip.pt"):
        fresh = tiny_teacher(seed=2)
        load_clip_weights(fresh, tmp_path / name)
        assert torch.equal(logits_of(fresh), logits_of(source)), name


def vifi_state(source: ViFiCLIP) -> dict[str, torch.Tensor]:
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
    source = tiny_teacher(seed=0, n_ctx=4, n_ctx_vision=2)
    yacs, config = types.ModuleType("yacs"), types.ModuleType("yacs.config")
    config.CfgNode = type("CfgNode", (dict,), {"__module__": "yacs.config"})
    monkeypatch.setitem(sys.modules, "yacs", yacs)
    monkeypatch.setitem(sys.modules, "yacs.config", config)
    node = config.CfgNode(MODEL=config.CfgNode(ARCH="ViT-B/16"), SEED=1024)
    torch.save({"model": vifi_state(source), "optimizer": {}, "epoch": 29, "config": node}, tmp_path / "vifi.pth")
    torch.save({"token_embedding.weight": source.clip.token_embedding.weight.detach()}, tmp_path / "base.pt")
    monkeypatch.delitem(sys.modules, "yacs.config")  # the loader must not need yacs (nor build its objects)
    fresh = tiny_teacher(seed=3)
    with pytest.raises(ValueError, match=r"missing 1 \['token_embedding.weight'\].*list the base CLIP weights first"):
        load_clip_weights(fresh, tmp_path / "vifi.pth")
    load_clip_weights(fresh, [tmp_path / "base.pt", tmp_path / "vifi.pth"])
    assert fresh.n_ctx == 4 and fresh.vision_ctx.shape == (2, 64)
    torch.testing.assert_close(logits_of(fresh), logits_of(source), rtol=0, atol=1e-5)
    state = vifi_state(source)
    state["module.image_encoder.transformer.resblocks.1.VPT_shallow"] = torch.zeros(2, 64)  # deep prompts
    torch.save({"model": state}, tmp_path / "deep.pth")
    with pytest.raises(ValueError, match="deep prompts .* are not supported"):
        load_clip_weights(tiny_teacher(), [tmp_path / "base.pt", tmp_path / "deep.pth"])


def test_mismatched_weights_name_keys_and_shapes(tmp_path):
    state = tiny_teacher().clip.state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["ln_final.bias"]
    state["text_projection"] = torch.zeros(64, 32)
    torch.save(state, tmp_path / "odd.pt")
    with pytest.raises(ValueError) as info:
        load_clip_weights(tiny_teacher(), tmp_path / "odd.pt")
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
            load_clip_weights(tiny_teacher(), tmp_path / name)
        assert "\n" not in str(info.value)
    assert not marker.exists()


def test_truncated_and_missing_files_are_one_line(tmp_path):
    from safetensors.torch import save_file

    state = tiny_teacher().clip.state_dict()
    torch.save(state, tmp_path / "whole.pt")
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "whole.safetensors")
    for name in ("whole.pt", "whole.safetensors"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"cut-{name}").write_bytes(data[: len(data) // 2])
        with pytest.raises(ValueError, match="not a readable safetensors or torch weights file") as info:
            load_clip_weights(tiny_teacher(), tmp_path / f"cut-{name}")
        assert "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_clip_weights(tiny_teacher(), tmp_path / "nope.pt")
    with zipfile.ZipFile(tmp_path / "scripted.pt", "w") as archive:  # what torch.jit.save writes: code + constants
        archive.writestr("scripted/code/__torch__.py", "class Linear: ...")
        archive.writestr("scripted/constants.pkl", b"")
    with pytest.raises(ValueError, match="a TorchScript archive .* save its state_dict"):
        load_clip_weights(tiny_teacher(), tmp_path / "scripted.pt")
