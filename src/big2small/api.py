"""The Python API: compress a trained model, save the artifact, load it back into a model. No Hydra involved.

    import big2small
    compressed = big2small.compress(model, "quant", target_ratio=8)
    size = big2small.save(compressed, "model.safetensors")          # bytes written
    rebuilt = big2small.load("model.safetensors")                    # models built by big2small.models
    rebuilt = big2small.load("model.safetensors", build_model())     # or any instance of the same architecture

Settings are the compressor class's constructor arguments, the keys of a run's `compressor` config (nested groups as dicts, e.g. big2small's
`fit={"steps": 500}`). `target_ratio` wins over a compressor's own size knob; pass `target_ratio=None` to use
the knob instead (e.g. `compress(model, "quant", target_ratio=None, bits=4)`).
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
from torch import nn

from big2small.codec import Compressed, read_artifact, write_artifact
from big2small.errors import ConfigError
from big2small.methods.registry import available, compressor_class
from big2small.rebuilding import model_from_artifact, rebuild_model, store_rest


def compress(model: nn.Module, compressor: str = "big2small", target_ratio: float | None = 8.0, data: Any = None,
             *, trainer: dict | None = None, **settings) -> Compressed:
    """Compress `model` (left unchanged). `data` is a data module with `calibration_images(n)`, for the
    compressors that use data (id_prune); the data-free ones never look at it. Loops that Lightning runs
    (Big2Small's fitting and refinement) run on the CPU unless `trainer` settings are given as a dict of
    Lightning Trainer arguments."""
    if compressor not in available():
        raise ConfigError(f"unknown compressor {compressor!r}; choose one of {available()}")
    method = compressor_class(compressor)(target_ratio=target_ratio, **settings)
    if method.uses_data and data is None:
        raise ConfigError(f"{compressor}: uses data; pass data= (a data module with calibration_images(n))")
    compressed = method.compress(model, data=data if method.uses_data else None,
                                 trainer_factory=_trainer_factory(trainer or {}))
    return store_rest(compressed, model)


def save(compressed: Compressed, path: str | os.PathLike, *, store_uncompressed: bool = True,
         key: str | bytes | None = None) -> int:
    """Write the artifact; return its size on disk in bytes. With store_uncompressed (the default) it also holds
    the model state the compressor left alone and, for a model from big2small.models, how to build its
    architecture, so `load` needs nothing else (otherwise only the architecture). With a key it is signed
    (HMAC-SHA256), so that whoever loads it with the same key knows it was not forged."""
    if not store_uncompressed:
        compressed = compressed.without_rest()
    return write_artifact(compressed, path, key=_key_bytes(key))


def load(path: str | os.PathLike, model: nn.Module | None = None, *, key: str | bytes | None = None) -> nn.Module:
    """A rebuilt copy of `model` (which is left untouched) from the artifact at `path`: checksum, format and
    architecture checked first, and the signature when a key is given (ArtifactError when any does not hold).
    Without `model`, the artifact builds its own architecture when it names one of big2small.models (CIFAR
    ResNets, torchvision, smp, the small CNN) and stores the rest of the model; otherwise an ArtifactError says to
    pass the model. Reading never executes code from the file."""
    compressed = read_artifact(path, key=_key_bytes(key))
    if model is None:
        model = model_from_artifact(compressed, source=str(path), pass_model="the model: big2small.load(path, model)")
    return rebuild_model(compressed, model, source=str(path))


def _key_bytes(key: str | bytes | None) -> bytes | None:
    return key.encode() if isinstance(key, str) else key


def _trainer_factory(settings: dict):
    defaults = {"accelerator": "cpu", "devices": 1, "logger": False, "enable_progress_bar": False,
                "enable_model_summary": False, "enable_checkpointing": False, "deterministic": True}

    def make(**overrides) -> L.Trainer:
        return L.Trainer(**{**defaults, **settings, **overrides})

    return make
