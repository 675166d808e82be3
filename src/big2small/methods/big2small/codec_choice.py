"""After the INRs are fitted: which targets keep their INR and which are stored as their weights' own codes
(`storage.layer_choice: lower_error`).

Each INR-fitted target is compared with its weights' codes at the most bits (2..8) that cost no more than the INR
does (its parameters, outliers and statistics); the lower squared weight error wins, measured on the weights the
artifact would rebuild. The bytes the switched targets free then buy coded targets more bits, the raise that
removes the most squared error per byte first (quant's rule, with measured errors), so the artifact never grows
past the size the fitted INRs had.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from big2small.encodings import index_codes
from big2small.encodings.dtype_bytes import FP16_BYTES
from big2small.methods.big2small.allocation import CODES, inr_bytes
from big2small.methods.big2small.coords import FitTarget
from big2small.methods.big2small.fitting import INRGroup
from big2small.methods.big2small.layer_codes import MAX_CODE_BITS, MIN_CODE_BITS, code_bytes, squared_error
from big2small.methods.big2small.plan import Big2SmallPlan
from big2small.methods.big2small.reconstruct import reconstruct
from big2small.methods.big2small.settings import INRSettings
from big2small.methods.budget import HEADER_SLACK_BYTES, greedy_raise

STATS_BYTES = 8  # each INR-fitted layer's mean and std, fp32


def inr_errors(plan: Big2SmallPlan, groups: list[INRGroup], bits: int) -> dict[str, float]:
    """Squared weight error of every INR-fitted target, its INR parameters rounded as they are stored."""
    previous = [group.net.fake_quant for group in groups]
    try:
        with torch.no_grad():
            for group in groups:
                group.net.fake_quant = bits if bits < 16 else None
            rebuilt = reconstruct(groups, plan.layer_codes())
    finally:
        for group, value in zip(groups, previous, strict=True):
            group.net.fake_quant = value
    return {t.key: sum(float(((rebuilt[s.name].cpu() - plan.weights[s.name]) ** 2).sum()) for s in t.segments)
            for t in plan.targets if plan.widths[t.key]}


def target_inr_bytes(plan: Big2SmallPlan, inr: INRSettings, bits: int, target: FitTarget) -> int:
    """What an INR-fitted target costs in the artifact: its INR, and per layer its outliers and statistics."""
    total = inr_bytes(inr, target, plan.widths[target.key], bits)
    for segment in target.segments:
        index = plan.prepared[segment.name].outlier_index
        total += STATS_BYTES + FP16_BYTES * index.numel() + index_codes.encoded_size(
            index, plan.weights[segment.name].numel())
    return total


def target_code_bytes(target: FitTarget, code_bits: int) -> int:
    return sum(code_bytes(segment.shape, code_bits) for segment in target.segments)


def choose_codecs(plan: Big2SmallPlan, groups: list[INRGroup], inr: INRSettings, bits: int,
                  measure: Callable[[Big2SmallPlan], int]) -> Big2SmallPlan:
    """The plan with each target stored the lower-error way; `measure(plan)` is its artifact size in bytes."""
    errors = inr_errors(plan, groups, bits)
    by_key = {t.key: t for t in plan.targets}

    measured: dict[tuple[str, int], float] = {}

    def code_error(key: str, code_bits: int) -> float:
        if (key, code_bits) not in measured:
            measured[key, code_bits] = sum(squared_error(plan.weights[s.name], code_bits)
                                           for s in by_key[key].segments)
        return measured[key, code_bits]

    widths, code_bits = dict(plan.widths), dict(plan.code_bits)
    for key, error in errors.items():
        target = by_key[key]
        affordable = [b for b in range(MIN_CODE_BITS, MAX_CODE_BITS + 1)
                      if target_code_bytes(target, b) <= target_inr_bytes(plan, inr, bits, target)]
        if affordable and code_error(key, max(affordable)) < error:
            widths[key], code_bits[key] = CODES, max(affordable)
    switched = plan.with_widths(widths, code_bits)
    spare = measure(plan) - measure(switched) - HEADER_SLACK_BYTES

    def step_bytes(key: str, level: int) -> int | None:
        if level >= MAX_CODE_BITS:
            return None
        return target_code_bytes(by_key[key], level + 1) - target_code_bytes(by_key[key], level)

    def gain_per_byte(key: str, level: int) -> float:
        return (code_error(key, level) - code_error(key, level + 1)) / max(step_bytes(key, level), 1)

    raised = greedy_raise(code_bits, step_bytes, gain_per_byte, spare) if spare > 0 else code_bits
    return plan.with_widths(widths, raised)
