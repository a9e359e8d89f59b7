"""MiniVGGNet, the well-known textbook CIFAR-10 network. **Not part of the reference** (its only
small VGG-style network is EmotionVGGNet); it is provided because it is
the usual first VGG-style exercise, built as the textbook's Keras code builds it.

Input 3x32x32, 10 classes. Conv -> ReLU -> BN throughout; convs 3x3 "same".

    features.block1   [conv 32 -> ReLU -> BN] x 2 -> max-pool 2 -> dropout 0.25    32x16x16
    features.block2   [conv 64 -> ReLU -> BN] x 2 -> max-pool 2 -> dropout 0.25    64x8x8
    classifier        flatten (4,096) -> dense 512 -> ReLU -> BN -> dropout 0.5 -> dense classes

Trainable parameters: 2,169,770 for 10 classes in both profiles (Keras would report 2,171,178,
adding the 1,408 BN moving statistics).

`reference=True` applies the Keras defaults the textbook code ran with (Glorot-uniform weights, BN
eps 1e-3 and momentum 0.01); the modern default keeps PyTorch's initialisation and BN settings.
`input_size` sets the dense-layer width.
"""

from __future__ import annotations

from torch import nn

from deepvision.models.emotion_vgg import SmallVGG
from deepvision.models.init import initialize
from deepvision.models.layers import check_choice, norm_settings
from deepvision.models.registry import register_model


@register_model("minivgg", input_size=(3, 32, 32), num_classes=10)
def minivgg(
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int | tuple[int, int] = 32,
    activation: str = "relu",
    bn_eps: float | None = None,
    bn_momentum: float | None = None,
    bn_scale: str | None = None,
    init: str | None = None,
    reference: bool = False,
) -> nn.Module:
    """MiniVGGNet, the textbook CIFAR-10 net (not in the reference): conv-ReLU-BN x4, dense 512."""
    check_choice("activation", activation, ("relu", "elu"))
    norm = norm_settings("keras", reference, bn_eps, bn_momentum, bn_scale)
    model = SmallVGG(num_classes, in_channels, input_size, (32, 64), (512,), 2, activation, 1.0, norm)
    return initialize(model, init or ("glorot" if reference else "default"))
