"""What the stages of one training run share: the RunContext (config, run, recorder, data, placement) and the
weights digest that ranks log and caches are keyed by. Its own module so that the teacher stage
(pkd.train.teacher), the video teacher's stages (pkd.train.video_stage) and the student stages
(pkd.train.progressive) all read it without importing each other.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
import torch.nn as nn

from pkd.config import RunConfig
from pkd.data import DatasetSpec, Split
from pkd.evaluate import predict_logits
from pkd.runs import Run
from pkd.train.loop import Placement
from pkd.train.recorder import Recorder

__all__ = ["RunContext", "weights_digest"]


@dataclass
class RunContext:
    """What every stage of one training run shares."""

    cfg: RunConfig
    run: Run
    recorder: Recorder
    data_spec: DatasetSpec
    splits: dict[str, Split]
    place: Placement

    @property
    def device(self) -> torch.device:
        return self.place.device

    def logits(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """(N, C) logits of `model` on raw inputs, computed in shards across ranks, whole on every rank."""
        return predict_logits(model, self.data_spec, inputs, self.device, self.place.world)


def weights_digest(state_dict: dict[str, torch.Tensor], full: bool = False) -> str:
    """sha256 of a state dict's names and values (ranks that trained together log the same digest); 16 hex
    digits unless `full`."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        h.update(name.encode() + state_dict[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest() if full else h.hexdigest()[:16]
