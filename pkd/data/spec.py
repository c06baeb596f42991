"""The two data types: DatasetSpec (what models and the app know about a dataset) and Split (examples in memory),
and the specs registered by name (DATASETS, filled by pkd.data.registry's register_dataset and register_builtin),
which Split.spec reads. No torch at import: the methods that touch tensors import it, so a spec is read without it.

Shape letters: B batch, N examples in a split, T frames of a clip, C channels (elsewhere in pkd C is classes),
H/W height/width. A sample is an image (C, H, W) or a clip (T, C, H, W); channels are always at index -3.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where tensors are touched: a spec is read without it (pkd.data.catalog)
    import torch

DATASETS: dict[str, DatasetSpec] = {}  # registered specs by name (added by pkd.data.registry)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What a model and the app need to know about a dataset: shapes, classes, normalisation, augmentation.

    Augmentation (training only, on [0, 1] tensors before normalisation): a random integer shift of up to
    ``max_shift`` px per axis with zero fill (identical to a random crop after ``max_shift`` px of zero padding),
    then a horizontal flip with probability 1/2 if ``hflip``, then a rotation by up to ``max_rotate_deg``
    degrees (bilinear, zero fill) if it is positive. A clip is drawn for once: all its frames move alike.
    ``motion_labels``: the labels name a motion (moving left, ...), which a flip or a rotation would change without
    changing the label, so such a spec refuses ``hflip`` and ``max_rotate_deg``.
    ``novel_classes``: classes kept out of train and val (ViFi-CLIP's base-to-novel setting); the test split holds
    every class and evaluation reports base and novel accuracy apart.
    ``class_groups``: a group index per class (Moving MNIST: the digit), the coarser labels a teacher may be
    trusted on alone (``distill.soft_target: groups``); empty if the dataset has none.
    ``photos``: the images are photos of one object each (Fashion-MNIST), so a user's picture is trimmed to the
    object and fills the frame (``pkd.preprocess.prepare_photo``), and nobody is asked to draw one.
    """

    name: str
    sample_shape: tuple[int, ...]  # (C, H, W) for images or (T, C, H, W) for clips
    num_classes: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, of [0, 1] pixels
    std: tuple[float, ...]
    max_shift: int = 0
    hflip: bool = False
    max_rotate_deg: float = 0.0
    motion_labels: bool = False
    novel_classes: tuple[int, ...] = ()
    class_groups: tuple[int, ...] = ()
    photos: bool = False

    def __post_init__(self) -> None:
        if len(self.sample_shape) not in (3, 4) or min(self.sample_shape) < 1:
            raise ValueError(f"dataset '{self.name}': sample_shape must be (C, H, W) or (T, C, H, W), "
                             f"got {self.sample_shape}")
        channels = self.sample_shape[-3]
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"dataset '{self.name}': {len(self.class_names)} class_names for num_classes={self.num_classes}"
            )
        if len(self.mean) != channels or len(self.std) != channels or min(self.std) <= 0:
            raise ValueError(f"dataset '{self.name}': mean and std need {channels} values, std > 0")
        if self.max_shift < 0 or self.max_rotate_deg < 0:
            raise ValueError(f"dataset '{self.name}': max_shift and max_rotate_deg must be >= 0")
        if any(not 0 <= c < self.num_classes for c in self.novel_classes) or \
                len(set(self.novel_classes)) >= self.num_classes:
            raise ValueError(f"dataset '{self.name}': novel_classes must be distinct class indices in "
                             f"0..{self.num_classes - 1}, leaving at least one base class")
        if self.class_groups and (len(self.class_groups) != self.num_classes or min(self.class_groups) < 0):
            raise ValueError(f"dataset '{self.name}': class_groups needs one group index >= 0 per class "
                             f"({self.num_classes}), got {len(self.class_groups)} with smallest "
                             f"{min(self.class_groups)}")
        if self.motion_labels and (self.hflip or self.max_rotate_deg > 0):
            raise ValueError(f"dataset '{self.name}': its labels name motions, which hflip (left <-> right) and "
                             "rotation would change without changing the label; use shifts only")

    @property
    def kind(self) -> str:
        """The sample kind: "image" for (C, H, W) samples, "clip" for (T, C, H, W) ones."""
        return "image" if len(self.sample_shape) == 3 else "clip"

    def _letters(self) -> str:
        return "C, H, W" if self.kind == "image" else "T, C, H, W"

    def _check_samples(self, x: torch.Tensor) -> None:
        import torch

        n = len(self.sample_shape)
        if not torch.is_floating_point(x) or x.dim() < n or tuple(x.shape[-n:]) != self.sample_shape:
            raise ValueError(
                f"dataset '{self.name}' expects float {self.kind}s of shape "
                f"(..., {', '.join(map(str, self.sample_shape))}), got {tuple(x.shape)} {x.dtype}"
            )

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Standardise per channel.

        Args:
            x: samples in [0, 1], (..., *sample_shape), e.g. (B, C, H, W), (C, H, W) or (B, T, C, H, W).

        Returns:
            (x - mean) / std, same shape and dtype.
        """
        import torch

        self._check_samples(x)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)  # (C, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)  # (C, 1, 1)
        return (x - mean) / std

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Randomly augment a batch; every random draw comes from ``generator`` (a CPU generator), one per sample.

        Args:
            x: samples in [0, 1], (B, *sample_shape).
            generator: the source of randomness, advanced by this call.

        Returns:
            A new tensor of augmented samples, (B, *sample_shape), still in [0, 1].
        """
        from pkd.data.augment import random_hflip, random_rotate, random_shift

        self._check_samples(x)
        if x.dim() != len(self.sample_shape) + 1:
            raise ValueError(f"augment expects a batch (B, {self._letters()}), got shape {tuple(x.shape)}")
        # frames as extra channels: one draw per clip moves all of its frames alike
        out = x if self.kind == "image" else x.flatten(1, 2)  # (B, C, H, W) or (B, T*C, H, W)
        if self.max_shift > 0:
            out = random_shift(out, self.max_shift, generator)
        if self.hflip:
            out = random_hflip(out, generator)
        if self.max_rotate_deg > 0:
            out = random_rotate(out, self.max_rotate_deg, generator)
        return out if self.kind == "image" else out.reshape(x.shape)  # (B, *sample_shape)


