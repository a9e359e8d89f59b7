"""The MNIST multi-layer perceptron of the MXNet tutorial (T2): 784-128-64-classes, ReLU.

109,386 parameters for 1x28x28 input and 10 classes. `reference=True` uses Uniform(+/-0.01) weights,
the legacy MXNet default; the modern default keeps PyTorch's initialisation.
"""

from __future__ import annotations

from torch import nn

from deepvision.models.init import initialize
from deepvision.models.registry import register_model
from deepvision.models.shapes import hw


@register_model("mlp", input_size=(1, 28, 28), num_classes=10)
def mlp(
    num_classes: int = 10,
    in_channels: int = 1,
    input_size: int | tuple[int, int] = 28,
    hidden: tuple[int, ...] = (128, 64),
    init: str | None = None,
    reference: bool = False,
) -> nn.Module:
    """Multi-layer perceptron 784-128-64-classes with ReLU (MXNet MNIST tutorial)."""
    layers: list[nn.Module] = [nn.Flatten()]
    height, width = hw(input_size)
    width = in_channels * height * width
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return initialize(nn.Sequential(*layers), init or ("uniform" if reference else "default"))
