"""One torch.fx view of a model for the channel analyses (id_prune's prunable pairs, Big2Small's permutation).

The tracer keeps every layer the analyses understand as one graph node, subclasses defined outside torch.nn
included, and the op vocabulary below says which nodes act on each channel separately (so a channel order or a
channel selection passes through them unchanged).
"""

from __future__ import annotations

import torch
from torch import fx, nn
from torch.nn import functional as F

# Per-channel ops: output channel c depends on input channel c only.
PER_CHANNEL_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Tanh, nn.Sigmoid, nn.Hardswish,
                       nn.Identity, nn.Dropout, nn.Dropout2d, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)
PER_CHANNEL_FUNCTIONS = {F.relu, torch.relu, F.relu6, F.leaky_relu, F.gelu, F.silu, torch.sigmoid, torch.tanh,
                         F.max_pool2d, F.avg_pool2d, F.dropout}
PER_CHANNEL_METHODS = {"relu", "sigmoid", "tanh", "contiguous"}
# Adaptive pools are per-channel too; with output size 1 they also leave one value per channel (global pooling).
ADAPTIVE_POOL_MODULES = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
ADAPTIVE_POOL_FUNCTIONS = {F.adaptive_avg_pool2d, F.adaptive_max_pool2d}
FLATTENS = {torch.flatten, "flatten"}

LEAF_LAYERS = (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm, nn.Flatten,
               *PER_CHANNEL_MODULES, *ADAPTIVE_POOL_MODULES)


class _LayerTracer(fx.Tracer):
    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, LEAF_LAYERS) or super().is_leaf_module(module, qualified_name)


def trace_layers(model: nn.Module) -> fx.Graph:
    """The model's graph with its layers as single nodes; raises whatever fx raises on untraceable code."""
    return _LayerTracer().trace(model)


def flattens_from_dim1(node: fx.Node) -> bool:
    """A torch.flatten / Tensor.flatten node that keeps the batch dim (start_dim 1)."""
    start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
    return start == 1


def is_per_channel_call(node: fx.Node) -> bool:
    """A function or method call that treats every channel on its own (modules: test PER_CHANNEL_MODULES)."""
    if node.op == "call_function":
        return node.target in PER_CHANNEL_FUNCTIONS
    return node.op == "call_method" and node.target in PER_CHANNEL_METHODS
