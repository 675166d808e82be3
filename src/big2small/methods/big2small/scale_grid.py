"""Channel scales on a logarithmic grid: a byte per output channel and two per layer, where fp16 takes two per channel.

A layer's scales are 2^(k / STEPS_PER_OCTAVE), k = top - step, with `step` 0..LEVELS - 1 stored as one uint8 per
output channel and `top` as one int16 per layer: the grid reaches LEVELS / STEPS_PER_OCTAVE = 8 octaves below the
layer's top, its points 2.2 % apart. The codes' scale search (layer_codes.weight_codes_at_levels) takes its
candidates on this grid, so every code is rounded against the scale the file stores, and the grid only coarsens the
search (a scale at most 1.1 % off a candidate, which moves the squared error in second order). In memory the scales
are float32 (exact 2^(k/32) to float32's precision; fp16 would merge grid points below its normal range).
"""

from __future__ import annotations

import math

import torch

STEPS_PER_OCTAVE = 32
LEVELS = 256
# The grid stays within float32's normal numbers, and a forged top is refused beyond them.
LOWEST_K = -126 * STEPS_PER_OCTAVE
HIGHEST_K = 127 * STEPS_PER_OCTAVE
TOP_BYTES = 2  # one int16 per layer


def scale_bytes(channels: int, log_scales: bool) -> int:
    """Bytes of one layer's scales: a step per channel and its top on the grid, else an fp16 per channel."""
    return channels + TOP_BYTES if log_scales else 2 * channels


def layer_top(largest: float) -> int:
    """The grid's top for a layer whose scales are at most `largest` (the nearest grid point at or above it)."""
    return _top(math.ceil(math.log2(largest) * STEPS_PER_OCTAVE) if largest > 0 else LOWEST_K)


def snapped(scale: torch.Tensor, top: int, up: bool = False) -> torch.Tensor:
    """Each of `scale` at its nearest point of the grid under `top` (float32); `up`: at the nearest at or above it."""
    return grid_values(_grid_k(scale, up).clamp(top - LEVELS + 1, top))


def grid_values(k: torch.Tensor) -> torch.Tensor:
    """2^(k / STEPS_PER_OCTAVE) for integer k, float32."""
    return torch.exp2(k.double() / STEPS_PER_OCTAVE).float()


def encode(scale: torch.Tensor) -> tuple[int, torch.Tensor]:
    """(top, steps: uint8) of one layer's scales, each at its nearest grid point; scales off the grid (a refinement
    that trains them) land on it, and any more than LEVELS - 1 steps below the largest land on the lowest step."""
    k = _grid_k(scale)
    top = _top(int(k.max()) if k.numel() else LOWEST_K)
    return top, (top - k).clamp(0, LEVELS - 1).to(torch.uint8)


def decode(top: int, steps: torch.Tensor) -> torch.Tensor:
    """One layer's scales (float32) from its top and steps; ValueError for a top off the grid's range."""
    if _top(top) != top:
        raise ValueError(f"a scale grid top of {top} is outside {LOWEST_K + LEVELS - 1}..{HIGHEST_K}")
    return grid_values(top - steps.long())


def _grid_k(scale: torch.Tensor, up: bool = False) -> torch.Tensor:
    """The k of each scale's nearest grid point, or with `up` the nearest at or above it (float64), never below
    LOWEST_K."""
    exact = torch.log2(scale.double()) * STEPS_PER_OCTAVE
    return (torch.ceil(exact) if up else torch.round(exact)).clamp_min(LOWEST_K)


def _top(k: int) -> int:
    """`k` within the tops a file may hold: a whole grid of LEVELS points inside LOWEST_K..HIGHEST_K."""
    return min(max(k, LOWEST_K + LEVELS - 1), HIGHEST_K)
