"""Tests for pkd.models.checks: values pass through unchanged, bad ones raise one line naming the field."""

from __future__ import annotations

import pytest

from pkd.models.checks import check_choice, check_int


def test_good_values_pass_through():
    assert check_int("d_model", 16) == 16
    assert check_int("num_classes", 2, 2) == 2
    assert check_choice("pool", "last", ("mean", "last")) == "last"


@pytest.mark.parametrize("value, low", [(0, 1), (1, 2), (True, 1), (8.0, 1), ("32", 1), (None, 1)])
def test_check_int_refuses_non_ints_bools_and_small_values(value, low):
    with pytest.raises(ValueError, match=rf"^width must be an integer >= {low}, got {value!r}$"):
        check_int("width", value, low)


def test_check_choice_lists_the_choices():
    with pytest.raises(ValueError, match=r"^tokens must be one of 'rows', 'patch', got 'pixels'$"):
        check_choice("tokens", "pixels", ("rows", "patch"))
