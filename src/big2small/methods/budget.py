"""Meeting `target_ratio`: the byte budget of an artifact, and two searches over a compressor's size knob.

Every compressor sizes its artifact by building it (with zero-filled payloads where fitting is expensive) and
measuring `len(Compressed.to_bytes())`, which is exactly the file size the pipeline reports; so header bytes,
scales and indices are all counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable

import torch

from big2small.codec import Compressed
from big2small.encodings.dtype_bytes import fp32_bytes
from big2small.errors import ConfigError
from big2small.values import as_integer

# Slack left for header bytes that change between the sizing pass and the final artifact (digits in JSON).
HEADER_SLACK_BYTES = 64
# How far above the target a ratio may land before a compressor reports that it could not get closer.
TOLERANCE = 0.05


def fixed_bits(name: str, bits, target_ratio, low: int, high: int) -> int | None:
    """A bit-width compressor's fixed `bits`, validated; None when target_ratio decides the widths instead (bits is
    then unused, recorded as null in the header)."""
    if bits is None and target_ratio is None:
        raise ConfigError(f"{name}: set bits ({low}..{high}) or target_ratio")
    bits = None if bits is None else as_integer(f"{name}: bits", bits, low, high)
    return None if target_ratio is not None else bits


def original_bytes(weights: dict[str, torch.Tensor]) -> int:
    """The fp32 size of the weights a compressor replaces: what its compression ratio divides."""
    return fp32_bytes(sum(w.numel() for w in weights.values()))


def artifact_bytes(compressed: Compressed) -> int:
    return len(compressed.to_bytes())


def budget_bytes(original_bytes: int, target_ratio: float) -> float:
    """The largest artifact size (bytes) whose ratio still reaches target_ratio."""
    return original_bytes / target_ratio


def bisect_largest(fits: Callable[[float], bool], low: float, high: float, steps: int = 40,
                   integer: bool = False) -> float | None:
    """Largest x in [low, high] with fits(x) for a monotone predicate (true up to a threshold); None if none."""
    if fits(high):
        return high
    if not fits(low):
        return None
    for _ in range(steps):
        if integer and high - low <= 1:
            break
        middle = (low + high) // 2 if integer else (low + high) / 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return low


def greedy_raise(levels: dict[Hashable, int], step_bytes: Callable[[Hashable, int], int | None],
                 priority: Callable[[Hashable, int], float], spare_bytes: float) -> dict[Hashable, int]:
    """Spend `spare_bytes` on single-level raises (a bit, a rank) of the layers that gain most per byte.

    step_bytes(key, level) is what raising `key` from `level` to `level + 1` costs (None: already at its
    maximum); priority(key, level) is the expected benefit of that raise per byte (higher first).
    """
    levels = dict(levels)
    while True:
        best, best_priority = None, -float("inf")
        for key, level in levels.items():
            cost = step_bytes(key, level)
            if cost is None or cost > spare_bytes:
                continue
            value = priority(key, level)
            if value > best_priority:
                best, best_priority = key, value
        if best is None:
            return levels
        spare_bytes -= step_bytes(best, levels[best])
        levels[best] += 1


def report_landing(compressor: str, ratio: float, target: float | None, why_not_closer: str) -> None:
    """Warn (with the reason) when a target could not be met within TOLERANCE; silent otherwise."""
    if target is None or abs(ratio / target - 1.0) <= TOLERANCE:
        return
    logging.getLogger(__name__).warning(
        "%s: measured ratio %.3fx is not within %.0f%% of target_ratio %.3g: %s",
        compressor, ratio, 100 * TOLERANCE, target, why_not_closer,
    )
