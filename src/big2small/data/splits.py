"""Seeded, reproducible index splits shared by every data module."""

from __future__ import annotations

import numpy as np


def split_indices(count: int, fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Shuffle range(count) with `seed` and cut it into named parts; the first part takes the remainder."""
    if any(not 0.0 <= f < 1.0 for f in fractions.values()) or sum(fractions.values()) >= 1.0:
        raise ValueError(f"split fractions must be in [0, 1) and sum to < 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(count)
    sizes = {name: int(round(f * count)) for name, f in fractions.items()}
    parts, start = {}, 0
    for name, size in sizes.items():
        parts[name] = np.sort(order[start : start + size])
        start += size
    parts["rest"] = np.sort(order[start:])
    return parts
