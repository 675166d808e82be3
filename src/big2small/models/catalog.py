"""The model builders an artifact may name in its recipe (models/recipe.py), and building a model from one.

Only the builders listed here can be named, so a recipe read from a file never chooses which code runs.
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

# builder name -> (module, callable); imported on use, so naming a small CNN never imports smp or torchvision.
BUILDERS = {
    "cifar_resnet": ("big2small.models.cifar_resnet", "CifarResNet"),
    "small_cnn": ("big2small.models.small_cnn", "SmallCNN"),
    "torchvision": ("big2small.models.torchvision_models", "torchvision_classifier"),
    "smp": ("big2small.models.smp_models", "segmentation_model"),
}


def build_model(recipe: Any) -> nn.Module:
    """A freshly initialised model from a recipe {"builder": name, "arguments": {...}}. ValueError when the recipe
    names no builder of this package or the builder refuses its arguments."""
    if not isinstance(recipe, dict) or recipe.get("builder") not in BUILDERS:
        builder = recipe.get("builder") if isinstance(recipe, dict) else None
        raise ValueError(f"names no model builder of big2small (builder {builder!r}; known: {sorted(BUILDERS)})")
    arguments = recipe.get("arguments", {})
    if not isinstance(arguments, dict) or not all(isinstance(key, str) for key in arguments):
        raise ValueError(f"its {recipe['builder']} recipe's arguments are not a mapping of names to values")
    module, name = BUILDERS[recipe["builder"]]
    try:
        return getattr(importlib.import_module(module), name)(**arguments)
    except (TypeError, ValueError) as error:  # ConfigError is a ValueError
        raise ValueError(f"its {recipe['builder']} recipe does not build: {error}") from None
