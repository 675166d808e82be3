"""A small CNN for tiny images (8x8 digits by default): conv-BN-ReLU stages, global pooling, linear head."""

from __future__ import annotations

from torch import nn

from big2small.errors import ConfigError
from big2small.models.recipe import remember_recipe


class SmallCNN(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10, channels: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        if not channels or any(int(c) < 1 for c in channels):
            raise ConfigError(f"small_cnn: channels must be a non-empty list of positive ints (got {channels})")
        layers: list[nn.Module] = []
        previous = in_channels
        for stage, width in enumerate(channels):
            layers += [nn.Conv2d(previous, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            if stage == 0:
                layers.append(nn.MaxPool2d(2))  # 8x8 -> 4x4 keeps the later convs cheap
            previous = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(previous, num_classes)
        remember_recipe(self, "small_cnn", {"in_channels": in_channels, "num_classes": num_classes,
                                            "channels": [int(c) for c in channels]})

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))
