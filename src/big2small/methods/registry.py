"""Compressor registry: maps the name stored in an artifact to the class that writes and decodes it."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from torch import nn

from big2small.codec import Compressed
from big2small.methods.base import Compressor

_REGISTRY: dict[str, type[Compressor]] = {}
_IMPORTED = False


def register(cls: type[Compressor]) -> type[Compressor]:
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"two compressors are registered as {cls.name!r}")
    _REGISTRY[cls.name] = cls
    return cls


def compressor_class(name: str) -> type[Compressor]:
    _import_builtin()
    if name not in _REGISTRY:
        raise KeyError(f"unknown compressor {name!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def available() -> list[str]:
    _import_builtin()
    return sorted(_REGISTRY)


def rebuild(compressed: Compressed, model: nn.Module) -> nn.Module:
    """Write the artifact's parameters (or modules) into `model`, decoded by the compressor that wrote it."""
    return compressor_class(compressed.compressor).rebuild(compressed, model)


def _import_builtin() -> None:
    # Importing a module registers the compressor it defines (via @register); every module under methods/ is
    # imported, so adding a compressor is adding one file. Done lazily to keep `import big2small` light, and once:
    # walking the package costs milliseconds, more than decoding a small artifact.
    global _IMPORTED
    if _IMPORTED:
        return
    for module in pkgutil.walk_packages([str(Path(__file__).parent)], prefix="big2small.methods."):
        importlib.import_module(module.name)
    _IMPORTED = True
