"""Which parameters a compressor replaces: the weights of conv and linear layers."""

from __future__ import annotations

import copy
import hashlib

import torch
from torch import nn

# Transposed convs carry their weight as (C_in, C_out, kh, kw); compressors treat every weight as a plain
# tensor, so the layout only matters to the ones that change architecture (svd, id_prune), which check it.
WEIGHT_LAYER_TYPES: dict[str, tuple[type[nn.Module], ...]] = {
    "conv": (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d),
    "linear": (nn.Linear,),
}


SIGNATURE_HEX_DIGITS = 16  # 64 bits: no two architectures a user meets collide


def compressible_weights(
    model: nn.Module, layer_types: tuple[str, ...] = ("conv", "linear"), min_params: int = 0
) -> dict[str, torch.Tensor]:
    """Ordered {parameter name: weight} of every selected layer with at least `min_params` weights."""
    unknown = set(layer_types) - set(WEIGHT_LAYER_TYPES)
    if unknown:
        raise ValueError(f"unknown layer types {sorted(unknown)}; choose from {sorted(WEIGHT_LAYER_TYPES)}")
    classes = tuple(cls for kind in layer_types for cls in WEIGHT_LAYER_TYPES[kind])
    selected: dict[str, torch.Tensor] = {}
    for module_name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, classes) and isinstance(weight, torch.Tensor) and weight.numel() >= min_params:
            selected[f"{module_name}.weight" if module_name else "weight"] = weight
    return selected


def frozen_copy(model: nn.Module, shared: set[str] | None = None) -> nn.Module:
    """A deep copy of `model` whose parameters named in `shared` (None: all of them) are the model's own tensors,
    not copied and taking no gradient; what the copy may change in place must not be in `shared`."""
    memo = {id(p): nn.Parameter(p.detach(), requires_grad=False)
            for name, p in model.named_parameters() if shared is None or name in shared}
    return copy.deepcopy(model, memo)


def set_parameter(model: nn.Module, name: str, value: torch.Tensor) -> None:
    """Copy `value` into the parameter called `name`, checking the shape."""
    param = model.get_parameter(name)
    if param.shape != value.shape:
        raise ValueError(f"rebuilt {name} has shape {tuple(value.shape)}, the model expects {tuple(param.shape)}")
    with torch.no_grad():
        param.copy_(value.to(dtype=param.dtype, device=param.device))


def architecture_signature(model: nn.Module) -> dict:
    """What identifies a model's architecture: its state_dict entries (names and shapes), counted and hashed.

    Stored in artifacts (a few dozen bytes, counted like every other byte) so that rebuilding one into a model of
    another architecture is refused even when every replaced parameter happens to exist in both.
    """
    digest = hashlib.sha256()
    state = model.state_dict()
    for name, tensor in state.items():
        digest.update(f"{name}:{tuple(tensor.shape)}\n".encode())
    return {"entries": len(state), "sha256": digest.hexdigest()[:SIGNATURE_HEX_DIGITS]}
