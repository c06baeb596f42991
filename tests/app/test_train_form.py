"""The Train page's form (app/train_form.py): form values -> config overrides the real config loader accepts."""

from __future__ import annotations

import pytest

from app import train_form
from tests.app.trained import TINY_CONFIG


@pytest.mark.parametrize("kind,k,base,expected", [
    ("doubling", 3, 4, [4, 8, 16]), ("same size", 2, 8, [8, 8]), ("halving", 4, 8, [8, 4, 2, 1]),
])
def test_schedule_sizes(kind, k, base, expected):
    assert train_form.schedule_sizes(kind, k, base) == expected
    assert train_form.guess_schedule(expected) in (kind, "same size")


def test_schedule_sizes_rejects_bad_input():
    assert train_form.schedule_sizes("custom", 0, 1, "3, 5;7") == [3, 5, 7]
    with pytest.raises(ValueError, match="whole numbers"):
        train_form.schedule_sizes("custom", 0, 1, "4, x")
    with pytest.raises(ValueError, match="positive"):
        train_form.schedule_sizes("custom", 0, 1, "0")
    with pytest.raises(ValueError, match="unknown schedule"):
        train_form.schedule_sizes("random", 2, 4)


def test_form_defaults_and_overrides_only_for_changes():
    defaults = train_form.form_defaults(TINY_CONFIG)
    assert defaults["dataset"] == "mnist" and defaults["k"] >= 1
    assert train_form.build_overrides(dict(defaults), defaults) == []
    values = dict(defaults, alpha=0.7, mode="independent", schedule="same size", k=3, base=4, student_epochs=5)
    overrides = train_form.build_overrides(values, defaults)
    assert "distill.alpha=0.7" in overrides and "distill.mode=independent" in overrides
    assert "students.schedule=[{d_model: 4}, {d_model: 4}, {d_model: 4}]" in overrides
    assert "students.optim.epochs=5" in overrides
    from pkd.config import load_config

    cfg = load_config(TINY_CONFIG, overrides)  # the overrides are valid for the real config loader
    assert cfg.distill.alpha == 0.7 and cfg.students.k == 3
    # tiny.yaml learns the residual scale; independent mode has none, so the form turns it off
    assert defaults["learn_prev_scale"] is True and "distill.learn_prev_scale=false" in overrides
    assert not cfg.distill.learn_prev_scale
    plain = train_form.build_overrides(dict(defaults, learn_prev_scale=False), defaults)
    assert plain == ["distill.learn_prev_scale=false"]
    assert not load_config(TINY_CONFIG, plain).distill.learn_prev_scale


def test_changed_widths_keep_each_students_other_settings(tmp_path):
    from pkd.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text("students:\n  schedule:\n    - {d_model: 16, d_state: 4}\n"
                    "    - {d_model: 64, n_layers: 2, optim: {epochs: 3}}\n")
    defaults = train_form.form_defaults(path)
    values = dict(defaults, schedule="custom", custom="8, 32, 4")
    cfg = load_config(path, train_form.build_overrides(values, defaults))
    assert cfg.students.schedule == [{"d_model": 8, "d_state": 4},
                                     {"d_model": 32, "n_layers": 2, "optim": {"epochs": 3}}, {"d_model": 4}]
