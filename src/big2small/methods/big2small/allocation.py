"""Choosing INR widths so that the whole artifact meets `target_ratio`.

Each target gets a share of the byte budget `original_bytes / target_ratio` in proportion to its weights, and
the widest INR within that share. The artifact (INRs, outliers, statistics, permutations, header: everything) is
then measured by serialising it with placeholder values; while it is too large the shares shrink in
proportion to the overshoot, and then grow back by bisection while it still fits, so that the bytes of a layer
capped at `max_width` go to the other layers. A target for which no INR of `min_width` fits, or whose INR would be no smaller
than its weights in fp16, is stored in fp16 instead (width None); a target with fewer weights than
`storage.codes_below` is stored as its weights' own 8-bit codes (width CODES).

The widths are sized at one storage precision, the highest of `storage.bits`; with several (`[4, 6, 8]`),
`bit_candidates` adds, per INR target, the widest INR at each lower precision within the bytes of the sized one,
so every candidate fits the budget and the fit decides which is kept (codec_choice.py).
"""

from __future__ import annotations

from collections.abc import Callable

from big2small.encodings.dtype_bytes import FP16_BYTES, fp32_bytes
from big2small.errors import ConfigError
from big2small.methods.big2small.coords import FitTarget
from big2small.methods.big2small.networks import layer_sizes
from big2small.methods.big2small.settings import INRSettings
from big2small.methods.big2small.storage import stored_bytes

# Sizing rounds before a target ratio is declared out of reach; each shrinks every share by the overshoot and a
# further 2 % (the margin keeps the rounds from creeping up on the budget from above).
MAX_SIZING_ROUNDS = 40
SHRINK_MARGIN = 0.98
# Then the shares grow back by bisection while the artifact meets the ratio: at most this many rounds, ending when
# the scale is known to within this relative tolerance.
GROWTH_ROUNDS = 12
GROWTH_TOLERANCE = 0.01
# The width of a target stored as its weights' own 8-bit codes instead of an INR (None: stored in fp16).
CODES = 0


def inr_bytes(settings: INRSettings, target: FitTarget, width: int, bits: int) -> int:
    return stored_bytes(layer_sizes(settings, target.dims, target.outputs, width), bits)


def raw_bytes(target: FitTarget) -> int:
    return FP16_BYTES * target.values.numel()


def widest_within(settings: INRSettings, target: FitTarget, bits: int, budget: float) -> int | None:
    low, high = settings.min_width, settings.max_width
    if inr_bytes(settings, target, low, bits) > budget:
        return None
    while low < high:  # bytes grow with width: binary search for the widest that fits
        middle = (low + high + 1) // 2
        if inr_bytes(settings, target, middle, bits) <= budget:
            low = middle
        else:
            high = middle - 1
    return low if inr_bytes(settings, target, low, bits) < raw_bytes(target) else None


def choose_widths(targets: list[FitTarget], settings: INRSettings, bits: int, target_ratio: float | None,
                  measure: Callable[[dict[str, int | None]], int], codes_below: int = 0,
                  codes_when_out_of_reach: bool = False) -> dict[str, int | None]:
    """{target key: width, None (fp16) or CODES}; `measure(widths)` is the artifact size in bytes for those widths.
    A target_ratio that no INR widths reach is a ConfigError, or with `codes_when_out_of_reach` every target as
    CODES (a codec choice then looks for codes within the target)."""
    coded = {t.key for t in targets if t.values.numel() < codes_below}
    if settings.width is not None:
        return {t.key: CODES if t.key in coded else
                settings.width if inr_bytes(settings, t, settings.width, bits) < raw_bytes(t) else None
                for t in targets}
    original = fp32_bytes(sum(t.values.numel() for t in targets))

    def widths_at(scale: float) -> dict[str, int | None]:
        return {t.key: CODES if t.key in coded else
                widest_within(settings, t, bits, scale * fp32_bytes(t.values.numel()) / target_ratio)
                for t in targets}

    def meets(widths: dict[str, int | None]) -> bool:
        return original / measure(widths) >= target_ratio

    # 1. Shrink every share by the overshoot until the whole artifact meets the ratio.
    scale, failing, size = 1.0, None, 0
    for _ in range(MAX_SIZING_ROUNDS):
        widths = widths_at(scale)
        size = measure(widths)
        if original / size >= target_ratio:
            break
        failing = scale
        scale *= SHRINK_MARGIN * (original / size) / target_ratio
    else:
        if codes_when_out_of_reach:
            return {t.key: CODES for t in targets}
        raise ConfigError(
            f"big2small: target_ratio {target_ratio} is out of reach for this model (best reached "
            f"{original / size:.2f}x: outliers, fp16 layers and the header alone take too much); lower it, lower "
            "inr.min_width, or use outliers.rule=fraction with a smaller fraction")
    # 2. Spend what is left: grow the shares while the artifact still meets the ratio, so that the bytes a layer
    # cannot take (its INR capped at max_width, or cheaper stored in fp16) go to the others. Beyond `widest`
    # every share holds its max_width INR and nothing changes.
    if failing is None:
        widest = max(inr_bytes(settings, t, settings.max_width, bits) * target_ratio / fp32_bytes(t.values.numel())
                     for t in targets)
        if widest <= scale:
            return widths
        candidate = widths_at(widest)
        if meets(candidate):
            return candidate
        failing = widest
    for _ in range(GROWTH_ROUNDS):  # bisection on a log scale between a meeting and a failing scale
        if failing <= scale * (1 + GROWTH_TOLERANCE):
            break
        trial = (scale * failing) ** 0.5
        candidate = widths_at(trial)
        if meets(candidate):
            scale, widths = trial, candidate
        else:
            failing = trial
    return widths


def bit_candidates(targets: list[FitTarget], settings: INRSettings, widths: dict[str, int | None],
                   choices: tuple[int, ...]) -> dict[str, dict[int, int]]:
    """{target key: {bits: width}} of the INRs to fit: each INR target's sized width at `choices[0]` (the highest
    bits) and, at every other bits, the widest INR within the sized one's bytes (none where even min_width is over)."""
    candidates = {}
    for target in targets:
        width = widths[target.key]
        if not width:  # fp16 or CODES
            continue
        budget = inr_bytes(settings, target, width, choices[0])
        candidates[target.key] = {choices[0]: width}
        for bits in choices[1:]:
            wider = widest_within(settings, target, bits, budget)
            if wider is not None:
                candidates[target.key][bits] = wider
    return candidates
