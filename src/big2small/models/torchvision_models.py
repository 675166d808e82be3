"""torchvision classification models by name (resnet18, mobilenet_v3_small, ...), always built without weights.

Weights come from the run's `model.checkpoint` (a local file), never from a hub download, so a run is the same
offline and online. `num_classes` sets the size of the classifier head.
"""

from __future__ import annotations

from torch import nn
from torchvision import models

from big2small.errors import ConfigError
from big2small.models.recipe import remember_recipe


def torchvision_classifier(name: str = "resnet18", num_classes: int = 1000, in_channels: int = 3,
                           **model_settings) -> nn.Module:
    """`torchvision.models.get_model(name, weights=None, num_classes=...)`; extra keys go to the builder."""
    known = models.list_models(module=models)
    if name not in known:
        raise ConfigError(f"model: unknown torchvision classification model {name!r}; e.g. {', '.join(known[:8])}, ...")
    if int(in_channels) != 3:
        raise ConfigError(f"model: torchvision classifiers take 3 input channels (data has {in_channels})")
    if int(num_classes) < 2:
        raise ConfigError(f"model: num_classes must be >= 2 (got {num_classes})")
    try:
        model = models.get_model(name, weights=None, num_classes=int(num_classes), **model_settings)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"model: cannot build torchvision {name}: {error}") from None
    return remember_recipe(model, "torchvision", {"name": name, "num_classes": int(num_classes),
                                                  "in_channels": int(in_channels), **model_settings})
