"""From fitted INRs back to weight tensors: evaluate on the grid, undo standardisation, write outliers back."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from big2small.methods.big2small.fitting import INRGroup
from big2small.methods.big2small.outliers import restore


@dataclass
class LayerCode:
    """What turns a layer's standardised INR output into its weights."""

    mean: float
    std: float
    outlier_index: torch.Tensor
    outlier_value: torch.Tensor


def reconstruct(groups: list[INRGroup], codes: dict[str, LayerCode]) -> dict[str, torch.Tensor]:
    """Weights of every INR-fitted layer (differentiable in the INR parameters)."""
    weights = {}
    for group in groups:
        predicted = group.predict()
        for g, target in enumerate(group.targets):
            for segment in target.segments:
                rows = predicted[g, segment.start : segment.start + segment.count]
                code = codes[segment.name]
                weights[segment.name] = restore(rows.reshape(segment.shape), code.mean, code.std,
                                                code.outlier_index, code.outlier_value)
    return weights
