"""torchvision classification models by name (resnet18, mobilenet_v3_small, ...), always built without weights.

Weights come from the run's `model.checkpoint` (a local file), never from a hub download, so a run is the same
offline and online. `num_classes` sets the size of the classifier head; `in_channels` other than 3 (grey images,
say) gives the stem, the model's first convolution, that many input channels, as timm's `in_chans` does.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models

from big2small.errors import ConfigError
from big2small.models.recipe import remember_recipe

AUX_LOGITS_MODELS = ("googlenet", "inception_v3")  # classifiers with auxiliary heads (torchvision's aux_logits)


def torchvision_classifier(name: str = "resnet18", num_classes: int = 1000, in_channels: int = 3,
                           **model_settings) -> nn.Module:
    """`torchvision.models.get_model(name, weights=None, num_classes=...)` with a stem of `in_channels`; extra keys
    go to the builder."""
    known = models.list_models(module=models)
    if name not in known:
        raise ConfigError(f"model: unknown torchvision classification model {name!r}; e.g. {', '.join(known[:8])}, ...")
    if int(in_channels) < 1:
        raise ConfigError(f"model: in_channels must be >= 1 (got {in_channels})")
    if int(num_classes) < 2:
        raise ConfigError(f"model: num_classes must be >= 2 (got {num_classes})")
    if name in AUX_LOGITS_MODELS:  # in training their forward returns a tuple with the side heads' logits
        if model_settings.setdefault("aux_logits", False):
            raise ConfigError(f"model: torchvision {name} with aux_logits returns several outputs in training; the "
                              "tasks train on one (leave aux_logits false)")
    try:
        model = models.get_model(name, weights=None, num_classes=int(num_classes), **model_settings)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"model: cannot build torchvision {name}: {error}") from None
    if int(in_channels) != 3:
        _replace_stem(model, name, int(in_channels))
    return remember_recipe(model, "torchvision", {"name": name, "num_classes": int(num_classes),
                                                  "in_channels": int(in_channels), **model_settings})


def _replace_stem(model: nn.Module, name: str, in_channels: int) -> None:
    """Swap the model's stem, its first convolution (in registration order) that reads the 3 image channels, for one
    of `in_channels` inputs and otherwise the same settings. Its weights start as the model's own initialisation
    drew them, input channel i taking the drawn kernels of channel i mod 3, so the model trains from the scale its
    builder chose."""
    if getattr(model, "transform_input", False):  # GoogLeNet / Inception v3 re-normalise 3 channels before the stem
        raise ConfigError(f"model: torchvision {name} with transform_input takes 3 input channels (data has "
                          f"{in_channels})")
    path, stem = next(((path, m) for path, m in model.named_modules()
                       if isinstance(m, nn.Conv2d) and m.in_channels == 3), (None, None))
    if stem is None or stem.groups != 1:
        raise ConfigError(f"model: torchvision {name} has no stem convolution of 3 input channels to give "
                          f"{in_channels}")
    parent, _, attribute = path.rpartition(".")
    replacement = nn.Conv2d(in_channels, stem.out_channels, stem.kernel_size, stem.stride, stem.padding,
                            stem.dilation, bias=stem.bias is not None, padding_mode=stem.padding_mode)
    with torch.no_grad():
        replacement.weight.copy_(stem.weight[:, torch.arange(in_channels) % 3])
        if stem.bias is not None:
            replacement.bias.copy_(stem.bias)
    setattr(model.get_submodule(parent), attribute, replacement)
