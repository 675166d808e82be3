"""`none`: the fp32 weights themselves. Ratio 1.0 (less the header); the reference row of every table."""

from __future__ import annotations

import torch
from torch import nn

from big2small.codec import Compressed
from big2small.graph.weights import set_parameter
from big2small.methods.base import Compressor
from big2small.methods.registry import register


@register
class NoCompression(Compressor):
    """The fp32 weights themselves: the reference row (ratio 1.0 less the header)."""
    name = "none"

    def __init__(self, target_ratio=None, layer_types=("conv", "linear"), min_params=0) -> None:
        if target_ratio is not None:
            from big2small.errors import ConfigError

            raise ConfigError("none: stores fp32 weights, so target_ratio must be null")
        super().__init__(None, layer_types, min_params)

    def fit(self, model, *, data=None, trainer_factory=None) -> Compressed:
        weights = self.select(model)
        return Compressed(self.name, self.settings(), dict(weights), {"replaced": list(weights)})

    @classmethod
    def check_artifact(cls, compressed: Compressed, model: nn.Module) -> None:
        if sorted(compressed.tensors) != sorted(compressed.meta["replaced"]):
            raise ValueError("its tensors are not exactly the replaced parameters")
        for name, tensor in compressed.tensors.items():
            wanted = model.get_parameter(name)
            if tensor.dtype != torch.float32 or tensor.shape != wanted.shape:
                raise ValueError(f"tensor {name!r} is {tensor.dtype} {tuple(tensor.shape)}, the model's parameter "
                                 f"is float32 {tuple(wanted.shape)}")

    @classmethod
    def rebuild(cls, compressed: Compressed, model: nn.Module) -> nn.Module:
        for name in compressed.meta["replaced"]:
            set_parameter(model, name, compressed.tensors[name])
        return model
