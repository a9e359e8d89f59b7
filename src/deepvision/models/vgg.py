"""The reference VGG16 variant: every conv followed by PReLU and BN, dropout after pools.

Input 3x224x224. Unit = conv 3x3 pad 1 (with bias) -> PReLU (one slope per channel, 0.25) -> BN.
Blocks of 2, 2, 3, 3, 3 units with 64, 128, 256, 512, 512 filters; each block ends with max-pool
2/2 and dropout 0.25 (224 -> 112 -> 56 -> 28 -> 14 -> 7). Head: flatten (25,088) -> [FC 4096 ->
PReLU -> BN -> dropout 0.5] x 2 -> FC classes.

    features.block1 .. block5   conv{b}_{i}, act{b}_{i}, bn{b}_{i}, pool{b}, drop{b}
    classifier                  fc1, act_fc1, bn_fc1, drop_fc1, fc2, ..., fc3

Conv+FC parameters 138,357,544, PReLU 12,416, BN 12,416 channels. Trainable: 138,394,792 (modern)
or 138,382,376 (reference: BN gamma frozen). Every layer has a unique name (the reference reused
pool3's name for pool4).

Differences between the profiles (`reference=True` / modern default):
- BN: eps 1e-3, gamma frozen at 1 / eps 1e-5, gamma learnable; momentum 0.1 in both.
- Initialisation: MXNet MSRAPrelu (Gaussian, fan average, magnitude 2/(1+0.25^2); conv1_1 std
  0.07901) / Kaiming-normal (fan_in, ReLU gain).
- PReLU is per channel (per unit after FC layers) with slopes 0.25 in both.

Options: `filters` and `units` (convs per block) and `fc_units` build other VGG-style depths and
widths (e.g. narrow variants for tests); `input_size` sets the fc1 width (227 also gives 7x7).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from deepvision.models.init import initialize
from deepvision.models.layers import NormSettings, norm_settings
from deepvision.models.registry import register_model
from deepvision.models.shapes import flat_features


class VGGRef(nn.Module):
    """VGG with PReLU + BN after every conv and FC layer, dropout after every pool."""

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        input_size: int | tuple[int, int] = 224,
        filters: Sequence[int] = (64, 128, 256, 512, 512),
        units: Sequence[int] = (2, 2, 3, 3, 3),
        fc_units: int = 4096,
        norm: NormSettings | None = None,
    ) -> None:
        super().__init__()
        if len(filters) != len(units) or not filters:
            raise ValueError(f"filters {tuple(filters)} and units {tuple(units)} must have the same length")
        norm = norm or NormSettings()
        self.num_classes = num_classes
        blocks: list[tuple[str, nn.Module]] = []
        channels = in_channels
        for b, (width, count) in enumerate(zip(filters, units), start=1):
            layers: list[tuple[str, nn.Module]] = []
            for i in range(1, count + 1):
                layers += [
                    (f"conv{b}_{i}", nn.Conv2d(channels, width, 3, padding=1)),
                    (f"act{b}_{i}", nn.PReLU(width, init=0.25)),
                    (f"bn{b}_{i}", norm.bn2d(width)),
                ]
                channels = width
            layers += [(f"pool{b}", nn.MaxPool2d(2, 2)), (f"drop{b}", nn.Dropout(0.25))]
            blocks.append((f"block{b}", nn.Sequential(OrderedDict(layers))))
        self.features = nn.Sequential(OrderedDict(blocks))
        width = flat_features(self.features, in_channels, input_size)
        self.classifier = nn.Sequential(OrderedDict([
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(width, fc_units)),
            ("act_fc1", nn.PReLU(fc_units, init=0.25)),
            ("bn_fc1", norm.bn1d(fc_units)),
            ("drop_fc1", nn.Dropout(0.5)),
            ("fc2", nn.Linear(fc_units, fc_units)),
            ("act_fc2", nn.PReLU(fc_units, init=0.25)),
            ("bn_fc2", norm.bn1d(fc_units)),
            ("drop_fc2", nn.Dropout(0.5)),
            ("fc3", nn.Linear(fc_units, num_classes)),
        ]))

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model("vgg16_ref", input_size=(3, 224, 224), num_classes=1000)
def vgg16_ref(
    num_classes: int = 1000,
    in_channels: int = 3,
    input_size: int | tuple[int, int] = 224,
    filters: Sequence[int] = (64, 128, 256, 512, 512),
    units: Sequence[int] = (2, 2, 3, 3, 3),
    fc_units: int = 4096,
    bn_eps: float | None = None,
    bn_momentum: float | None = None,
    bn_scale: str | None = None,
    init: str | None = None,
    reference: bool = False,
) -> nn.Module:
    """Reference VGG16: conv-PReLU-BN units, dropout after every pool."""
    norm = norm_settings("mxnet", reference, bn_eps, bn_momentum, bn_scale)
    model = VGGRef(num_classes, in_channels, input_size, tuple(filters), tuple(units), fc_units, norm)
    return initialize(model, init or ("msra" if reference else "kaiming"))
