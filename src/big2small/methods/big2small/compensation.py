"""Error-compensated codes (as GPTQ and OBQ round): where the refinement's codes start with `refinement.start:
compensated` (or `sequential`).

A coded layer's weights are rounded one input column at a time on the grid the codec choice gave it (each output
channel's scale and dead zone, layer_codes.py), and each column's rounding error is spread over the columns not yet
rounded through the inverse of the layer's input second moments H = E[x x^T] on the synthetic inputs, so that what
stays near the original is the layer's output on those inputs rather than each weight. Columns are taken in blocks
of BLOCK, the rest of the layer updated once per block. The levels each weight takes change; the grid, and so the
decoder, do not. H comes from the uncompressed network's inputs to each layer (every layer from the same pass);
with `sequential`, from the inputs each layer gets once the layers before it hold their codes (sequential_codes).
"""

from __future__ import annotations

import torch
from torch import nn

from big2small.graph.weights import frozen_copy, set_parameter
from big2small.methods.big2small.layer_codes import (
    DEAD_ZONES,
    NEAREST,
    WeightCodes,
    code_limit,
    dead_zone_round,
)

BLOCK = 128
# Added to H's diagonal, as a share of its mean diagonal, so that its inverse exists where inputs are correlated.
DAMPING = 0.01
# A layer whose compensated codes would take less than this share of its nearest codes' stored bytes keeps the
# nearest codes: the codec choice gave it those bytes, and the refinement does not spend bytes freed under the target
# (docs/decisions.md). What the layers above it free is chosen again by the compressor (compressor.SPEND_FREED_BELOW).
BYTE_FLOOR = 0.95
# Columns are rounded in order of their inputs' energy (H's diagonal), largest first, as GPTQ's act-order does: the
# columns that move the output most are rounded while the most columns are left to take their error.
BY_ENERGY = True


def compensated_codes(model: nn.Module, coded: dict[str, WeightCodes], weights: dict[str, torch.Tensor],
                      inputs: torch.Tensor, batch_size: int, entropy_coding: bool,
                      sequential: bool = False) -> dict[str, WeightCodes]:
    """`coded` (by parameter name) with each Conv2d (ungrouped) and Linear layer's codes error-compensated on
    `inputs`, where they take at least BYTE_FLOOR of the stored bytes of the codes they replace; other layers' codes
    as they were. `sequential`: each layer compensated, in the order the model runs them, for the inputs it gets
    from the layers before it as they are now coded (sequential_codes); else for the uncompressed model's inputs."""
    if sequential:
        return sequential_codes(model, coded, weights, inputs, batch_size, entropy_coding)
    moments = input_moments(model, [name for name in coded if compensable(model, name)], inputs, batch_size)
    result = {}
    for name, codes in coded.items():
        if name in moments:  # each layer's moments are let go once used (a ResNet-50's take 0.5 GB together)
            codes = floored(codes, compensated(weights[name], codes, moments.pop(name)), entropy_coding)
        result[name] = codes
    return result


def floored(codes: WeightCodes, better: WeightCodes, entropy_coding: bool) -> WeightCodes:
    """`better`, unless it takes less than BYTE_FLOOR of the stored bytes of `codes`."""
    floor = BYTE_FLOOR * codes.stored_size(entropy_coding)[1]
    return better if better.stored_size(entropy_coding)[1] >= floor else codes


class _Reached(Exception):
    """Raised by a forward pre-hook to stop the model once the layer it watches is reached."""


def inputs_to(model: nn.Module, layer: str, chunk: torch.Tensor) -> torch.Tensor | None:
    """The input the `layer` module gets when `model` runs `chunk` (its first call), the rest of the model not run;
    None where the model never calls it."""
    seen = []

    def stop(_module, args):
        seen.append(args[0].detach().float())
        raise _Reached

    hook = model.get_submodule(layer).register_forward_pre_hook(stop)
    try:
        with torch.no_grad():
            model(chunk)
    except _Reached:
        pass
    finally:
        hook.remove()
    return seen[0] if seen else None


def run_order(model: nn.Module, names: list[str], example: torch.Tensor) -> list[str]:
    """`names` (parameter names) in the order the model first calls their modules on `example`; those it never
    calls are left out."""
    order: list[str] = []
    hooks = [model.get_submodule(name.rpartition(".")[0]).register_forward_pre_hook(
        lambda _m, _a, name=name: order.append(name) if name not in order else None) for name in names]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    return order


def sequential_codes(model: nn.Module, coded: dict[str, WeightCodes], weights: dict[str, torch.Tensor],
                     inputs: torch.Tensor, batch_size: int, entropy_coding: bool) -> dict[str, WeightCodes]:
    """compensated_codes, each layer in run order compensated for the error the coded layers before it put into its
    inputs: with X the uncompressed model's inputs to the layer and Y those of the model whose earlier layers hold
    their codes (rows per input and position), the weights that best reproduce X W^T from Y, W X^T Y (Y^T Y)^-1, are
    rounded on the layer's grid with Y^T Y as the moments (H below, C = X^T Y)."""
    device = next(model.parameters()).device
    student = frozen_copy(model, {name for name, _ in model.named_parameters()} - set(coded))
    for name, codes in coded.items():
        set_parameter(student, name, codes.values())
    result = dict(coded)
    names = [name for name in coded if compensable(model, name)]
    for name in run_order(model, names, inputs[:1].to(device)):
        layer = name.rpartition(".")[0]
        module = model.get_submodule(layer)
        moments, cross, count = 0, 0, 0
        for chunk in inputs.split(batch_size):
            chunk = chunk.to(device)
            wanted = layer_rows(module, inputs_to(model, layer, chunk))
            got = layer_rows(module, inputs_to(student, layer, chunk))
            moments = moments + got.T @ got
            cross = cross + wanted.T @ got
            count += len(got)
        moments, cross = (moments / count).cpu().double(), (cross / count).cpu().double()
        damped = moments.clone()
        damped.diagonal().add_(DAMPING * float(damped.diagonal().mean()))
        rows = weights[name].detach().double().reshape(len(weights[name]), -1)
        # W C H^-1 = W + W (C - H) H^-1, damped in the correction only: a layer whose inputs are as they were keeps W
        best = rows + torch.linalg.solve(damped, (rows @ (cross - moments)).T).T
        best = best.float().reshape(weights[name].shape)
        result[name] = floored(coded[name], compensated(weights[name], coded[name], moments.float(), best),
                               entropy_coding)
        set_parameter(student, name, result[name].values())
    return result


