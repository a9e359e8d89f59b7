"""The reference ResNet: pre-activation bottlenecks, configurable stages and filters.

Module(K, stride, reduce): BN -> ReLU ("act1") -> conv 1x1 K/4 -> BN -> ReLU -> conv 3x3 K/4
(stride here) -> BN -> ReLU -> conv 1x1 K; all convs bias-free. The shortcut is the identity, or,
when `reduce`, a strided 1x1 conv with K filters applied to act1 (not to the raw input). No
activation after the add. The first module of every stage reduces (stride 1 in stage 1, 2 after).

    features.stem      bn_data (BN on the input) -> conv0 64 7x7/2 -> bn0 -> relu0 -> pool0 max 3/2
    features.stage1-4  unit1 .. unitN                       256@56, 512@28, 1024@14, 2048@7 (224 input)
    classifier         bn -> relu -> global average pool -> flatten -> fc classes

ResNet50 = stages (3, 4, 6, 3), filters (64, 256, 512, 1024, 2048): 53 convs, 51 BN layers, one FC;
trainable 25,549,486 (modern) or 25,549,483 (reference, the input BN's gamma frozen); 45,574
running-stat values. Other stage settings (reference counts): (2, 2, 2, 2) 15,987,627 (the
reference's "ResNet18", a 26-layer bottleneck net), (3, 4, 23, 3) 44,541,611, (3, 8, 36, 3)
60,185,259; modern counts are 3 higher (3 input channels).

Differences between the profiles (`reference=True` / modern default):
- BN eps 2e-5 and momentum 0.1 (MXNet 0.9) in both; gamma learnable everywhere except the input BN,
  which the reference kept fixed at 1 (MXNet `fix_gamma`).
- Initialisation: MXNet MSRAPrelu (fan average; conv0 std 0.03386) / Kaiming-normal (fan_in).

`preact=False` builds the post-activation bottleneck of He et al. 2015 (conv-BN-ReLU, conv-BN-ReLU,
conv-BN, add, ReLU; projection shortcut conv + BN on the input) used by Experiments R1/R2. Its exact
form is not in the reference sources, so it is an assumption; it keeps the same stem (including the
input BN) and drops the pre-activation head's BN-ReLU. ResNet50 post-activation trainable:
25,557,038 (modern) / 25,557,035 (reference).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace

from torch import nn

from deepvision.models.init import initialize
from deepvision.models.layers import NormSettings, norm_settings
from deepvision.models.registry import register_model


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


MAX_STAGE_BLOCKS = 1_024  # blocks in one stage (ResNet-1001 has 111); each is built in Python, one by one


class PreActBottleneck(nn.Module):
    """BN-ReLU-conv x 3 (1x1, 3x3 strided, 1x1); the projection shortcut starts from act1."""

    def __init__(self, cin: int, cout: int, stride: int, reduce: bool, norm: NormSettings) -> None:
        super().__init__()
        mid = cout // 4
        self.bn1, self.act1, self.conv1 = norm.bn2d(cin), nn.ReLU(inplace=True), conv1x1(cin, mid)
        self.bn2, self.act2, self.conv2 = norm.bn2d(mid), nn.ReLU(inplace=True), conv3x3(mid, mid, stride)
        self.bn3, self.act3, self.conv3 = norm.bn2d(mid), nn.ReLU(inplace=True), conv1x1(mid, cout)
        self.shortcut = conv1x1(cin, cout, stride) if reduce else None

    def forward(self, x):
        act1 = self.act1(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(act1)
        y = self.conv1(act1)
        y = self.conv2(self.act2(self.bn2(y)))
        y = self.conv3(self.act3(self.bn3(y)))
        return y + shortcut


class Bottleneck(nn.Module):
    """Post-activation bottleneck (He et al. 2015): conv-BN-ReLU, conv-BN-ReLU, conv-BN, add, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int, reduce: bool, norm: NormSettings) -> None:
        super().__init__()
        mid = cout // 4
        self.conv1, self.bn1, self.act1 = conv1x1(cin, mid), norm.bn2d(mid), nn.ReLU(inplace=True)
        self.conv2, self.bn2, self.act2 = conv3x3(mid, mid, stride), norm.bn2d(mid), nn.ReLU(inplace=True)
        self.conv3, self.bn3 = conv1x1(mid, cout), norm.bn2d(cout)
        self.shortcut = nn.Sequential(OrderedDict([("conv", conv1x1(cin, cout, stride)), ("bn", norm.bn2d(cout))])) \
            if reduce else None
        self.act3 = nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.act1(self.bn1(self.conv1(x)))
        y = self.act2(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.act3(y + (x if self.shortcut is None else self.shortcut(x)))


class ResNetRef(nn.Module):
    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        stages: Sequence[int] = (3, 4, 6, 3),
        filters: Sequence[int] = (64, 256, 512, 1024, 2048),
        norm: NormSettings | None = None,
        data_norm: NormSettings | None = None,
        preact: bool = True,
    ) -> None:
        super().__init__()
        if len(filters) != len(stages) + 1:
            raise ValueError(f"filters needs one more entry than stages (the stem width first): "
                             f"stages {tuple(stages)}, filters {tuple(filters)}")
        if any(f % 4 for f in filters[1:]) or any(not 1 <= n <= MAX_STAGE_BLOCKS for n in stages):
            raise ValueError(f"stage filters must be multiples of 4 (bottleneck width K/4) and stages from 1 to "
                             f"{MAX_STAGE_BLOCKS:,} blocks")
        norm = norm or NormSettings(eps=2e-5)
        data_norm = data_norm or norm
        self.num_classes = num_classes
        layers: list[tuple[str, nn.Module]] = [("stem", nn.Sequential(OrderedDict([
            ("bn_data", data_norm.bn2d(in_channels)),
            ("conv0", nn.Conv2d(in_channels, filters[0], 7, stride=2, padding=3, bias=False)),
            ("bn0", norm.bn2d(filters[0])),
            ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool2d(3, 2, padding=1)),
        ])))]
        block = PreActBottleneck if preact else Bottleneck
        channels = filters[0]
        for s, (count, width) in enumerate(zip(stages, filters[1:]), start=1):
            units = [(f"unit{u}", block(channels if u == 1 else width, width, (1 if s == 1 else 2) if u == 1 else 1,
                                        u == 1, norm)) for u in range(1, count + 1)]
            layers.append((f"stage{s}", nn.Sequential(OrderedDict(units))))
            channels = width
        self.features = nn.Sequential(OrderedDict(layers))
        head: list[tuple[str, nn.Module]] = [("bn", norm.bn2d(channels)), ("relu", nn.ReLU(inplace=True))] \
            if preact else []
        self.classifier = nn.Sequential(OrderedDict([
            *head,
            ("pool", nn.AdaptiveAvgPool2d(1)),
            ("flatten", nn.Flatten()),
            ("fc", nn.Linear(channels, num_classes)),
        ]))

    def forward(self, x):
        return self.classifier(self.features(x))


