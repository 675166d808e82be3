"""`lq_prune`: adaptive per-neuron pruning from l_q soft sparsity (arXiv 2206.05604), no fine-tuning.

A neuron is one output channel: row w (d weights) of the weight reshaped to (dim 0, rest). Its soft sparsity
    s = d^(1/q - 1) * ||w||_1 / ||w||_q          (1 = all |w_i| equal, d^(1/q-1) = one entry dominates)
gives, from the best m-term approximation bound, the number of weights worth keeping
    m = ceil(d * s^(q/(q-1)) * (1 + eta)^(1/(q-1))).
A neuron whose weights are spread out keeps many, one with a few dominant weights keeps few. Each neuron keeps
its min(d, max(1, ceil(alpha * m))) largest-magnitude weights, where the one global factor alpha is 1 without
`target_ratio` and otherwise the largest value whose artifact still meets the target (bisection). An all-zero
neuron keeps nothing. Storage as for `magnitude` (fp32 values, bitmap or gap-coded positions).

Against the paper (only its abstract and the rule above were available to us; no public code found):
- the rule is scale-free per neuron: a neuron's norm does not change how many weights it keeps, unlike layer-wise
  or global magnitude thresholds (measured at equal kept weights in docs/results.md, "Seed baselines").
- the global factor alpha on m is the same family as raising eta (m scales by ((1+eta')/(1+eta))^(1/(q-1)));
  alpha > (1+eta)^(1/(1-q)) would mean eta' < 0, which the paper's bound does not allow.
- whether the paper fine-tunes between pruning rounds, and its ratio (kept weights, not the file's bytes with
  fp32 values and positions), could not be checked here; this project never fine-tunes.
"""

from __future__ import annotations

import math

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
from big2small.numerics import DENOMINATOR_FLOOR


@register
class LqPruning(PrunedWeightsCompressor):
    """l_q soft-sparsity adaptive per-neuron pruning (arXiv 2206.05604), no fine-tuning; stored as for magnitude.

    Without target_ratio each neuron keeps m = ceil(d s^(q/(q-1)) (1+eta)^(1/(q-1))) weights; with it, one global
    factor on m is searched so that the artifact meets the target. q: the l_q quasi-norm, 0 < q < 1; eta: the
    tolerance of the m-term approximation bound, >= 0 (larger keeps fewer).
    """
    name = "lq_prune"

    def __init__(self, q: float = 0.5, eta: float = 0.1, target_ratio=None, layer_types=("conv", "linear"),
                 min_params=0) -> None:
        super().__init__(target_ratio, layer_types, min_params)
        if not 0.0 < float(q) < 1.0:
            raise ConfigError(f"lq_prune: q must lie in (0, 1) (got {q})")
        if not (float(eta) >= 0.0 and math.isfinite(float(eta))):
            raise ConfigError(f"lq_prune: eta must be a finite number >= 0 (got {eta})")
        self.q, self.eta = float(q), float(eta)

    def settings(self) -> dict:
        return {**super().settings(), "q": self.q, "eta": self.eta}

    def fit(self, model, *, data=None, trainer_factory=None) -> Compressed:
        weights = self.select(model)
        worth = {name: terms_worth_keeping(w.reshape(w.shape[0], -1), self.q, self.eta) for name, w in weights.items()}
        # Each weight's magnitude rank within its neuron, computed once: a mask is then rank < keep.
        ranks = {name: magnitude_ranks(w.reshape(w.shape[0], -1)) for name, w in weights.items()}
        scale = 1.0 if self.target_ratio is None else self._scale_for_target(weights, worth, ranks)
        masks = self.masks(weights, worth, ranks, scale)
        return pruned_artifact(self, weights, masks, "every non-zero neuron keeps at least one weight, and a neuron at most all of its own")

    @staticmethod
    def masks(weights, worth, ranks, scale: float) -> dict[str, torch.Tensor]:
        masks = {}
        for name, weight in weights.items():
            keep = torch.clamp(torch.ceil(scale * worth[name]), min=1, max=ranks[name].shape[1]).long()
            keep = torch.where(worth[name] > 0, keep, torch.zeros_like(keep))
            masks[name] = (ranks[name] < keep[:, None]).reshape(weight.shape)
        return masks

    def _scale_for_target(self, weights, worth, ranks) -> float:
        original = original_bytes(weights)
        budget = budget_bytes(original, self.target_ratio)
        # Beyond this scale every neuron keeps all its weights.
        highest = max(float((w.reshape(w.shape[0], -1).shape[1] / worth[n].clamp_min(DENOMINATOR_FLOOR)).max())
                      for n, w in weights.items())

        def fits(scale: float) -> bool:
            sized = pack_pruned(self.name, self.settings(), weights, self.masks(weights, worth, ranks, scale), True)
            return artifact_bytes(sized) <= budget

        scale = bisect_largest(fits, 0.0, highest)
        return 0.0 if scale is None else scale  # scale 0: one weight per neuron, the sparsest lq_prune stores



def terms_worth_keeping(rows: torch.Tensor, q: float, eta: float) -> torch.Tensor:
    """m per row (before rounding up), from the l_q soft sparsity; 0 for an all-zero row. Computed in logs."""
    rows = rows.double().abs()
    d = rows.shape[1]
    l1 = rows.sum(dim=1)
    lq = rows.pow(q).sum(dim=1).pow(1.0 / q)
    nonzero = l1 > 0
    log_s = (1.0 / q - 1.0) * math.log(d) + torch.log(l1.clamp_min(1e-300)) - torch.log(lq.clamp_min(1e-300))
    log_m = math.log(d) + (q / (q - 1.0)) * log_s + (1.0 / (q - 1.0)) * math.log1p(eta)
    return torch.where(nonzero, torch.exp(log_m), torch.zeros_like(log_m)).float()


def magnitude_ranks(rows: torch.Tensor) -> torch.Tensor:
    """Per entry, its place in its row by decreasing |w| (0 = largest; ties by position)."""
    order = torch.sort(rows.abs(), dim=1, descending=True, stable=True).indices
    return torch.empty_like(order).scatter_(1, order, torch.arange(rows.shape[1]).expand_as(order).contiguous())
