"""The two-class STL-10 CNN of tutorial T1 (docs/stl10.md): LeNet on 1x28x28 grayscale, 2 classes.

Airplane (0) versus cat (1), on STL-10 images resized to 28x28 and converted to grayscale at packing
time. It is LeNet (conv 20 5x5 -> tanh -> pool 2/2 -> conv 50 5x5 -> tanh -> pool -> dense 500 tanh
-> dense 2): 427,072 parameters.

T1 notes that all-tanh (the default) and ReLU convs with a tanh dense layer both work:
`activation: relu` selects the latter. T1 calls the 2x2/2 pooling "overlapping"; it is not
(stride equals size). `reference=True` initialises every weight from Uniform(+/-0.01), the legacy MXNet
FeedForward default; the modern default keeps PyTorch's initialisation.
"""

from __future__ import annotations

from torch import nn

from deepvision.models.lenet import lenet
from deepvision.models.registry import register_model


@register_model("stl10_cnn", input_size=(1, 28, 28), num_classes=2)
def stl10_cnn(
    num_classes: int = 2,
    in_channels: int = 1,
    input_size: int | tuple[int, int] = 28,
    activation: str = "tanh",
    fc_activation: str = "tanh",
    init: str | None = None,
    reference: bool = False,
) -> nn.Module:
    """STL-10 airplane/cat CNN of tutorial T1: LeNet on 28x28 grayscale, 2 classes."""
    return lenet(num_classes, in_channels, input_size, activation, fc_activation, init, reference)
