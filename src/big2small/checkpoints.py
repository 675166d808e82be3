"""Loading a user's weights into a model: safe by default, with errors that say what to fix."""

from __future__ import annotations

import pickle
import re
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from big2small.errors import ConfigError, first_line

ZIP_MAGIC = b"PK\x03\x04"          # torch.save's default (zip) format
PICKLE_PROTOCOL_OPCODE = b"\x80"    # legacy torch.save files are a bare pickle (protocol 2+)
REFUSED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([^\s]+)")  # torch's weights_only refusal
MAX_QUOTED_CHARS = 200


def load_checkpoint(model: nn.Module, path: str | Path, *, trusted_pickle: bool = False) -> nn.Module:
    """Load a state dict from `path` into `model` (strict: every key must match).

    `.safetensors` files are read as such. Anything else goes through `torch.load(weights_only=True)`, which
    refuses pickled code; `trusted_pickle=True` lifts that for files the user vouches for. A checkpoint that
    wraps the state dict (`{"state_dict": ...}`) or was saved from DataParallel (`module.` prefixes) is accepted.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"model.checkpoint: file not found: {path}")
    state = _read_state(path, trusted_pickle)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"model.checkpoint: {path} holds no state dict of tensors")
    state = {key.removeprefix("module."): value for key, value in state.items()}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ConfigError(
            f"model.checkpoint: {path} does not fit the model: missing keys {_preview(missing)}, "
            f"unexpected keys {_preview(unexpected)}"
        )
    for key, tensor in expected.items():  # a float tensor of the model takes float values only, all finite
        if tensor.is_floating_point() and not state[key].is_floating_point():
            raise ConfigError(f"model.checkpoint: {path}: {key} is {state[key].dtype}, the model expects floating "
                              "point weights")
        if tensor.is_floating_point() and not torch.isfinite(state[key]).all():
            raise ConfigError(f"model.checkpoint: {path}: {key} holds NaN or inf values")
    wrong_shape = [k for k in expected if expected[k].shape != state[k].shape]
    if wrong_shape:
        k = wrong_shape[0]
        raise ConfigError(
            f"model.checkpoint: {path}: {len(wrong_shape)} tensors have the wrong shape, e.g. {k}: "
            f"{tuple(state[k].shape)} in the file, {tuple(expected[k].shape)} in the model"
        )
    return load_state(model, state)


def load_state(model: nn.Module, tensors: dict[str, torch.Tensor]) -> nn.Module:
    """`model.load_state_dict(tensors, strict=True)` with the model's own per-module metadata beside the tensors: a
    file of bare tensors (safetensors, an artifact) has none, and some modules' loaders need their state's version
    (torchvision's MNASNet refuses a state without one)."""
    state = OrderedDict(tensors)
    state._metadata = getattr(model.state_dict(), "_metadata", OrderedDict())  # type: ignore[attr-defined]
    model.load_state_dict(state, strict=True)
    return model


def _read_state(path: Path, trusted_pickle: bool):
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as error:
            raise ConfigError(f"model.checkpoint: {path} is not a readable safetensors file: {error}") from None
    with open(path, "rb") as handle:
        start = handle.read(len(ZIP_MAGIC))
    if not (start.startswith(ZIP_MAGIC) or start[:1] == PICKLE_PROTOCOL_OPCODE):
        raise ConfigError(f"model.checkpoint: {path} is neither a PyTorch checkpoint (torch.save) nor a "
                          ".safetensors file")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trusted_pickle)
    except pickle.UnpicklingError as error:
        refused = REFUSED_GLOBAL.search(str(error))
        if refused and not trusted_pickle:
            raise ConfigError(
                f"model.checkpoint: {path} needs code to load: it refers to {_printable(refused.group(1))}, which "
                "was not run; if you trust this file, set model.trusted_pickle=true") from None
        reason = _printable(first_line(error) or type(error).__name__)
        raise ConfigError(f"model.checkpoint: {path} is a corrupt checkpoint: {reason}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise ConfigError(f"model.checkpoint: {path} is not a readable checkpoint: "
                          f"{_printable(first_line(error) or type(error).__name__)}") from None


def _printable(text: str) -> str:
    """Only printable ASCII, so a file's content cannot drive the terminal (escape codes) or break the line."""
    return re.sub(r"[^\x20-\x7e]", "?", text)[:MAX_QUOTED_CHARS]


def _preview(keys: list[str], limit: int = 5) -> str:
    if not keys:
        return "[]"
    shown = ", ".join(keys[:limit])
    return f"[{shown}{', ...' if len(keys) > limit else ''}] ({len(keys)})"