def compensable(model: nn.Module, name: str) -> bool:
    """Whether the layer's inputs can be laid out as rows of its weight's columns here: a Linear, or a Conv2d of one
    group with zero padding given in pixels."""
    module = model.get_submodule(name.rpartition(".")[0])
    if not name.endswith(".weight"):
        return False
    if isinstance(module, nn.Linear):
        return True
    return isinstance(module, nn.Conv2d) and module.groups == 1 and module.padding_mode == "zeros" and \
        not isinstance(module.padding, str)


def layer_rows(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The rows the layer multiplies its weight (flattened per output channel) with: one per input and position."""
    if isinstance(module, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    patches = nn.functional.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)
    return patches.transpose(1, 2).reshape(-1, patches.shape[1])


def input_moments(model: nn.Module, names: list[str], inputs: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
    """E[x x^T] of each named weight's layer inputs, over `inputs` through `model` (left as it was)."""
    sums: dict[str, torch.Tensor] = {}
    counts = dict.fromkeys(names, 0)

    def accumulate(name: str, module: nn.Module, x: torch.Tensor) -> None:
        rows = layer_rows(module, x.detach().float())
        sums[name] = sums.get(name, 0) + rows.T @ rows
        counts[name] += len(rows)

    hooks = [model.get_submodule(name.rpartition(".")[0]).register_forward_pre_hook(
        lambda module, args, name=name: accumulate(name, module, args[0])) for name in names]
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            for chunk in inputs.split(batch_size):
                model(chunk.to(device))
    finally:
        for hook in hooks:
            hook.remove()
    return {name: (sums[name] / counts[name]).cpu() for name in names if name in sums}


def channel_zones(weight: torch.Tensor, codes: WeightCodes) -> torch.Tensor:
    """Each output channel's dead zone (layer_codes.DEAD_ZONES): the first that rounds its weights to its codes."""
    rows = weight.detach().float().reshape(weight.shape[0], -1)
    ratios = rows / codes.scale.float().reshape(-1, 1)
    stored = codes.codes.reshape(len(rows), -1).float()
    limit = code_limit(codes.bits)
    zones = torch.full((len(rows), 1), NEAREST)
    for zone in reversed(DEAD_ZONES):  # the first in DEAD_ZONES that matches ends up set
        same = (dead_zone_round(ratios, zone).clamp(-limit, limit) == stored).all(dim=1, keepdim=True)
        zones = torch.where(same, zone, zones)
    return zones


def compensated(weight: torch.Tensor, codes: WeightCodes, moments: torch.Tensor,
                target: torch.Tensor | None = None) -> WeightCodes:
    """One layer's codes rounded column after column with each column's error compensated in the later ones: the
    codes of `target` (default: the weight) on the grid of `codes`, whose dead zones are those that round `weight`
    to them."""
    limit = code_limit(codes.bits)
    zones = channel_zones(weight, codes)
    target = weight if target is None else target
    ratios = target.detach().float().reshape(weight.shape[0], -1) / codes.scale.float().reshape(-1, 1)
    moments = moments.to(torch.float64, copy=True)  # the caller's moments stay as they were
    order = torch.argsort(moments.diagonal(), descending=True, stable=True) if BY_ENERGY else \
        torch.arange(len(moments))
    ratios, moments = ratios[:, order], moments[order][:, order]
    unused = moments.diagonal() == 0  # an input that is always 0: its column's code changes no output
    moments[unused, unused] = 1
    moments.diagonal().add_(DAMPING * float(moments.diagonal().mean()))
    # Upper Cholesky factor of H^-1: row j holds how column j's error moves the columns after it. One matrix of
    # H's size at a time beside the last.
    factor = torch.linalg.cholesky(moments)
    del moments
    inverse = torch.cholesky_inverse(factor)
    del factor
    spread = torch.linalg.cholesky(inverse, upper=True).float()
    del inverse
    rounded = torch.empty_like(ratios)
    for start in range(0, ratios.shape[1], BLOCK):
        end = min(start + BLOCK, ratios.shape[1])
        block = ratios[:, start:end].clone()
        errors = torch.empty_like(block)
        for j in range(end - start):
            column = block[:, j:j + 1]
            level = dead_zone_round(column, zones).clamp(-limit, limit)
            rounded[:, start + j:start + j + 1] = level
            errors[:, j:j + 1] = (column - level) / spread[start + j, start + j]
            block[:, j + 1:] -= errors[:, j:j + 1] * spread[start + j, start + j + 1:end]
        ratios[:, end:] -= errors @ spread[start:end, end:]
    rounded[:, unused] = 0
    rounded[:, order] = rounded.clone()
    return WeightCodes(rounded.reshape(weight.shape), codes.scale, codes.bits)