@dataclasses.dataclass(frozen=True)
class Split:
    """One split of a dataset, in memory. Cached splits are shared: do not modify the tensors in place.

    Attributes:
        inputs: float32 samples in [0, 1], (N, C, H, W) images or (N, T, C, H, W) clips.
        labels: int64 class indices, (N,).
        dataset: registry name of the dataset (gives ``spec``); None for ad-hoc splits.
        split: "train", "val" or "test"; None for ad-hoc splits.
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    dataset: str | None = None
    split: str | None = None

    def __post_init__(self) -> None:
        import torch

        if self.inputs.dim() not in (4, 5) or self.inputs.dtype != torch.float32:
            raise ValueError(f"Split inputs must be float32 (N, C, H, W) or (N, T, C, H, W), got "
                             f"{self.inputs.dtype} {tuple(self.inputs.shape)}")
        if self.labels.dim() != 1 or self.labels.dtype != torch.int64 or len(self.labels) != len(self.inputs):
            raise ValueError(f"Split labels must be int64 (N,) with N={len(self.inputs)}, got "
                             f"{self.labels.dtype} {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def spec(self) -> DatasetSpec:
        """The registered spec of this split's dataset."""
        if self.dataset is None:
            raise ValueError("this Split has no dataset name; build it with dataset=<registered name>")
        return get_dataset_spec(self.dataset)


def get_dataset_spec(name: str) -> DatasetSpec:
    """Look up a registered dataset spec by name; unknown names raise ValueError listing the choices."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset '{name}'; choose one of: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]
