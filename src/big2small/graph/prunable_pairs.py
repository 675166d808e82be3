"""Which layers' output channels can be pruned and folded into the next layer, found by tracing the model (fx).

A prunable pair is a producer (Conv2d or Linear) whose output reaches exactly one consumer (Conv2d or Linear)
through a chain of per-channel operations only: at most one BatchNorm directly after the producer, elementwise
activations, pooling, dropout, and a flatten right before a Linear that reads exactly those channels. Every
value on the chain must have a single user, so a residual stream (read by an add and by the next block) is
never a pair: in CIFAR ResNets only the first conv inside each block is pruned.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import fx, nn

from big2small.errors import ConfigError
from big2small.graph.surgery import is_supported
from big2small.graph.tracing import (
    ADAPTIVE_POOL_FUNCTIONS,
    ADAPTIVE_POOL_MODULES,
    FLATTENS,
    PER_CHANNEL_MODULES,
    flattens_from_dim1,
    is_per_channel_call,
    trace_layers,
)


@dataclass(frozen=True)
class PrunablePair:
    producer: str       # module path of the layer whose output channels are pruned
    norm: str | None    # its BatchNorm, sliced along
    consumer: str       # module path of the layer whose input channels absorb the interpolation matrix
    channels: int


def prunable_pairs(model: nn.Module, min_params: int = 0) -> list[PrunablePair]:
    try:
        graph = trace_layers(model)
    except Exception as error:  # fx raises many types for untraceable control flow
        raise ConfigError(f"id_prune: cannot trace the model to find its channel structure: {error}") from None
    modules = dict(model.named_modules())
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not is_supported(modules[node.target]):
            continue
        producer = modules[node.target]
        if producer.weight.numel() < min_params:
            continue
        channels = producer.weight.shape[0]
        pair = _follow_chain(node, modules, channels)
        if pair is not None:
            pairs.append(PrunablePair(node.target, pair[0], pair[1], channels))
    return pairs


def _follow_chain(node: fx.Node, modules: dict[str, nn.Module], channels: int) -> tuple[str | None, str] | None:
    """(norm path, consumer path) if `node`'s output channels reach one consumer through per-channel ops."""
    norm, flattened, first = None, False, True
    while True:
        if len(node.users) != 1:
            return None
        node = next(iter(node.users))
        if node.op == "call_module":
            module = modules[node.target]
            if isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)) and first and module.num_features == channels:
                norm = node.target
            elif isinstance(module, PER_CHANNEL_MODULES + ADAPTIVE_POOL_MODULES) and not flattened:
                pass
            elif isinstance(module, nn.Flatten) and module.start_dim == 1:
                flattened = True
            elif is_supported(module):
                return _consumer(module, node.target, norm, channels, flattened)
            else:
                return None
        elif (is_per_channel_call(node) or node.op == "call_function" and node.target in ADAPTIVE_POOL_FUNCTIONS) \
                and not flattened:
            pass
        elif node.op in ("call_function", "call_method") and node.target in FLATTENS and flattens_from_dim1(node):
            flattened = True
        else:
            return None
        first = False


def _consumer(module: nn.Module, path: str, norm: str | None, channels: int, flattened: bool):
    if isinstance(module, nn.Linear):
        # After a flatten, the linear must read exactly the channels (spatial size 1), not channels x pixels.
        return (norm, path) if module.in_features == channels else None
    if flattened or module.in_channels != channels:
        return None
    return norm, path

