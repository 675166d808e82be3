"""After the INRs are fitted: how each target is stored, its fitted INR, its weights' own codes (ternary, 3..8 bits)
or fp16 (`storage.layer_choice: lower_error`).

Every target has options, each with its bytes and its weight error, measured on the weights the artifact would
rebuild by `storage.choice_error` (ErrorMeasure): its fitted INR (with its outliers and statistics; one per storage
bits when `storage.bits` lists several), codes at every width, fp16. One option per target is chosen so that the total error is least within the bytes target_ratio
allows (a multiple-choice knapsack, solved by dynamic programming over the budget); the fitted plan stays unless
the choice has less total error. An INR is therefore kept unless the bytes it takes buy less error as codes, here
or in another layer. One rule stands above the error: a target of fewer than SMALL_TARGET_WEIGHTS weights is not
coded under SMALL_TARGET_BITS while the budget allows (with_small_target_floor).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from big2small.encodings import index_codes
from big2small.encodings.dtype_bytes import FP16_BYTES
from big2small.methods.big2small.allocation import CODES, inr_bytes
from big2small.methods.big2small.coords import FitTarget
from big2small.methods.big2small.fitting import INRGroup
from big2small.methods.big2small.layer_codes import CODE_CHOICES, code_option, option_bits
from big2small.methods.big2small.plan import Big2SmallPlan
from big2small.methods.big2small.reconstruct import reconstruct
from big2small.methods.big2small.settings import INRSettings
from big2small.methods.budget import HEADER_SLACK_BYTES

STATS_BYTES = 8  # each INR-fitted layer's mean and std, fp32
ENERGY_FLOOR = 1e-12  # an all-zero layer or channel: its error counts against this energy


class ErrorMeasure:
    """The error of storing a weight (output channels first) as `stored`, called as (parameter name, stored,
    weight) -> error: `squared`; relative to the energy of the whole layer (`layer_relative`) or of each output
    channel, averaged over the channels (`channel_relative`); or (`output`) each weight's squared error times its
    output sensitivity (sensitivity.py). A class rather than a closure, so that spawned processes can receive it."""

    def __init__(self, kind: str, sensitivity: dict[str, torch.Tensor] | None = None) -> None:
        self.kind, self.sensitivity = kind, sensitivity

    def __call__(self, name: str, stored: torch.Tensor, weight: torch.Tensor) -> float:
        squared = (stored - weight) ** 2
        if self.kind == "output":
            return float((squared * self.sensitivity[name]).sum())
        error = squared.reshape(weight.shape[0], -1).sum(dim=1)
        energy = (weight ** 2).reshape(weight.shape[0], -1).sum(dim=1)
        if self.kind == "squared":
            return float(error.sum())
        if self.kind == "layer_relative":
            return float(error.sum() / energy.sum().clamp_min(ENERGY_FLOOR))
        return float((error / energy.clamp_min(ENERGY_FLOOR)).mean())


InrErrors = dict[str, dict[int, float]]  # target key -> {storage bits: weight error} of its fitted INRs


def inr_errors(plan: Big2SmallPlan, groups: list[INRGroup], measure: ErrorMeasure) -> InrErrors:
    """Weight error of every fitted INR, its parameters rounded as they are stored."""
    errors: InrErrors = {}
    layer_codes = plan.layer_codes()
    for group in groups:
        previous = group.net.fake_quant
        try:
            with torch.no_grad():
                group.net.fake_quant = group.quantised_bits()
                rebuilt = reconstruct([group], layer_codes)
        finally:
            group.net.fake_quant = previous
        for t in group.targets:
            errors.setdefault(t.key, {})[group.bits] = sum(
                measure(s.name, rebuilt[s.name].cpu(), plan.weights[s.name]) for s in t.segments)
    return errors


def kept_groups(groups: list[INRGroup], plan: Big2SmallPlan) -> list[INRGroup]:
    """The groups cut down to the INRs the plan keeps (each target's INR at its chosen bits)."""
    kept = []
    for group in groups:
        members = [g for g, t in enumerate(group.targets)
                   if plan.widths[t.key] and plan.inr_bits[t.key] == group.bits]
        if members:
            kept.append(group if len(members) == len(group.targets) else group.keeping(members))
    return kept


def target_inr_bytes(plan: Big2SmallPlan, inr: INRSettings, bits: int, width: int, target: FitTarget) -> int:
    """What an INR-fitted target costs in the artifact: its INR, and per layer its outliers and statistics."""
    total = inr_bytes(inr, target, width, bits)
    for segment in target.segments:
        index = plan.prepared[segment.name].outlier_index
        total += STATS_BYTES + FP16_BYTES * index.numel() + index_codes.encoded_size(
            index, plan.weights[segment.name].numel())
    return total


def target_code_bytes(plan: Big2SmallPlan, target: FitTarget, option: int) -> int:
    return sum(plan.stored_code_bytes(segment.name, option) for segment in target.segments)


def target_weights(target: FitTarget) -> int:
    return sum(math.prod(segment.shape) for segment in target.segments)


def target_fp16_bytes(target: FitTarget) -> int:
    return FP16_BYTES * target_weights(target)


FP16 = 16  # the option of storing a target's weights in fp16; CODE_CHOICES code it at those bits, inr_option(b)
           # keeps its fitted INR stored at b bits


def inr_option(bits: int) -> int:
    return -bits


def is_inr_option(option: int) -> bool:
    return option < 0


def inr_option_bits(option: int) -> int:
    return -option


SMALL_TARGET_WEIGHTS = 1000  # a target with fewer weights (a stem, a classifier, a segmentation head) is coded at
SMALL_TARGET_BITS = 4  # no fewer bits while the budget allows: its few bytes set every later layer's inputs,
                       # which its squared weight error does not count

SIZING_ROUNDS = 5  # tries to absorb a header that grew by more than the slack before keeping the fitted plan
BUDGET_UNITS = 65536  # the knapsack's resolution: each option's bytes are rounded up to budget / BUDGET_UNITS
                      # (whole bytes for budgets up to 64 KiB): coarser steps move a plan's layers by tens of bytes

Options = dict[str, dict[int, tuple[int, float]]]  # target key -> {option: (bytes, squared error)}


def stored_options(plan: Big2SmallPlan, weight_error: ErrorMeasure, rate_levels: int = 0) -> Options:
    """Every target's options other than its INR (codes at every width, at each of `rate_levels` rate levels beyond
    the least-error scales when they are entropy-coded; fp16), which do not change while the INRs are fitted:
    computed once per plan."""
    options: Options = {}
    levels = range(rate_levels + 1 if plan.entropy_coding else 1)
    for target in plan.targets:
        options[target.key] = {}
        for bits in CODE_CHOICES:
            errors = dict.fromkeys(levels, 0.0)
            for s in target.segments:  # the codes before the bytes: these are then known without coding again
                for level, codes in plan.nearest_codes(s.name, bits, list(levels)).items():
                    errors[level] += weight_error(s.name, codes.values(), plan.weights[s.name])
            for level, error in errors.items():
                options[target.key][code_option(bits, level)] = (
                    target_code_bytes(plan, target, code_option(bits, level)), error)
        options[target.key][FP16] = (target_fp16_bytes(target), sum(
            weight_error(s.name, plan.weights[s.name].half().float(), plan.weights[s.name])
            for s in target.segments))
    return options


def fixed_options(plan: Big2SmallPlan) -> Options:
    """Every target's present storage as its only option other than its INRs (`storage.layer_choice: inr`, where
    the choice is only among a target's INRs at several bits); the errors of fixed options do not matter."""
    options: Options = {}
    for target in plan.targets:
        width = plan.widths[target.key]
        if width is None:
            options[target.key] = {FP16: (target_fp16_bytes(target), 0.0)}
        elif width == CODES:
            option = plan.code_option(target.key)
            options[target.key] = {option: (target_code_bytes(plan, target, option), 0.0)}
        else:
            options[target.key] = {}  # its INRs are added by choose_codecs
    return options


def with_small_target_floor(options: Options, plan: Big2SmallPlan) -> Options:
    """The options with every small target's codes under SMALL_TARGET_BITS charged more error than all other
    choices together can differ by: the choice takes as few of them as the budget allows, then the least error."""
    penalty = 1.0 + 2 * sum(max(error for _, error in choices.values()) for choices in options.values())
    floored: Options = {}
    for target in plan.targets:
        small = target_weights(target) < SMALL_TARGET_WEIGHTS
        floored[target.key] = {
            option: (size, error + penalty if small and not is_inr_option(option) and option != FP16
                     and option_bits(option) < SMALL_TARGET_BITS else error)
            for option, (size, error) in options[target.key].items()}
    return floored


def choose_codecs(plan: Big2SmallPlan, inr_error: InrErrors, candidates: dict[str, dict[int, int]], stored: Options,
                  inr: INRSettings, measure: Callable[[Big2SmallPlan], int], limit: int | None = None) -> Big2SmallPlan:
    """The plan with each target stored the way that leaves the least total error within `limit` bytes (None: the
    fitted plan's); `inr_error` is the error of each fitted INR (inr_errors), whose widths are `candidates`
    ({key: {bits: width}}), `stored` the other options (stored_options), all by one error measure, `measure(plan)`
    a plan's artifact size in bytes."""
    options: Options = {key: dict(choices) for key, choices in stored.items()}
    target_of = {target.key: target for target in plan.targets}
    for key, widths in candidates.items():
        for bits, width in widths.items():
            options[key][inr_option(bits)] = (target_inr_bytes(plan, inr, bits, width, target_of[key]),
                                              inr_error[key][bits])
    fitted = {key: FP16 if width is None else plan.code_option(key) if width == CODES else inr_option(plan.inr_bits[key])
              for key, width in plan.widths.items()}
    fitted_bytes = measure(plan)
    limit = fitted_bytes if limit is None else limit
    budget = _bytes(options, fitted) + limit - fitted_bytes
    options = with_small_target_floor(options, plan)
    for _ in range(SIZING_ROUNDS):
        chosen = least_error_within(options, budget)
        if chosen is None or (fitted_bytes <= limit and _error(options, chosen) >= _error(options, fitted)):
            break
        inr_bits = {key: inr_option_bits(option) for key, option in chosen.items() if is_inr_option(option)}
        widths = {key: candidates[key][inr_bits[key]] if key in inr_bits else None if option == FP16 else CODES
                  for key, option in chosen.items()}
        candidate = plan.with_widths(widths, {key: option for key, option in chosen.items() if widths[key] == CODES},
                                     inr_bits=inr_bits)
        over = measure(candidate) - limit
        if over <= 0:
            return candidate
        budget -= over + HEADER_SLACK_BYTES
    return plan


def least_error_within(options: Options, budget: float) -> dict[str, int] | None:
    """One option per key, least total error with total bytes within budget (None: even the smallest is over).

    A knapsack by dynamic programming over the budget in BUDGET_UNITS steps, each option's bytes rounded up to
    whole steps (so the choice always fits), then what the rounding left is spent on the upgrades that remove
    the most error per byte."""
    if budget < 0:
        return None
    keys = list(options)
    unit = max(budget / BUDGET_UNITS, 1.0)
    capacity = int(budget // unit)
    least = np.zeros(capacity + 1)  # least error of the targets so far within u steps
    picks = []
    for key in keys:
        after, pick = np.full(capacity + 1, np.inf), np.zeros(capacity + 1, dtype=np.int64)
        for option, (size, error) in options[key].items():
            steps = math.ceil(size / unit)
            if steps > capacity:
                continue
            candidate = np.full(capacity + 1, np.inf)
            candidate[steps:] = least[: capacity + 1 - steps] + error
            better = candidate < after
            after[better], pick[better] = candidate[better], option
        least = after
        picks.append(pick)
    if not np.isfinite(least[capacity]):
        return None
    chosen, left_steps = {}, capacity
    for key, pick in zip(reversed(keys), reversed(picks), strict=True):
        chosen[key] = int(pick[left_steps])
        left_steps -= math.ceil(options[key][chosen[key]][0] / unit)
    left = budget - _bytes(options, chosen)
    while True:  # spend what is left on the upgrade that removes the most error per byte
        best, best_gain = None, 0.0
        for key, choices in options.items():
            size, error = choices[chosen[key]]
            for option, (more, less) in choices.items():
                if size < more <= size + left and less < error and (error - less) / (more - size) > best_gain:
                    best, best_gain = (key, option), (error - less) / (more - size)
        if best is None:
            return chosen
        key, option = best
        left -= options[key][option][0] - options[key][chosen[key]][0]
        chosen[key] = option


def _bytes(options: Options, chosen: dict[str, int]) -> int:
    return sum(options[key][option][0] for key, option in chosen.items())


def _error(options: Options, chosen: dict[str, int]) -> float:
    return sum(options[key][option][1] for key, option in chosen.items())

