"""Per-weight output sensitivity on synthetic inputs, for `storage.choice_error: output`.

A small change d of the weights changes the network's outputs f(x) by J_x d, whose squared size summed over the
inputs is d^T (sum_x J_x^T J_x) d. The diagonal of that matrix weighs each weight's squared error; it is estimated
without forming a Jacobian, as the mean of (d v^T f(x) / dw)^2 over Gaussian v (its expectation is exactly the
diagonal), one backward pass per batch of inputs and draw of v. This is the error the refinement's output
matching then has to remove, to second order.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

DRAWS = 4  # draws of v per input


def output_sensitivity(model: nn.Module, inputs: torch.Tensor, names: list[str], batch_size: int,
                       seed: int) -> dict[str, torch.Tensor]:
    """{parameter name: the diagonal estimate, shaped like the parameter}, on the CPU; `model` is left as it was."""
    model = copy.deepcopy(model).cpu().eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    parameters = [model.get_parameter(name) for name in names]
    for parameter in parameters:
        parameter.requires_grad_(True)
    totals = [torch.zeros_like(p) for p in parameters]
    generator = torch.Generator().manual_seed(seed)
    passes = 0
    for _ in range(DRAWS):
        for batch in inputs.split(batch_size):
            outputs = model(batch.float())
            directions = torch.randn(outputs.shape, generator=generator)
            gradients = torch.autograd.grad((outputs * directions).sum(), parameters)
            for total, gradient in zip(totals, gradients, strict=True):
                total += gradient.detach() ** 2
            passes += 1
    return {name: total / passes for name, total in zip(names, totals, strict=True)}
