"""The CIFAR-10 ResNet family (He et al. 2016, section 4.2): ResNet-20/32/44/56/110, "option A" shortcuts.

Written to match the state-dict layout of the widely used pretrained CIFAR checkpoints exactly: a stem
`conv1`/`bn1`, stages `layer1..3` of BasicBlocks (`conv1, bn1, conv2, bn2`), and a `linear` head. Where a block
changes shape its shortcut has no parameters: it keeps every second pixel and zero-pads the channels.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from big2small.errors import ConfigError
from big2small.models.recipe import remember_recipe

BLOCKS_PER_STAGE = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18}
STAGE_WIDTHS = (16, 32, 64)


class BatchNormWithoutCounter(nn.BatchNorm2d):
    """BatchNorm2d without the `num_batches_tracked` counter.

    The pretrained checkpoints predate that buffer, so a model that has it could never match their keys
    exactly. The counter only matters for `momentum=None` (cumulative averages), which nothing here uses.
    """

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        self.register_buffer("num_batches_tracked", None)

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        # Skip BatchNorm's compatibility shim, which re-inserts the counter into old state dicts and would then
        # report it as unexpected; the plain Module loader checks exactly the keys this module has.
        nn.Module._load_from_state_dict(self, *args, **kwargs)


class DownsampleShortcut(nn.Module):
    """Parameter-free shortcut: stride-2 subsampling, then zero channels on both sides to reach `out_planes`."""

    def __init__(self, in_planes: int, out_planes: int) -> None:
        super().__init__()
        extra = out_planes - in_planes
        if extra < 0 or extra % 2:
            raise ValueError(f"cannot pad {in_planes} channels evenly to {out_planes}")
        self.pad = extra // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = BatchNormWithoutCounter(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = BatchNormWithoutCounter(planes)
        changes_shape = stride != 1 or in_planes != planes
        self.shortcut = DownsampleShortcut(in_planes, planes) if changes_shape else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if depth not in BLOCKS_PER_STAGE:
            raise ConfigError(f"cifar_resnet: depth must be one of {sorted(BLOCKS_PER_STAGE)} (got {depth})")
        if int(num_classes) < 2 or int(in_channels) < 1:
            raise ConfigError(f"cifar_resnet: need num_classes >= 2, in_channels >= 1 (got {num_classes}, {in_channels})")
        blocks = BLOCKS_PER_STAGE[depth]
        self.conv1 = nn.Conv2d(in_channels, STAGE_WIDTHS[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = BatchNormWithoutCounter(STAGE_WIDTHS[0])
        planes = STAGE_WIDTHS[0]
        for stage, width in enumerate(STAGE_WIDTHS, start=1):
            first_stride = 1 if stage == 1 else 2
            layers = []
            for index in range(blocks):
                layers.append(BasicBlock(planes, width, first_stride if index == 0 else 1))
                planes = width
            setattr(self, f"layer{stage}", nn.Sequential(*layers))
        self.linear = nn.Linear(STAGE_WIDTHS[-1], num_classes)
        self._initialise()
        remember_recipe(self, "cifar_resnet", {"depth": depth, "num_classes": int(num_classes),
                                               "in_channels": int(in_channels)})

    def _initialise(self) -> None:
        # He initialisation for convs and the head, as in the paper; only matters when training from scratch.
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)
