"""The Adience age/gender network (docs/faces.md): one architecture for both tasks, input 3x227x227.

    features.block1   conv1 96 7x7/4 -> ReLU -> BN -> pool1 max 3/2 -> dropout 0.25    96x27x27
    features.block2   conv2 256 5x5 pad 2 -> ReLU -> BN -> pool2 -> dropout 0.25       256x13x13
    features.block3   conv3 384 3x3 pad 1 -> ReLU -> BN -> pool3 -> dropout 0.25       384x6x6
    classifier        flatten (13,824) -> fc1 512 -> ReLU -> BN -> dropout 0.5, fc2 512 (same), fc3 classes

Conv and FC weights: 8,859,144 for the 8 age bins and 8,856,066 for the 2 genders; BN covers 1,760
channels. Trainable: 8,862,664 / 8,859,586 (modern, BN gamma learnable) or 8,860,904 / 8,857,826
(reference, gamma frozen). Every layer has a unique name (the reference reused block 2's conv name
for block 3).

Differences between the profiles (`reference=True` / modern default):
- BN: eps 1e-3, gamma frozen at 1 / eps 1e-5, gamma learnable; momentum 0.1 in both.
- Initialisation: Xavier (Glorot-uniform) in both, as the reference trained both tasks.

`num_classes` is 8 (age, the default) or 2 (gender); `input_size` sets the fc1 width.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from deepvision.models.init import initialize
from deepvision.models.layers import NormSettings, norm_settings
from deepvision.models.registry import register_model
from deepvision.models.shapes import flat_features


def _block(index: int, conv: nn.Conv2d, norm: NormSettings) -> nn.Sequential:
    return nn.Sequential(OrderedDict([
        (f"conv{index}", conv),
        (f"act{index}", nn.ReLU(inplace=True)),
        (f"bn{index}", norm.bn2d(conv.out_channels)),
        (f"pool{index}", nn.MaxPool2d(3, 2)),
        (f"drop{index}", nn.Dropout(0.25)),
    ]))


class AgeGenderNet(nn.Module):
    def __init__(self, num_classes: int = 8, in_channels: int = 3, input_size: int | tuple[int, int] = 227,
                 norm: NormSettings | None = None, fc_units: int = 512) -> None:
        super().__init__()
        norm = norm or NormSettings()
        self.num_classes = num_classes
        self.features = nn.Sequential(OrderedDict([
            ("block1", _block(1, nn.Conv2d(in_channels, 96, 7, stride=4), norm)),
            ("block2", _block(2, nn.Conv2d(96, 256, 5, padding=2), norm)),
            ("block3", _block(3, nn.Conv2d(256, 384, 3, padding=1), norm)),
        ]))
        width = flat_features(self.features, in_channels, input_size)
        self.classifier = nn.Sequential(OrderedDict([
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(width, fc_units)),
            ("act_fc1", nn.ReLU(inplace=True)),
            ("bn_fc1", norm.bn1d(fc_units)),
            ("drop_fc1", nn.Dropout(0.5)),
            ("fc2", nn.Linear(fc_units, fc_units)),
            ("act_fc2", nn.ReLU(inplace=True)),
            ("bn_fc2", norm.bn1d(fc_units)),
            ("drop_fc2", nn.Dropout(0.5)),
            ("fc3", nn.Linear(fc_units, num_classes)),
        ]))

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model("age_gender_net", input_size=(3, 227, 227), num_classes=8)
def age_gender_net(
    num_classes: int = 8,
    in_channels: int = 3,
    input_size: int | tuple[int, int] = 227,
    fc_units: int = 512,
    bn_eps: float | None = None,
    bn_momentum: float | None = None,
    bn_scale: str | None = None,
    init: str | None = None,
    reference: bool = False,
) -> nn.Module:
    """Adience age (8 classes) / gender (2) CNN: 3 conv-ReLU-BN blocks, 2 FC-512."""
    norm = norm_settings("mxnet", reference, bn_eps, bn_momentum, bn_scale)
    model = AgeGenderNet(num_classes, in_channels, input_size, norm, fc_units)
    return initialize(model, init or "xavier")
