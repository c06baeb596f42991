"""Argument checks shared by the models: each returns the value or raises a one-line ValueError naming the field.

Model constructors take plain config values, so a wrong type or size must stop with a message saying which field.
"""

from __future__ import annotations

from typing import Sequence

__all__ = ["check_int", "check_choice"]


def check_int(field: str, value: object, low: int = 1) -> int:
    """Return value if it is an int >= low (bools refused), else raise a one-line ValueError naming the field."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{field} must be an integer >= {low}, got {value!r}")
    return value


def check_choice(field: str, value: object, choices: Sequence[str]) -> str:
    """Return value if it is one of choices, else raise a one-line ValueError listing them."""
    if value not in choices:
        raise ValueError(f"{field} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value  # type: ignore[return-value]
