"""The Playground's left column for photo runs (Fashion-MNIST): pick a test image from a gallery, ask for "a hard
one" (an image on which the prefixes disagree), or upload a photo of a garment or shoe, which goes through the
same picture path as `pkd predict` (pkd.preprocess.prepare_image). Drawing stays for digit runs (the page's canvas).

The gallery and the hard ones come from the 1,000 real test images shipped with pkd (pkd.data.fashion_mnist's
sample), so the page works where the dataset itself is not installed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from app import common
from pkd import preprocess
from pkd.data.fashion_mnist import INSTALL_HINT, load_test_sample
from pkd.hard_inputs import PrefixAnswers, prefix_answers

INTRO = ("Pick a test image, ask for **a hard one**, or upload a photo of a garment or a shoe (any phone photo: "
         "one object on a plain background). The students answer one after another; with more students the answer "
         "gets better and costs more.")
GALLERY_COLUMNS = 5
GALLERY_SIZE = 10  # one image of each class per page of the gallery
UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "gif"]
ss = st.session_state


@st.cache_resource(max_entries=1, show_spinner="Loading the test images ...")
def cached_sample() -> tuple[Any, np.ndarray]:
    """The shipped 1,000 test images (Split) and their indices in the official test set (1000,)."""
    split, index = load_test_sample()
    return split, index.numpy()


@st.cache_resource(max_entries=4, show_spinner="Asking every number of students about the test images ...")
def sample_answers(path: str, key: tuple) -> PrefixAnswers:
    """Every prefix's answer on the shipped sample (K, 1000): the hard ones and the Playground's galleries."""
    split, _ = cached_sample()
    return prefix_answers(common.cached_ensemble(path, key), split.spec, split.inputs, split.labels)


def hard_ones(path: str, key: tuple) -> np.ndarray:
    """Positions in the sample on which some prefixes answer differently from others (M,)."""
    return sample_answers(path, key).disagreeing().numpy()


def open_position(position: int) -> None:
    """Show sample image `position` as if picked from the gallery (the galleries' 'open' buttons)."""
    _choose(int(position), "gallery")


def input_id() -> str:
    """Which input the photo panel shows ('gallery:17', 'hard:17' or an upload's fingerprint): a new one restarts
    the Playground's step-through at student 1."""
    source = ss.get("ph_source")
    if source == "upload":
        upload = ss.get("ph_upload")
        data = upload.getvalue() if upload is not None else b""
        return "upload:" + hashlib.sha1(data).hexdigest()[:12]
    return f"{source}:{ss.get('ph_position')}"


def gallery_page(split: Any, page: int) -> list[int]:
    """GALLERY_SIZE sample positions, one of each class, different on every page (page 0, 1, ...)."""
    labels = split.labels.numpy()
    return [int(np.flatnonzero(labels == c)[page % int((labels == c).sum())]) for c in range(GALLERY_SIZE)]


def _choose(position: int, source: str) -> None:
    ss.ph_position, ss.ph_source = position, source


def _next_page() -> None:
    ss.ph_page = int(ss.get("ph_page", 0)) + 1


def _hard(hard: np.ndarray) -> None:
    if len(hard):
        _choose(int(np.random.default_rng().choice(hard)), "hard")


def gallery(split: Any, names: list[str]) -> None:
    """Ten thumbnails, one of each class, each with a button that picks it; 'More' shows ten others."""
    positions = gallery_page(split, int(ss.get("ph_page", 0)))
    for row in range(0, len(positions), GALLERY_COLUMNS):
        columns = st.columns(GALLERY_COLUMNS)
        for column, position in zip(columns, positions[row:row + GALLERY_COLUMNS]):
            column.image(split.inputs[position, 0].numpy(), width=56, clamp=True)
            name = names[int(split.labels[position])]
            column.button(name.split("/")[0], key=f"ph_pick_{position}", on_click=_choose, help=name,
                          args=(position, "gallery"), width="stretch")  # "T-shirt/top" -> "T-shirt": fits


def read_upload(upload: Any) -> tuple[Any, str | None]:
    """An uploaded file -> (the picture as `pkd predict` reads image files, or None; why it was refused, or None)."""
    fd, name = tempfile.mkstemp(prefix="pkd-photo-", suffix=Path(upload.name).suffix[:8])
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(upload.getvalue())
        picture = preprocess.load_image_file(name)  # the checks `pkd predict` makes on a file
    except ValueError as exc:
        return None, f"{upload.name}: {str(exc).split(': ', 1)[-1]}"
    finally:
        os.unlink(name)
    return picture, None


def photo_panel(run: Any, models: Any) -> tuple[Any, str | None, str | None]:
    """The left column for a photo run. Returns (the models' input (1, 28, 28) or None, true label or None,
    why an upload was refused or None)."""
    spec, names = models.spec, list(models.spec.class_names)
    split, index = cached_sample()
    st.markdown("**Pick a test image**")
    gallery(split, names)
    hard = hard_ones(str(run.path), run.weights_stamp())
    buttons = st.columns(2)
    buttons[0].button("More test images", key="ph_more", on_click=_next_page, width="stretch")
    buttons[1].button("A hard one", key="ph_hard", on_click=_hard, args=(hard,), disabled=len(hard) == 0,
                      type="primary", width="stretch",
                      help=f"A test image on which the students disagree ({len(hard)} of these {len(split)}).")
    upload = st.file_uploader("…or upload a photo of a garment or shoe", type=UPLOAD_TYPES, key="ph_upload",
                              on_change=_choose, args=(-1, "upload"))
    image, truth, problem, picture = None, None, None, None
    if ss.get("ph_source") == "upload" and upload is not None:
        picture, problem = read_upload(upload)
        if picture is not None:
            image = preprocess.prepare_image(spec, picture)
            if image is None:
                problem = "No garment or shoe stands out from the background of this photo: take it on a plain table."
    elif ss.get("ph_source") in ("gallery", "hard") and isinstance(ss.get("ph_position"), int) \
            and 0 <= ss.ph_position < len(split):
        image = split.inputs[ss.ph_position]
        truth = names[int(split.labels[ss.ph_position])]
    show_input(image, truth, picture, index)
    st.caption(f"Gallery: {len(split)} real test images shipped with pkd (100 of each class). The whole test set: "
               f"`{INSTALL_HINT}`.")
    return image, truth, problem


def show_input(image: Any, truth: str | None, picture: Any, index: np.ndarray) -> None:
    """The photo as uploaded (if any) beside the 28x28 picture the models get, and where it came from."""
    shown, text = st.columns([1, 1.2])
    shown.markdown("**What the models see**")
    if image is None:
        text.caption("(nothing yet)")
        return
    shown.image(np.kron(image[0].numpy(), np.ones((5, 5), dtype=np.float32)), width=140, clamp=True)
    if picture is not None:
        light = preprocess.photo_is_light(picture)
        text.image(picture, width=140)
        text.caption("Your photo, made grey" + (", inverted (the background is lighter than the object)" if light
                     else "") + ", cropped to the object, its longer side scaled to 28 px and centred, as "
                     "Fashion-MNIST's images were made.")
    else:
        kind = "a hard one: the students disagree on it" if ss.get("ph_source") == "hard" else "from the gallery"
        text.caption(f"Test image #{int(index[ss.ph_position])} ({kind}), true label **{truth}**.")
