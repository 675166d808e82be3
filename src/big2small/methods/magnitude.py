"""`magnitude`: unstructured magnitude pruning, layer-wise or global, with no fine-tuning.

`layerwise` keeps the same fraction of weights, the largest |w|, in every layer; `global` keeps the largest |w|
over all layers at once (so layers with small weights lose more). Kept values are stored in fp32 and their
positions as a bitmap or gap codes, whichever is smaller per layer (sparse_storage.py).

Size knob: `sparsity` (fraction of weights dropped). When `target_ratio` is set it takes precedence: the largest
number of kept weights whose artifact, header and indices included, still reaches the target is searched for.
"""

from __future__ import annotations

import torch

from big2small.codec import Compressed
from big2small.errors import ConfigError
from big2small.methods.budget import (
    artifact_bytes,
    bisect_largest,
    budget_bytes,
    original_bytes,
)
from big2small.methods.pruned_weights import (
    PrunedWeightsCompressor,
    pack_pruned,
    pruned_artifact,
)
from big2small.methods.registry import register

MODES = ("layerwise", "global")
GLOBAL = ""  # key of the one order over all layers in global mode


@register
class MagnitudePruning(PrunedWeightsCompressor):
    """Unstructured magnitude pruning (no fine-tuning); kept values fp32, positions as bitmap or gap codes.

    sparsity: fraction of weights dropped (used when target_ratio is None); mode: layerwise (the same fraction per
    layer) | global (one threshold over all layers); target_ratio, when set, takes precedence over sparsity.
    """
    name = "magnitude"

    def __init__(self, sparsity: float = 0.5, mode: str = "layerwise", target_ratio=None,
                 layer_types=("conv", "linear"), min_params=0) -> None:
        super().__init__(target_ratio, layer_types, min_params)
        if mode not in MODES:
            raise ConfigError(f"magnitude: mode must be one of {MODES} (got {mode!r})")
        if target_ratio is None and not 0.0 <= float(sparsity) < 1.0:
            raise ConfigError(f"magnitude: sparsity must be in [0, 1) (got {sparsity})")
        self.sparsity, self.mode = float(sparsity), mode

    def settings(self) -> dict:
        return {**super().settings(), "sparsity": self.sparsity, "mode": self.mode}

    def fit(self, model, *, data=None, trainer_factory=None) -> Compressed:
        weights = self.select(model)
        keep_fraction = 1.0 - self.sparsity
        if self.target_ratio is not None:
            keep_fraction = self._keep_fraction_for_target(weights)
        masks = self.masks(weights, keep_fraction)
        return pruned_artifact(self, weights, masks, "one more kept weight would overshoot the budget")

    def masks(self, weights: dict[str, torch.Tensor], keep_fraction: float,
              orders: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Boolean keep-masks shaped like each weight (`orders`: magnitude_order per layer / of all, if known)."""
        orders = orders or self.orders(weights)
        if self.mode == "layerwise":
            return {name: top_magnitude_mask(w, round(keep_fraction * w.numel()), orders[name])
                    for name, w in weights.items()}
        flat = torch.cat([w.reshape(-1) for w in weights.values()])
        mask = top_magnitude_mask(flat, round(keep_fraction * flat.numel()), orders[GLOBAL])
        masks, offset = {}, 0
        for name, weight in weights.items():
            masks[name] = mask[offset : offset + weight.numel()].reshape(weight.shape)
            offset += weight.numel()
        return masks

    def orders(self, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Sort orders by decreasing |w|, computed once per fit (the target search builds many masks)."""
        if self.mode == "layerwise":
            return {name: magnitude_order(w) for name, w in weights.items()}
        return {GLOBAL: magnitude_order(torch.cat([w.reshape(-1) for w in weights.values()]))}

    def _keep_fraction_for_target(self, weights: dict[str, torch.Tensor]) -> float:
        original = original_bytes(weights)
        budget = budget_bytes(original, self.target_ratio)
        total = sum(w.numel() for w in weights.values())
        orders = self.orders(weights)

        def fits(kept: float) -> bool:
            masks = self.masks(weights, kept / total, orders)
            sized = pack_pruned(self.name, self.settings(), weights, masks, True)
            return artifact_bytes(sized) <= budget

        kept = bisect_largest(fits, 0, total, integer=True)
        if kept is None:
            raise ConfigError(f"magnitude: target_ratio {self.target_ratio} is out of reach: the header alone "
                              f"exceeds the budget of {budget:.0f} bytes")
        return kept / total



def magnitude_order(weight: torch.Tensor) -> torch.Tensor:
    """Flat indices by decreasing |w| (ties broken by position, deterministically)."""
    return torch.sort(weight.reshape(-1).abs(), descending=True, stable=True).indices


def top_magnitude_mask(weight: torch.Tensor, keep: int, order: torch.Tensor | None = None) -> torch.Tensor:
    """True at the `keep` entries of largest |w|."""
    order = magnitude_order(weight) if order is None else order
    mask = torch.zeros(weight.numel(), dtype=torch.bool)
    mask[order[:keep]] = True
    return mask.reshape(weight.shape)
