"""Loading a user's open_clip or ViFi-CLIP weights into the video teacher (`load_clip_weights`, for
teacher.init and teacher.checkpoint): safetensors or torch files read without running pickled code, key
spellings of DDP / ViFi-CLIP / pkd mapped to open_clip's, one-line errors naming what does not fit.
"""

from __future__ import annotations

import logging
import pickle
import re
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import torch

from pkd.models.clip.open_clip import resize_pos_embed
from pkd.models.clip.vificlip import ViFiCLIP

logger = logging.getLogger(__name__)

__all__ = ["load_clip_weights"]

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
