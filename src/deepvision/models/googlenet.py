"""The reference GoogLeNet variant: inception modules without auxiliary heads or LRN.

Input 3x224x224. `conv_module` = conv (with bias) -> BN -> ReLU. An inception module has four
branches concatenated in this order: 1x1; 1x1 reduce -> 3x3; 1x1 reduce -> 5x5; max 3x3/1 -> 1x1
projection.

    features.stem         conv1 64 7x7/2 -> pool1 max 3/2 pad 1 -> conv2 64 1x1 -> conv3 192 3x3
                          -> pool2 max 3/2 pad 1                                 192x28x28
    features.inception3a, 3b, pool3 (-> 14), 4a .. 4e, pool4 (-> 7), 5a, 5b      1024x7x7
    classifier            pool5 average 7x7/1 -> dropout 0.4 -> flatten -> fc classes

57 convs, 57 BN layers (7,280 channels) and one FC: 6,998,552 conv/FC parameters. Trainable:
7,013,112 (modern) or 7,005,832 (reference: BN gamma frozen).

The 7x7 average pool is fixed, as in the reference, so the network takes inputs from 193 to 224
pixels (those whose last map is exactly 7x7): a 227 input leaves a 2x2 map (4,096 features) and is
rejected by the input-size check. `global_pool=True` (not in the reference) pools globally instead,
so any input size works; the parameter count does not change.

Differences between the profiles (`reference=True` / modern default):
- BN: eps 1e-3, gamma frozen at 1 / eps 1e-5, gamma learnable; momentum 0.1 in both.
- Initialisation: Xavier (Glorot-uniform; fc bound 0.05445 for 1,000 classes) in both.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from deepvision.models.init import initialize
from deepvision.models.layers import NormSettings, norm_settings
from deepvision.models.registry import register_model

# (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection) per module
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


class ConvModule(nn.Sequential):
    """conv (with bias) -> BN -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, norm: NormSettings, stride: int = 1, padding: int = 0):
        super().__init__(OrderedDict([
            ("conv", nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding)),
            ("bn", norm.bn2d(cout)),
            ("relu", nn.ReLU(inplace=True)),
        ]))


class Inception(nn.Module):
    """Four parallel branches (1x1, 3x3, 5x5, pool) concatenated along channels."""

    def __init__(self, cin: int, n1: int, r3: int, n3: int, r5: int, n5: int, proj: int, norm: NormSettings):
        super().__init__()
        self.branch1x1 = ConvModule(cin, n1, 1, norm)
        self.branch3x3 = nn.Sequential(OrderedDict([
            ("reduce", ConvModule(cin, r3, 1, norm)), ("conv", ConvModule(r3, n3, 3, norm, padding=1))]))
        self.branch5x5 = nn.Sequential(OrderedDict([
            ("reduce", ConvModule(cin, r5, 1, norm)), ("conv", ConvModule(r5, n5, 5, norm, padding=2))]))
        self.branch_pool = nn.Sequential(OrderedDict([
            ("pool", nn.MaxPool2d(3, 1, padding=1)), ("proj", ConvModule(cin, proj, 1, norm))]))
        self.out_channels = n1 + n3 + n5 + proj

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch3x3(x), self.branch5x5(x), self.branch_pool(x)], 1)


class GoogLeNetRef(nn.Module):
    def __init__(self, num_classes: int = 1000, in_channels: int = 3, norm: NormSettings | None = None,
                 global_pool: bool = False) -> None:
        super().__init__()
        norm = norm or NormSettings()
        self.num_classes = num_classes
        layers: list[tuple[str, nn.Module]] = [("stem", nn.Sequential(OrderedDict([
            ("conv1", ConvModule(in_channels, 64, 7, norm, stride=2, padding=3)),
            ("pool1", nn.MaxPool2d(3, 2, padding=1)),
            ("conv2", ConvModule(64, 64, 1, norm)),
            ("conv3", ConvModule(64, 192, 3, norm, padding=1)),
            ("pool2", nn.MaxPool2d(3, 2, padding=1)),
        ])))]
        channels = 192
        for name, cfg in INCEPTION.items():
            module = Inception(channels, *cfg, norm)
            layers.append((f"inception{name}", module))
            channels = module.out_channels
            if name in ("3b", "4e"):
                layers.append((f"pool{name[0]}", nn.MaxPool2d(3, 2, padding=1)))
        self.features = nn.Sequential(OrderedDict(layers))
        self.classifier = nn.Sequential(OrderedDict([
            ("pool5", nn.AdaptiveAvgPool2d(1) if global_pool else nn.AvgPool2d(7, 1)),
            ("drop", nn.Dropout(0.4)),
            ("flatten", nn.Flatten()),
            ("fc", nn.Linear(channels, num_classes)),
        ]))

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model("googlenet_ref", input_size=(3, 224, 224), num_classes=1000)
def googlenet_ref(
    num_classes: int = 1000,
    in_channels: int = 3,
    global_pool: bool = False,
    bn_eps: float | None = None,
    bn_momentum: float | None = None,
    bn_scale: str | None = None,
    init: str | None = None,
    reference: bool = False,
) -> nn.Module:
    """Reference GoogLeNet: conv-BN-ReLU inception modules, no auxiliary heads."""
    norm = norm_settings("mxnet", reference, bn_eps, bn_momentum, bn_scale)
    return initialize(GoogLeNetRef(num_classes, in_channels, norm, global_pool), init or "xavier")
