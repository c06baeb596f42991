"""A run's data: the splits its config names, cut to the config's limits, the training split K-shot when asked.

Training (`pkd.train.progressive`) and re-evaluation (`pkd.evaluate`) both load a run's data here, so both see
exactly the same samples. Only the dataset registry and the run config are needed (no run directory, no models).
"""

from __future__ import annotations

import dataclasses

import torch

from pkd.config import RunConfig
from pkd.data.registry import get_dataset_spec, load_split
from pkd.data.spec import DatasetSpec, Split


def load_run_data(cfg: RunConfig, names: tuple[str, ...] = ("train", "val", "test")
                  ) -> tuple[DatasetSpec, dict[str, Split]]:
    """The dataset spec and the named splits of a run (default all three), cut to the config's limits."""
    data_spec = get_dataset_spec(cfg.data.dataset)
    limits = {"train": cfg.data.train_limit, "val": cfg.data.val_limit, "test": cfg.data.test_limit}
    splits = {}
    for name in names:
        n = limits[name]
        split = load_split(cfg.data.dataset, name, root=cfg.data.root)
        splits[name] = split if n is None or n >= len(split.labels) else \
            Split(inputs=split.inputs[:n], labels=split.labels[:n])
    if cfg.data.shots is not None and "train" in splits:
        splits["train"] = few_shot(splits["train"], cfg.data.shots, cfg.seed)
    return data_spec, splits


def few_shot(split: Split, shots: int, seed: int) -> Split:
    """K = `shots` samples of every class in the split, drawn with `seed` (ViFi-CLIP's K-shot training set), kept
    in split order. Classes absent from the split (a base-to-novel run's novel ones) stay absent; a class with
    fewer than K samples (after any train_limit) is refused, naming it."""
    order = torch.randperm(len(split.labels), generator=torch.Generator().manual_seed(seed))  # (N,)
    keep = []
    for c in split.labels.unique().tolist():
        of_class = order[split.labels[order] == c][:shots]
        if len(of_class) < shots:
            raise ValueError(f"data.shots: {shots} training samples per class asked, but class {c} has only "
                             f"{len(of_class)}; lower data.shots or raise data.train_limit")
        keep.append(of_class)
    idx = torch.cat(keep).sort().values  # (K*C,)
    return dataclasses.replace(split, inputs=split.inputs[idx], labels=split.labels[idx])
