"""Which layers' output channels can be pruned and folded into the next layer, found by tracing the model (fx).

A prunable pair is a producer (Conv2d or Linear) whose output reaches exactly one consumer (Conv2d or Linear)
through a chain of per-channel operations only: at most one BatchNorm directly after the producer, elementwise
activations, pooling, dropout, and a flatten right before a Linear that reads exactly those channels. Every
value on the chain must have a single user, so a residual stream (read by an add and by the next block) is
never a pair: in CIFAR ResNets only the first conv inside each block is pruned.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.nn import functional as F

from big2small.compressors.module_surgery import is_supported
from big2small.errors import ConfigError

CHANNELWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Tanh, nn.Sigmoid, nn.Hardswish,
                       nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Dropout,
                       nn.Dropout2d, nn.Identity)
CHANNELWISE_FUNCTIONS = {F.relu, torch.relu, F.relu6, F.leaky_relu, F.gelu, F.silu, torch.sigmoid, torch.tanh,
                         F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.dropout}
CHANNELWISE_METHODS = {"relu", "sigmoid", "tanh"}
FLATTEN_FUNCTIONS = {torch.flatten}


@dataclass(frozen=True)
class PrunablePair:
    producer: str       # module path of the layer whose output channels are pruned
    norm: str | None    # its BatchNorm, sliced along
    consumer: str       # module path of the layer whose input channels absorb the interpolation matrix
    channels: int


def prunable_pairs(model: nn.Module, min_params: int = 0) -> list[PrunablePair]:
    try:
        graph = _LayerTracer().trace(model)
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


class _LayerTracer(fx.Tracer):
    """Keeps subclasses of torch layers (e.g. a BatchNorm without its counter) as single graph nodes."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        layer_types = (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm, *CHANNELWISE_MODULES)
        return isinstance(module, layer_types) or super().is_leaf_module(module, qualified_name)


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
            elif isinstance(module, CHANNELWISE_MODULES) and not flattened:
                pass
            elif isinstance(module, nn.Flatten) and module.start_dim == 1:
                flattened = True
            elif is_supported(module):
                return _consumer(module, node.target, norm, channels, flattened)
            else:
                return None
        elif node.op == "call_function" and node.target in CHANNELWISE_FUNCTIONS and not flattened:
            pass
        elif node.op == "call_function" and node.target in FLATTEN_FUNCTIONS and _flattens_from_dim1(node):
            flattened = True
        elif node.op == "call_method" and node.target in CHANNELWISE_METHODS and not flattened:
            pass
        elif node.op == "call_method" and node.target == "flatten" and _flattens_from_dim1(node):
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


def _flattens_from_dim1(node: fx.Node) -> bool:
    start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
    return start == 1
