"""The photo path (pkd.preprocess.photos) and the re-photographed set (pkd.photos) on real Fashion-MNIST images:
a photo of a test image reads back as that image, whatever the table, light and camera did to it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pkd import data, preprocess
from pkd.data import fashion_mnist as fm
from pkd.photos import photo_indices, photo_set, rephotograph

pytestmark = pytest.mark.skipif(not fm.DEBIAN_DIR.is_dir(), reason=f"Fashion-MNIST absent: {fm.INSTALL_HINT}")


@pytest.fixture(scope="module")
def test_split() -> data.Split:
    return data.load_split("fashion_mnist", "test")


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1])


def test_a_rephotographed_image_reads_back_as_itself(test_split: data.Split) -> None:
    rng = np.random.default_rng(1)
    scores = []
    for i in range(20):
        original = test_split.inputs[i]  # (1, 28, 28)
        photo = rephotograph(original[0].numpy(), rng)
        assert photo.shape == (192, 192, 3) and photo.dtype == np.uint8
        assert preprocess.photo_is_light(photo)  # a dark garment on a light table: inverted
        read = preprocess.prepare_image(test_split.spec, photo)  # the app's and `pkd predict`'s path
        assert read.shape == (1, 28, 28) and read.dtype == torch.float32
        ink = read[0] > 0.1
        rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) >= 24  # the object fills the frame, as Zalando's do
        centre = ((rows[0] + rows[-1]) / 2, (cols[0] + cols[-1]) / 2)
        assert abs(centre[0] - 13.5) <= 2 and abs(centre[1] - 13.5) <= 2  # the object's box is centred
        scores.append(_corr(read, original))
    assert np.median(scores) > 0.7 and min(scores) > 0.4  # blur, JPEG and perspective stay; the polarity is right


def test_dark_background_blank_and_tiny_pictures() -> None:
    bright_on_dark = np.zeros((100, 80), np.uint8)
    bright_on_dark[20:70, 30:50] = 200  # a light object on a dark table: not inverted
    assert not preprocess.photo_is_light(bright_on_dark)
    read = preprocess.prepare_photo(bright_on_dark)
    assert read.shape == (1, 28, 28) and float(read[0, 14, 14]) == pytest.approx(1.0, abs=0.05)
    assert int((read[0] > 0.5).any(1).sum()) == 28 and int((read[0] > 0.5).any(0).sum()) in (11, 12)
    assert preprocess.prepare_photo(np.full((64, 64, 3), 230, np.uint8)) is None  # blank
    speck = np.full((200, 200), 230, np.uint8)
    speck[100:102, 100:102] = 0
    assert preprocess.prepare_photo(speck) is None  # a speck is no object
    with pytest.raises(ValueError, match="expected an image of shape"):
        preprocess.prepare_photo(np.zeros((4, 4, 2)))


def test_the_photo_set_is_seeded_and_balanced(test_split: data.Split) -> None:
    index = photo_indices(test_split.labels, 2)
    assert len(index) == 20 and np.bincount(test_split.labels[index].numpy()).tolist() == [2] * 10
    images, labels = photo_set(test_split, per_class=2, seed=3)
    again, _ = photo_set(test_split, per_class=2, seed=3)
    other, _ = photo_set(test_split, per_class=2, seed=4)
    assert images.shape == (20, 1, 28, 28) and torch.equal(images, again) and not torch.equal(images, other)
    assert torch.equal(labels, test_split.labels[index])
