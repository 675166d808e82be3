"""Replacing layers inside a model, for compressors that change the architecture (`svd`, `id_prune`).

A layer's constructor arguments are stored as a small JSON spec in the artifact header, so that a rebuild makes
the new modules from the artifact alone.
"""

from __future__ import annotations

from torch import nn

# Layer classes whose weights can be split or narrowed; grouped convs and non-zero padding modes are left alone.
SUPPORTED = (nn.Conv2d, nn.Linear)


def is_supported(module: nn.Module) -> bool:
    if isinstance(module, nn.Conv2d):
        return module.groups == 1 and module.padding_mode == "zeros" and type(module) is nn.Conv2d
    return type(module) is nn.Linear


def module_path(parameter_name: str) -> str:
    """'features.0.weight' -> 'features.0'."""
    return parameter_name.rsplit(".", 1)[0] if "." in parameter_name else ""


def replace_module(model: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, child = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, child, new)


def layer_spec(module: nn.Module) -> dict:
    """Constructor arguments of a Conv2d or Linear (besides channel counts) as JSON-able values."""
    if isinstance(module, nn.Conv2d):
        padding = module.padding if isinstance(module.padding, str) else list(module.padding)
        return {"type": "conv2d", "kernel_size": list(module.kernel_size), "stride": list(module.stride),
                "padding": padding, "dilation": list(module.dilation), "bias": module.bias is not None}
    return {"type": "linear", "bias": module.bias is not None}


def build_layer(spec: dict, in_features: int, out_features: int, *, kernel: bool = True,
                bias: bool | None = None) -> nn.Module:
    """A new layer from `spec` with the given channel counts; kernel=False gives a 1x1 conv (stride 1)."""
    bias = spec["bias"] if bias is None else bias
    if spec["type"] == "linear":
        return nn.Linear(in_features, out_features, bias=bias)
    if not kernel:
        return nn.Conv2d(in_features, out_features, 1, bias=bias)
    padding = spec["padding"] if isinstance(spec["padding"], str) else tuple(spec["padding"])
    return nn.Conv2d(in_features, out_features, tuple(spec["kernel_size"]), stride=tuple(spec["stride"]),
                     padding=padding, dilation=tuple(spec["dilation"]), bias=bias)