def _build(num_classes: int, in_channels: int, stages: Sequence[int], filters: Sequence[int], preact: bool,
           bn_eps: float | None, bn_momentum: float | None, bn_scale: str | None, init: str | None,
           reference: bool) -> nn.Module:
    norm = norm_settings("resnet", reference, bn_eps, bn_momentum, bn_scale)
    data_norm = replace(norm, fixed_scale=True) if reference and bn_scale is None else norm
    model = ResNetRef(num_classes, in_channels, tuple(stages), tuple(filters), norm, data_norm, preact)
    return initialize(model, init or ("msra" if reference else "kaiming"))


@register_model("resnet_ref", input_size=(3, 224, 224), num_classes=1000)
def resnet_ref(
    num_classes: int = 1000,
    in_channels: int = 3,
    stages: Sequence[int] = (3, 4, 6, 3),
    filters: Sequence[int] = (64, 256, 512, 1024, 2048),
    preact: bool = True,
    bn_eps: float | None = None,
    bn_momentum: float | None = None,
    bn_scale: str | None = None,
    init: str | None = None,
    reference: bool = False,
) -> nn.Module:
    """Reference pre-activation bottleneck ResNet, configurable stages and filters."""
    return _build(num_classes, in_channels, stages, filters, preact, bn_eps, bn_momentum, bn_scale, init, reference)


@register_model("resnet50_ref", input_size=(3, 224, 224), num_classes=1000)
def resnet50_ref(
    num_classes: int = 1000,
    in_channels: int = 3,
    preact: bool = True,
    bn_eps: float | None = None,
    bn_momentum: float | None = None,
    bn_scale: str | None = None,
    init: str | None = None,
    reference: bool = False,
) -> nn.Module:
    """Reference ResNet50: pre-activation bottlenecks, stages (3, 4, 6, 3)."""
    return _build(num_classes, in_channels, (3, 4, 6, 3), (64, 256, 512, 1024, 2048), preact,
                  bn_eps, bn_momentum, bn_scale, init, reference)
