"""Checking one config value: the value, or a one-line ConfigError that names the key and what it got."""

from __future__ import annotations

import math

from big2small.errors import ConfigError


def as_integer(key: str, value, low: int | None = None, high: int | None = None) -> int:
    """An int (a float with an integral value counts; a bool or a string does not) within [low, high]."""
    whole = (isinstance(value, int) and not isinstance(value, bool)) or \
        (isinstance(value, float) and math.isfinite(value) and value.is_integer())
    if not whole or (low is not None and value < low) or (high is not None and value > high):
        bounds = f" in {low}..{high}" if low is not None and high is not None else \
            f" >= {low}" if low is not None else ""
        raise ConfigError(f"{key} must be an integer{bounds} (got {value!r})")
    return int(value)


def as_number(key: str, value, above: float | None = None) -> float:
    """A finite int or float, greater than `above` when given."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or \
            (above is not None and not value > above):
        wanted = f"> {above:g} (a number" if above is not None else "a number ("
        raise ConfigError(f"{key} must be {wanted}; got {value!r})")
    return float(value)
