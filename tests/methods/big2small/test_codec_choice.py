"""The knapsack behind Big2Small's per-layer codec choice: least total error within a byte budget."""

from __future__ import annotations

import itertools
import random

import pytest

from big2small.methods.big2small.codec_choice import BUDGET_UNITS, least_error_within


def _brute_force(options, budget):
    keys = list(options)
    best = None
    for combination in itertools.product(*(options[k] for k in keys)):
        size = sum(options[k][o][0] for k, o in zip(keys, combination, strict=True))
        error = sum(options[k][o][1] for k, o in zip(keys, combination, strict=True))
        if size <= budget and (best is None or error < best):
            best = error
    return best


@pytest.mark.parametrize("seed", range(10))
def test_the_choice_fits_the_budget_and_its_error_is_the_least_possible(seed):
    rng = random.Random(seed)
    options = {}
    for layer in range(4):
        weights = rng.randint(100, 5000)
        scale = rng.uniform(0.1, 10)
        options[f"layer{layer}"] = {b: (weights * b // 8 + rng.randint(0, 50), scale * 4.0 ** -b * weights)
                                    for b in range(2, 9)}
        options[f"layer{layer}"][0] = (rng.randint(200, 4000), rng.uniform(0, scale * weights / 16))
    smallest = sum(min(size for size, _ in choices.values()) for choices in options.values())
    budget = smallest + rng.randint(0, 8000)
    chosen = least_error_within(options, budget)
    assert budget <= BUDGET_UNITS  # so the choice is made to the byte
    assert sum(options[k][o][0] for k, o in chosen.items()) <= budget
    assert sum(options[k][o][1] for k, o in chosen.items()) == pytest.approx(_brute_force(options, budget))


def test_no_choice_when_even_the_smallest_options_exceed_the_budget():
    options = {"a": {2: (100, 1.0), 0: (80, 2.0)}, "b": {2: (50, 1.0)}}
    assert least_error_within(options, 129) is None
    assert least_error_within(options, 130) == {"a": 0, "b": 2}
