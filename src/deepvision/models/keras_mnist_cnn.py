"""The Keras MNIST CNN of tutorial T3 ("784-32-64-100-10").

conv 3x3x32 same ReLU -> conv 3x3x64 same ReLU -> max-pool 2 -> dropout 0.25 -> dense 100 ReLU ->
dropout 0.5 -> dense classes. 1,274,326 parameters for 1x28x28 input and 10 classes.

Keras initialises with Glorot-uniform weights and zero biases; `reference=True` does the same, the
modern default keeps PyTorch's initialisation. Keras is channels-last; this module is NCHW, so the
flattened feature order differs (irrelevant unless Keras weights are imported).
"""

from __future__ import annotations

from torch import nn

from deepvision.models.init import initialize
from deepvision.models.registry import register_model
from deepvision.models.shapes import hw


@register_model("keras_mnist_cnn", input_size=(1, 28, 28), num_classes=10)
def keras_mnist_cnn(
    num_classes: int = 10,
    in_channels: int = 1,
    input_size: int | tuple[int, int] = 28,
    init: str | None = None,
    reference: bool = False,
) -> nn.Module:
    """Keras MNIST CNN: conv32, conv64, max-pool, dropout, dense 100, dropout, dense (tutorial T3)."""
    height, width = hw(input_size)
    if min(height, width) < 2:
        raise ValueError(f"input {height}x{width} is too small: the 2x2 max-pool needs at least 2x2 pixels")
    model = nn.Sequential(
        nn.Conv2d(in_channels, 32, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Dropout(0.25),
        nn.Flatten(),
        nn.Linear(64 * (height // 2) * (width // 2), 100),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(100, num_classes),
    )
    return initialize(model, init or ("glorot" if reference else "default"))
