"""Output matching: how the refinement compares a network's outputs with the uncompressed network's.

Each compared output (the logits, and the outputs of the matched modules, collected by `observing`) counts as its
mean squared error over the batch's variance of the wanted output, so outputs of any scale count alike; the batch's
variances follow from each input's sums (`input_sums`), so outputs kept for every input need no second pass.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from big2small.numerics import DENOMINATOR_FLOOR


def input_sums(outputs: torch.Tensor) -> torch.Tensor:
    """The sum and the sum of squares of each input's `outputs` (one row per input), in float64: (inputs, 2). A
    batch's variance follows from its rows' sums alone, so kept outputs need no pass over them for it."""
    flat = outputs.reshape(len(outputs), -1)
    return torch.stack([flat.sum(1, dtype=torch.float64), flat.square().sum(1, dtype=torch.float64)], dim=1)


def batch_variances(sums: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """The variance (unbiased, as torch.var) of each output over a batch, from the batch's input_sums of each
    stacked (outputs, batch, 2) and each output's values per input `sizes`: one value per output, float32."""
    counts = sums.new_tensor(sizes) * sums.shape[1]
    total, squares = sums.sum(dim=1).unbind(dim=1)
    return ((squares - total * total / counts) / (counts - 1).clamp_min(1)).float()


def relative_mse(got: torch.Tensor, wanted: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """Each input's mean squared error over `variance` (the batch's variance of `wanted`; one value per input)."""
    gap = (got - wanted).reshape(len(got), -1)  # one dot product per input: the square and the sum in one pass
    return torch.linalg.vecdot(gap, gap) / (gap.shape[1] * variance.clamp_min(DENOMINATOR_FLOOR))


def matching_loss(output: torch.Tensor, wanted: torch.Tensor, features: list[torch.Tensor],
                  wanted_features: list[torch.Tensor], variances: torch.Tensor, feature_weight: float) -> torch.Tensor:
    """Each input's loss: the relative_mse of the logits plus `feature_weight` x the mean relative_mse of the matched
    outputs (`variances`: batch_variances of the logits, then of each matched output)."""
    per_input = relative_mse(output, wanted, variances[0])
    if feature_weight > 0:
        gaps = [relative_mse(a, b, v) for a, b, v in zip(features, wanted_features, variances[1:], strict=True)]
        per_input = per_input + feature_weight * torch.stack(gaps).mean(dim=0)
    return per_input


def hard_sample_mean(losses: torch.Tensor, power: float) -> torch.Tensor:
    """The mean of `losses` with input i weighted by (loss_i / mean loss)^power, the weights held constant
    (no gradient) and scaled to average 1; power 0 is the plain mean."""
    if power == 0:
        return losses.mean()
    weights = (losses.detach() / losses.detach().mean().clamp_min(DENOMINATOR_FLOOR)) ** power
    return (losses * weights / weights.mean().clamp_min(DENOMINATOR_FLOOR)).mean()


@contextmanager
def outputs_of(model: nn.Module, names: list[str]):
    """Yields a dict that holds, once the block inside has run, the output of each named submodule that ran (its
    last output if it ran more than once)."""
    outputs: dict[str, object] = {}
    hooks = [model.get_submodule(name).register_forward_hook(
        lambda _m, _args, out, name=name: outputs.__setitem__(name, out)) for name in names]
    try:
        yield outputs
    finally:
        for hook in hooks:
            hook.remove()


@contextmanager
def observing(model: nn.Module, names: list[str]):
    """Collects the outputs of the named submodules, in `names` order, once the block inside has run (a module
    called more than once contributes its last output)."""
    collected: list[torch.Tensor] = []
    with outputs_of(model, names) as outputs:
        yield collected
    collected.extend(outputs[name] for name in names if name in outputs)
