"""Which targets could keep an INR, decided before any INR is fitted (`fit.inrs: predicted`).

Every candidate INR is given an optimistic weight error, as a fraction of the error of storing nothing (all zeros)
under the codec choice's own error measure: the lower of
- `optimistic_relative_error`, which depends only on its bits per weight (its parameters, outliers and statistics
  over the target's weights), below every error fitted INRs were measured to reach on trained layers, and
- `low_rank_relative_error` / OPTIMISM: the error of the layer's best low-rank approximation in the INR's bytes
  (8-bit factors), so that a layer with structure (smooth, or of low rank, where an INR can beat codes by far)
  gets the chance to show it.
The codec choice is then made with those errors (codec_choice.choose_codecs, the same choice that follows the fit);
a target whose INR it does not keep even then is predicted to be stored otherwise and gets no INR fitted. The others
are fitted, screened (screening.py) and chosen among as before: a prediction never keeps an INR that the fit does not
earn; where it is wrong, a layer whose INR would have won is stored otherwise (`fit.inrs: all` shows it, and
metrics.json records each layer's `predicted_as` beside its `stored_as`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from big2small.methods.big2small.codec_choice import ENERGY_FLOOR, ErrorMeasure, InrErrors, target_inr_bytes
from big2small.methods.big2small.plan import Big2SmallPlan
from big2small.methods.big2small.settings import INRSettings

# On ResNet-20 at 8x, 16x and 32x (3.8, 1.8 and 0.8 bits per weight; benchmarks/inr_rate.py, docs/results.md "Where
# an INR earns its bytes") every fitted INR's error lay at least 1.3x above 2^(-bits / FLOOR_BITS) / OPTIMISM, and
# the least ones were those of the last convolution, the most structured layer.
FLOOR_BITS = 0.8
OPTIMISM = 2.0


def optimistic_relative_error(bits_per_weight: float) -> float:
    """A fitted INR's squared error over the error of storing zeros, as low as it is hoped to be at its bits per
    weight: 2^(-bits_per_weight / FLOOR_BITS) / OPTIMISM."""
    return 2.0 ** (-bits_per_weight / FLOOR_BITS) / OPTIMISM


def optimistic_errors(plan: Big2SmallPlan, candidates: dict[str, dict[int, int]], inr: INRSettings,
                      measure: ErrorMeasure) -> InrErrors:
    """Each candidate INR's optimistic error ({key: {bits: error}}), by the codec choice's error measure."""
    errors: InrErrors = {}
    for target in plan.targets:
        if target.key not in candidates:
            continue
        layers = [plan.weights[s.name] for s in target.segments]
        count = sum(w.numel() for w in layers)
        nothing = sum(measure(s.name, torch.zeros_like(plan.weights[s.name]), plan.weights[s.name])
                      for s in target.segments)
        spectra = [squared_singular_values(w) for w in layers]  # one SVD per layer, whatever the INR's size
        energies = [float(w.pow(2).sum()) for w in layers]
        energy = max(sum(energies), ENERGY_FLOOR)
        errors[target.key] = {}
        for bits, width in candidates[target.key].items():
            size = target_inr_bytes(plan, inr, bits, width, target)
            structured = sum(e * low_rank_relative_error(squares, w, size * w.numel() // count)
                             for w, squares, e in zip(layers, spectra, energies, strict=True)) / energy
            errors[target.key][bits] = nothing * min(optimistic_relative_error(8 * size / count),
                                                     structured / OPTIMISM)
    return errors


def squared_singular_values(weight: torch.Tensor) -> torch.Tensor:
    """The squared singular values of `weight` as an output channels x rest matrix, largest first."""
    return torch.linalg.svdvals(weight.detach().float().reshape(weight.shape[0], -1)).pow(2)


def low_rank_relative_error(squares: torch.Tensor, weight: torch.Tensor, size: int) -> float:
    """The squared error over the energy of `weight`'s best approximation (as an output channels x rest matrix,
    whose squared singular values are `squares`) of the rank whose two factors, one byte per entry, fit in `size`
    bytes."""
    rank = size // (weight.shape[0] + weight[0].numel())
    return float(squares[rank:].sum() / squares.sum().clamp_min(ENERGY_FLOOR))


def predicted_inr_targets(plan: Big2SmallPlan, candidates: dict[str, dict[int, int]], inr: INRSettings,
                          measure: ErrorMeasure, choose: Callable[[Big2SmallPlan, InrErrors], Big2SmallPlan]) -> set[str]:
    """The targets whose INR `choose(plan, errors)` (the codec choice) keeps at their optimistic errors."""
    chosen = choose(plan, optimistic_errors(plan, candidates, inr, measure))
    return {key for key, width in chosen.widths.items() if width and key in candidates}
