"""Tests for pkd.models' registries: lookups by name, errors that list the choices, building from a saved spec."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pkd.models import STUDENTS, TEACHERS, build_model, build_student, build_teacher, register_student
from pkd.models.mamba import Mamba
from pkd.models.student import MambaClassifier
from tests.models.seeding import randn, seeded


# ------------------------------------------------------------------------------------------------ registries


def test_registries_hold_the_models():
    assert STUDENTS == {"mamba": MambaClassifier}
    assert set(TEACHERS) == {"mnist_cnn", "vgg_cnn", "resnet_cifar", "vifi_clip"}


def test_unknown_names_list_the_choices():
    with pytest.raises(ValueError, match=r"^unknown student 'x'; choose one of: mamba$"):
        build_student("x")
    with pytest.raises(ValueError, match=r"^unknown teacher 'cnn'; choose one of: mnist_cnn, resnet_cifar, vgg_cnn, vifi_clip$"):
        build_teacher("cnn")


def test_unknown_field_is_named_with_the_allowed_ones():
    with pytest.raises(ValueError, match=r"unknown field 'd_modle' for student 'mamba'; allowed: image_shape, "):
        build_student("mamba", d_modle=16)
    with pytest.raises(ValueError, match=r"unknown field 'depht' for teacher 'resnet_cifar'; allowed: .*depth"):
        build_teacher("resnet_cifar", depht=20)


def test_duplicate_registration_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_student("mamba")(Mamba)


# ------------------------------------------------------------------------------------------------ build_model


@pytest.mark.parametrize("spec", [
    {"kind": "teacher", "arch": "resnet_cifar", "params": {"depth": 8, "width": 4}},
    {"kind": "student", "arch": "mamba", "params": {"image_shape": [3, 8, 8], "d_model": 8, "tokens": "patch",
                                                    "patch": 4}},
])
def test_build_model_round_trips_teacher_and_student_specs(spec):
    saved = seeded(0, build_model, spec)
    loaded = seeded(1, build_model, spec)  # other initial weights, then the saved ones
    loaded.load_state_dict(saved.state_dict(), strict=True)
    assert type(loaded) is (TEACHERS if spec["kind"] == "teacher" else STUDENTS)[spec["arch"]]
    x = randn(2, *saved.image_shape)
    with torch.no_grad():
        assert torch.equal(saved.eval()(x), loaded.eval()(x))
    if spec["kind"] == "student":
        assert saved.image_shape == (3, 8, 8) and spec["params"]["image_shape"] == [3, 8, 8]  # spec not mutated


PRETRAINED = Path(__file__).resolve().parents[2] / "pretrained"
SHIPPED = sorted([*PRETRAINED.glob("*/teacher.pt"), *PRETRAINED.glob("*/students/*.pt")])


@pytest.mark.skipif(not SHIPPED, reason="no shipped pretrained/ weights in this checkout")
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.relative_to(PRETRAINED).as_posix())
def test_shipped_weights_load_into_their_spec(path):
    saved = torch.load(path, weights_only=True)
    build_model(saved["spec"]).load_state_dict(saved["state_dict"], strict=True)


def test_build_model_kind_defaults_to_student_and_matches_a_seeded_build():
    spec = {"arch": "mamba", "params": {"image_shape": [1, 28, 28], "d_model": 16, "d_state": 4}}
    built = seeded(0, build_model, spec)
    direct = seeded(0, build_student, "mamba", image_shape=(1, 28, 28), d_model=16, d_state=4)
    assert isinstance(built, MambaClassifier) and built.image_shape == (1, 28, 28)
    assert built.state_dict().keys() == direct.state_dict().keys()
    assert all(torch.equal(v, direct.state_dict()[k]) for k, v in built.state_dict().items())
    assert isinstance(build_model({"arch": "mamba"}), MambaClassifier)  # params default to {}
    with pytest.raises(ValueError, match=r"^unknown student 'mnist_cnn'; choose one of: mamba$"):
        build_model({"arch": "mnist_cnn"})  # a teacher arch without kind is looked up among the students
