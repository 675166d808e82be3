"""Function-preserving channel permutation: reorder channels so neighbouring kernels are similar.

Permuting the output channels of the layers that write a tensor, together with the BN that normalises it and the
input channels of the layers that read it, leaves the network's function unchanged. The model is traced with
torch.fx and every tensor gets a "channel space"; spaces merged by an addition (a residual stream) share one
permutation. A space touched by anything this analysis does not understand (slicing, padding, concatenation,
reshapes, the network's input or output) is left in its original order, so the result is always safe; the
caller still checks the permuted model's outputs against the original's.

The order itself: each channel is described by its slices of every producer's and consumer's weights (each
layer's block scaled to unit RMS) and a greedy nearest-neighbour chain through those descriptions is taken.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.fx
from torch import nn

from big2small.errors import FittingError
from big2small.graph.tracing import (
    ADAPTIVE_POOL_FUNCTIONS,
    ADAPTIVE_POOL_MODULES,
    FLATTENS,
    PER_CHANNEL_MODULES,
    flattens_from_dim1,
    is_per_channel_call,
    trace_layers,
)
from big2small.numerics import DENOMINATOR_FLOOR

PRODUCERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
ADDITIONS = {operator.add, torch.add, operator.iadd, "add", "add_"}

@dataclass
class ChannelSpace:
    size: int
    producers: list[str] = field(default_factory=list)  # modules writing these channels (weight dim 0, bias)
    norms: list[str] = field(default_factory=list)      # BN modules over these channels
    consumers: list[str] = field(default_factory=list)  # modules reading them (weight dim 1)
    fixed: bool = False


def channel_spaces(model: nn.Module) -> list[ChannelSpace]:
    """The permutable channel spaces of `model` (fixed ones dropped)."""
    try:
        graph = trace_layers(model)
    except Exception as error:  # tracing fails on data-dependent control flow
        raise FittingError(f"permutation: the model cannot be traced with torch.fx ({error}); "
                           "set compressor.permutation.enabled=false") from None
    modules = dict(model.named_modules())
    parent: list[int] = []
    spaces: list[ChannelSpace] = []

    def new(size: int, fixed: bool = False) -> int:
        parent.append(len(parent))
        spaces.append(ChannelSpace(size, fixed=fixed))
        return len(parent) - 1

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(a: int, b: int) -> int:
        a, b = find(a), find(b)
        if a != b:
            sa, sb = spaces[a], spaces[b]
            parent[b] = a
            sa.fixed = sa.fixed or sb.fixed or sa.size != sb.size
            sa.producers += sb.producers
            sa.norms += sb.norms
            sa.consumers += sb.consumers
        return a

    fixed_space = new(0, fixed=True)
    space: dict[torch.fx.Node, int] = {}
    spatial_one: set[torch.fx.Node] = set()  # tensors whose spatial dims are 1 (after global pooling)

    def fix_inputs(node: torch.fx.Node) -> None:
        for arg in node.all_input_nodes:
            if arg in space:
                spaces[find(space[arg])].fixed = True

    for node in graph.nodes:
        inputs = [a for a in node.all_input_nodes if a in space]
        target = node.target
        module = modules.get(target) if node.op == "call_module" else None
        if node.op == "placeholder":
            space[node] = fixed_space
        elif isinstance(module, PRODUCERS) and not _grouped(module):
            root = find(space[inputs[0]]) if inputs else fixed_space
            spaces[root].consumers.append(target)
            space[node] = new(module.weight.shape[0])
            spaces[space[node]].producers.append(target)
        elif isinstance(module, NORMS) and inputs:
            space[node] = find(space[inputs[0]])
            spaces[space[node]].norms.append(target)
        elif isinstance(module, PER_CHANNEL_MODULES) and inputs:
            space[node] = space[inputs[0]]
        elif isinstance(module, ADAPTIVE_POOL_MODULES) and inputs and module.output_size in (1, (1, 1)):
            space[node] = space[inputs[0]]
            spatial_one.add(node)
        elif node.op == "call_function" and target in ADAPTIVE_POOL_FUNCTIONS and len(node.args) > 1 \
                and node.args[1] in (1, (1, 1)) and inputs:
            space[node] = space[inputs[0]]
            spatial_one.add(node)
        elif is_per_channel_call(node) and len(inputs) == 1 and node.args and node.args[0] is inputs[0]:
            space[node] = space[inputs[0]]
            if inputs[0] in spatial_one:
                spatial_one.add(node)
        elif node.op in ("call_function", "call_method") and target in ADDITIONS and len(inputs) == 2:
            space[node] = union(space[inputs[0]], space[inputs[1]])
        elif node.op in ("call_function", "call_method") and target in FLATTENS \
                and inputs and inputs[0] in spatial_one and flattens_from_dim1(node):
            space[node] = space[inputs[0]]
        elif node.op == "get_attr" or (node.op == "call_method" and target in ("size", "dim")):
            continue  # reading a shape does not depend on the channel order
        else:  # anything else (slicing, padding, cat, view, output, size, ...): do not permute what it touches
            fix_inputs(node)
            if inputs:
                space[node] = fixed_space
    roots = {find(i) for i in range(len(parent))}
    return [spaces[r] for r in sorted(roots) if not spaces[r].fixed and spaces[r].producers and spaces[r].size > 1]


def _grouped(module: nn.Module) -> bool:
    return getattr(module, "groups", 1) != 1


def smooth_order(space: ChannelSpace, modules: dict[str, nn.Module]) -> torch.Tensor:
    """An order of the space's channels in which neighbours have similar weights (greedy nearest-neighbour chain)."""
    parts = []
    for name in space.producers:
        rows = modules[name].weight.detach().reshape(space.size, -1)
        parts.append(rows / rows.pow(2).mean().sqrt().clamp_min(DENOMINATOR_FLOOR))
    for name in space.consumers:
        weight = modules[name].weight.detach()
        columns = weight.transpose(0, 1).reshape(space.size, -1)
        parts.append(columns / columns.pow(2).mean().sqrt().clamp_min(DENOMINATOR_FLOOR))
    features = torch.cat(parts, dim=1).double()
    distances = torch.cdist(features, features)
    centre_distance = (features - features.mean(dim=0)).norm(dim=1)
    current = int(centre_distance.argmax())  # start at an extreme channel: the chain then runs one way
    order, visited = [current], torch.zeros(space.size, dtype=torch.bool)
    visited[current] = True
    for _ in range(space.size - 1):
        candidates = distances[current].masked_fill(visited, float("inf"))
        current = int(candidates.argmin())
        order.append(current)
        visited[current] = True
    return torch.tensor(order, dtype=torch.long)


