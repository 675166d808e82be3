"""A model from an artifact: checked against the architecture it was made for, rebuilt, and checked again.

Used by the pipeline (after every run), `src/evaluate.py` and the Python API, so all three refuse the same files.
An artifact that stores the rest of the model and its architecture's recipe builds its model itself.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from big2small.checkpoints import load_state
from big2small.codec import UNCOMPRESSED_PREFIX, Compressed, first_nonfinite
from big2small.errors import ArtifactError, first_line
from big2small.graph.weights import architecture_signature
from big2small.methods.base import Compressor, require_at_least
from big2small.methods.registry import compressor_class, rebuild
from big2small.models.catalog import build_model
from big2small.models.recipe import recipe_of
from big2small.numerics import DENOMINATOR_FLOOR


def uncompressed_state(model: nn.Module, replaced: list[str]) -> dict[str, torch.Tensor]:
    """Every state_dict entry of `model` that the compressor did not replace, as CPU copies in their own dtype."""
    skipped = set(replaced)
    return {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items() if name not in skipped}


def store_rest(compressed: Compressed, model: nn.Module) -> Compressed:
    """Put the rest of `model` into `compressed`: every state entry its compressor left alone and, when a builder
    of big2small.models made the model, the recipe that builds its architecture again."""
    compressed.uncompressed = uncompressed_state(model, compressed.meta["replaced"])
    compressed.architecture = recipe_of(model)
    return compressed


def model_from_artifact(compressed: Compressed, *, source: str = "artifact", pass_model: str = "the model") -> nn.Module:
    """A fresh instance of the architecture the artifact names, to rebuild into; ArtifactError naming what to pass
    (`pass_model`) when the artifact does not name one that big2small can build, or lacks the rest of the model."""
    if not compressed.uncompressed or compressed.architecture is None:
        missing = "the rest of the model" if not compressed.uncompressed else "which architecture it is for"
        raise ArtifactError(f"{source}: does not store {missing} (written by an older version, with "
                            f"store_uncompressed off, or for a model built elsewhere); pass {pass_model}")
    try:
        return build_model(compressed.architecture)
    except ValueError as error:
        raise ArtifactError(f"{source}: {first_line(error)}; pass {pass_model}") from None


def rebuild_model(compressed: Compressed, model: nn.Module, *, source: str = "artifact") -> nn.Module:
    """A copy of `model` (left untouched) whose replaced parameters come from the artifact alone, as do all its
    other state entries when the artifact stores them. Raises ArtifactError for an artifact that does not fit.

    Every floating value is checked before decoding (NaN, inf, or out of the method's range: ArtifactError naming
    the tensor). The replaced parameters are then overwritten with NaN, so a rebuild that misses one cannot
    silently keep the original weights: the finiteness check at the end names it.
    """
    replaced = compressed.meta.get("replaced")
    if not isinstance(replaced, list) or not all(isinstance(name, str) for name in replaced) or \
            len(set(replaced)) != len(replaced):
        raise ArtifactError(f"{source}: the header lists no replaced parameters (or one twice)")
    try:
        compressor_class(compressed.compressor)
    except KeyError:
        raise ArtifactError(f"{source}: written by an unknown compressor {compressed.compressor!r}") from None
    _check_architecture(compressed, model, replaced, source)
    method = compressor_class(compressed.compressor)
    try:
        method.check_artifact(compressed, model)
        _check_values(compressed, method)
    except Exception as error:  # noqa: BLE001 - whatever a forged header trips over is the file's fault
        raise ArtifactError(f"{source}: not a valid {compressed.compressor} artifact for this model: "
                            f"{_reason(error)}") from None
    model = copy.deepcopy(model)  # only now: the checks read the model, and refusing costs no copy
    if compressed.uncompressed:
        load_state(model, {**model.state_dict(), **compressed.uncompressed})
    with torch.no_grad():
        for name in replaced:
            model.get_parameter(name).fill_(math.nan)
    try:
        model = rebuild(compressed, model)
    except Exception as error:  # noqa: BLE001 - the checks above passed, so what remains is the file's content
        raise ArtifactError(f"{source}: does not decode into this model: {_reason(error)}") from None
    for name, param in model.named_parameters():
        if not torch.isfinite(param).all():  # finite values the checks let through, decoded into overflow
            raise ArtifactError(f"{source}: decodes into NaN or inf values in parameter {name}")
    return model.eval()


def _check_values(compressed: Compressed, method: type[Compressor]) -> None:
    """Values as well as sizes, before anything is decoded: every floating tensor of the artifact, stored state
    included, is finite; stored BatchNorm variances are not negative; and the method's own ranges hold."""
    stored = {UNCOMPRESSED_PREFIX + name: tensor for name, tensor in compressed.uncompressed.items()}
    bad = first_nonfinite({**compressed.tensors, **stored})
    if bad is not None:
        raise ValueError(f"tensor {bad!r} holds NaN or inf values")
    for name in stored:
        if name.rsplit(".", 1)[-1] == "running_var":  # every torch norm layer's name for it; sqrt'ed in forward
            require_at_least(stored[name], name, 0.0)
    method.check_values(compressed.tensors)


