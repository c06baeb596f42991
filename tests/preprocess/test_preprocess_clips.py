"""Tests for pkd.preprocess.clips: a drawn digit made into a moving clip of a run's size, clip files (animated GIF,
.npy) read back, and hostile clip files refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pkd.data import get_dataset_spec, load_split
from pkd.data.moving_mnist import MOTIONS, reverse_clips
from pkd.preprocess import clips
from tests.hostile_clips import hostile_files

CLIP_DATASET = "moving_mnist_small"  # the tiny video run's (configs/tiny-video.yaml)


@pytest.fixture(scope="module")
def clips_split():
    """The clip dataset's spec and its test split (T, 1, S, S) clips."""
    spec = get_dataset_spec(CLIP_DATASET)
    return spec, load_split(spec.name, "test")


def test_clip_config_and_a_drawn_digit_made_into_a_clip():
    small, big = get_dataset_spec("moving_mnist_small"), get_dataset_spec("moving_mnist")
    assert clips.clip_config(small).zoom == (0.6, 1.35) and clips.clip_config(small).canvas == 40
    assert clips.clip_config(big).zoom == (0.6, 1.5) and clips.clip_config(big).frames == 8
    with pytest.raises(ValueError, match="not a Moving MNIST clip dataset"):
        clips.clip_config(get_dataset_spec("mnist"))
    digit = torch.zeros(1, 28, 28)
    digit[0, 4:24, 12:16] = 1.0  # a "1"
    left = clips.clip_from_drawing(digit, "moving left", small)
    assert left.shape == (4, 1, 40, 40) and 0.0 <= float(left.min()) and float(left.max()) <= 1.0
    columns = [float((frame[0].sum(0) * torch.arange(40)).sum() / frame.sum()) for frame in left]  # centre of mass x
    assert columns == sorted(columns, reverse=True) and columns[0] > columns[-1]  # it moves left
    assert torch.equal(clips.clip_from_drawing(digit, "moving right", small), reverse_clips(left))
    with pytest.raises(ValueError, match="unknown motion"):
        clips.clip_from_drawing(digit, "spinning", small)
    assert len(MOTIONS) == 6


def test_gif_and_npy_clips_read_back(clips_split, tmp_path):
    spec, test = clips_split
    clip = test.inputs[1]  # (T, 1, S, S)
    gif = tmp_path / "clip.gif"
    gif.write_bytes(clips.clip_gif(clip))
    assert torch.allclose(clips.read_clip(gif, spec), clip, atol=1 / 255 + 1e-6)
    big = tmp_path / "big.gif"
    big.write_bytes(clips.clip_gif(clip, scale=3))  # other sizes are resized to the run's canvas
    assert clips.read_clip(big, spec).shape == clip.shape
    for name, array in (("thw.npy", clip[:, 0].numpy()), ("t1hw.npy", clip.numpy()),
                        ("uint8.npy", (clip[:, 0].numpy() * 255).round().astype(np.uint8))):
        np.save(tmp_path / name, array)
        assert torch.allclose(clips.read_clip(tmp_path / name, spec), clip, atol=1 / 255 + 1e-6), name
    np.save(tmp_path / "moved.npy", clip.numpy())
    assert clips.read_clip(tmp_path / "sub" / ".." / "moved.npy", spec).shape == clip.shape  # resolved first


def test_hostile_clip_files_are_refused_in_one_line(clips_split, tmp_path):
    spec = clips_split[0]
    for name, (path, what) in hostile_files(tmp_path, spec).items():
        with pytest.raises((ValueError, FileNotFoundError)) as info:
            clips.read_clip(path, spec)
        message = str(info.value)
        assert what in message and "\n" not in message, (name, message)
    with pytest.raises(ValueError, match="takes images"):
        clips.read_clip(tmp_path / "pickled.npy", get_dataset_spec("mnist"))