def apply_permutation(model: nn.Module, space: ChannelSpace, order: torch.Tensor) -> None:
    """Reorder the space's channels in place: new channel j is old channel order[j]."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name in space.producers:
            module = modules[name]
            module.weight.copy_(module.weight[order])
            if module.bias is not None:
                module.bias.copy_(module.bias[order])
        for name in space.norms:
            module = modules[name]
            for tensor in (module.weight, module.bias, module.running_mean, module.running_var):
                if tensor is not None:
                    tensor.copy_(tensor[order])
        for name in space.consumers:
            module = modules[name]
            module.weight.copy_(module.weight[:, order])


def permute_model(model: nn.Module) -> tuple[nn.Module, list[tuple[ChannelSpace, torch.Tensor]]]:
    """(permuted copy of `model`, [(space, order)]): the copy computes the same function."""
    import copy

    permuted = copy.deepcopy(model)
    modules = dict(permuted.named_modules())
    result = []
    for space in channel_spaces(permuted):
        order = smooth_order(space, modules)
        apply_permutation(permuted, space, order)
        result.append((space, order))
    return permuted, result


def check_same_function(original: nn.Module, permuted: nn.Module, example: torch.Tensor, tolerance: float) -> float:
    """Largest output difference relative to the output scale; raises FittingError above `tolerance`."""
    original.eval(), permuted.eval()
    with torch.no_grad():
        expected, actual = original(example), permuted(example)
    difference = float((expected - actual).abs().max() / expected.abs().max().clamp_min(DENOMINATOR_FLOOR))
    if difference > tolerance:
        raise FittingError(f"permutation changed the model's outputs (relative difference {difference:.2e} > "
                           f"{tolerance:.0e}); set compressor.permutation.enabled=false")
    return difference