def _reason(error: Exception) -> str:
    return f"{type(error).__name__}: {first_line(error)}"[:300]


def _check_architecture(compressed: Compressed, model: nn.Module, replaced: list[str], source: str) -> None:
    try:
        _check_same_architecture(compressed, model, replaced, source)
    except ArtifactError as error:
        raise ArtifactError(f"{error}{_made_for(compressed.architecture)}") from None


def _made_for(recipe: dict | None) -> str:
    """Which model the artifact names, for the message that refuses another one."""
    if not isinstance(recipe, dict) or not isinstance(recipe.get("arguments"), dict):
        return ""
    arguments = ", ".join(f"{key}={value}" for key, value in recipe["arguments"].items())
    return f"; it is for {recipe.get('builder')}({arguments})"[:300]


def _check_same_architecture(compressed: Compressed, model: nn.Module, replaced: list[str], source: str) -> None:
    state = model.state_dict()
    parameters = dict(model.named_parameters())
    for name in replaced:
        if name not in parameters:
            raise ArtifactError(f"{source}: made for another architecture: it replaces {name}, which this model "
                                "does not have")
    for name, tensor in compressed.uncompressed.items():
        if name not in state or state[name].shape != tensor.shape:
            here = f"has shape {tuple(state[name].shape)} here" if name in state else "is not in this model"
            raise ArtifactError(f"{source}: made for another architecture: {name} has shape "
                                f"{tuple(tensor.shape)} in the artifact and {here}")
        if tensor.dtype != state[name].dtype:  # stored in the model's own dtype; loading would convert silently
            raise ArtifactError(f"{source}: made for another architecture: {name} is {tensor.dtype} in the "
                                f"artifact and {state[name].dtype} here")
    if compressed.uncompressed:
        missing = [name for name in state if name not in compressed.uncompressed and name not in set(replaced)]
        if missing:
            raise ArtifactError(f"{source}: made for another architecture: this model's {missing[0]} is in neither "
                                "the artifact's replaced nor its stored parameters")
    stored, mine = compressed.config.get("model"), architecture_signature(model)
    if stored is not None and stored != mine:
        theirs = (f"{stored.get('entries')} state entries (signature {stored.get('sha256')})"
                  if isinstance(stored, dict) else f"the signature {stored!r}"[:80])
        raise ArtifactError(f"{source}: made for another architecture: its model had {theirs}, this one has "
                            f"{mine['entries']} (signature {mine['sha256']})")


def layer_table(base_model: nn.Module, rebuilt_model: nn.Module, replaced: list[str],
                extra: dict[str, dict] | None = None) -> list[dict[str, Any]]:
    """Per replaced parameter: size and relative reconstruction error ||W' - W|| / ||W|| (where shapes match)."""
    rebuilt_params = dict(rebuilt_model.named_parameters())
    rows = []
    for name in replaced:
        original = base_model.get_parameter(name).detach().float()
        row: dict[str, Any] = {"layer": name, "shape": list(original.shape), "params": original.numel()}
        rebuilt = rebuilt_params.get(name)
        if rebuilt is not None and rebuilt.shape == original.shape:
            error = torch.linalg.vector_norm(rebuilt.detach().float() - original)
            row["relative_error"] = float(error / torch.linalg.vector_norm(original).clamp_min(DENOMINATOR_FLOOR))
        row.update((extra or {}).get(name, {}))
        rows.append(row)
    return rows
