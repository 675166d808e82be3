"""Compressor registry: maps the name stored in an artifact to the class that decodes it."""

from __future__ import annotations

from big2small.compressors.base import Compressor

_REGISTRY: dict[str, type[Compressor]] = {}


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


def _import_builtin() -> None:
    # Importing a module registers the compressor it defines (via @register); every module of this package
    # is imported, so adding a compressor is adding one file. Done lazily to keep `import big2small` light.
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
