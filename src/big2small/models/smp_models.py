"""Segmentation networks from segmentation-models-pytorch: U-Net, FPN and DeepLabV3+ with any smp encoder.

`encoder_weights` is null by default so that building a model never downloads anything; naming pretrained
weights (e.g. "imagenet") is for users online.
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
from torch import nn

from big2small.errors import ConfigError
from big2small.models.recipe import remember_recipe

ARCHITECTURES = {"Unet": smp.Unet, "FPN": smp.FPN, "DeepLabV3Plus": smp.DeepLabV3Plus}


def segmentation_model(
    architecture: str = "Unet",
    encoder_name: str = "tu-resnet18",
    encoder_weights: str | None = None,
    in_channels: int = 3,
    num_classes: int = 1,
    **architecture_settings,
) -> nn.Module:
    """An smp model with `num_classes` output channels (1 for binary masks); extra keys go to its constructor.

    Example extras: `encoder_depth` and `decoder_channels` for Unet (a shallower encoder is much cheaper).
    """
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"model: architecture must be one of {sorted(ARCHITECTURES)} (got {architecture!r})")
    known_encoders = smp.encoders.get_encoder_names()
    if encoder_name not in known_encoders and not encoder_name.startswith("tu-"):
        raise ConfigError(f"model: unknown smp encoder {encoder_name!r}; e.g. resnet18, mobilenet_v2, "
                          "efficientnet-b0 or tu-<timm name>")
    if int(in_channels) < 1 or int(num_classes) < 1:
        raise ConfigError(f"model: need in_channels >= 1 and num_classes >= 1 (got {in_channels}, {num_classes})")
    try:
        model = ARCHITECTURES[architecture](
            encoder_name=encoder_name, encoder_weights=encoder_weights, in_channels=int(in_channels),
            classes=int(num_classes), **architecture_settings,
        )
    except (TypeError, ValueError, KeyError) as error:
        raise ConfigError(f"model: cannot build {architecture} with encoder {encoder_name}: {error}") from None
    # Pretrained encoder weights only matter before training; a rebuild takes every weight from the artifact.
    return remember_recipe(model, "smp", {"architecture": architecture, "encoder_name": encoder_name,
                                          "encoder_weights": None, "in_channels": int(in_channels),
                                          "num_classes": int(num_classes), **architecture_settings})
