"""Loading a user's weights into a model: safe by default, with errors that say what to fix."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from big2small.errors import ConfigError


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
    wrong_shape = [k for k in expected if expected[k].shape != state[k].shape]
    if wrong_shape:
        k = wrong_shape[0]
        raise ConfigError(
            f"model.checkpoint: {path}: {len(wrong_shape)} tensors have the wrong shape, e.g. {k}: "
            f"{tuple(state[k].shape)} in the file, {tuple(expected[k].shape)} in the model"
        )
    model.load_state_dict(state, strict=True)
    return model


def _read_state(path: Path, trusted_pickle: bool):
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as error:
            raise ConfigError(f"model.checkpoint: {path} is not a readable safetensors file: {error}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=not trusted_pickle)
    except pickle.UnpicklingError as error:
        if trusted_pickle:
            raise ConfigError(f"model.checkpoint: {path} is corrupt: {error}") from None
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else "unsupported object"
        raise ConfigError(
            f"model.checkpoint: {path} needs full unpickling ({first_line}); if you trust this file, "
            "set model.trusted_pickle=true"
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise ConfigError(f"model.checkpoint: {path} is not a readable checkpoint: {error}") from None


def _preview(keys: list[str], limit: int = 5) -> str:
    if not keys:
        return "[]"
    shown = ", ".join(keys[:limit])
    return f"[{shown}{', ...' if len(keys) > limit else ''}] ({len(keys)})"
