"""LeNet as in the MXNet MNIST tutorial (T2) and the STL-10 two-class CNN (T1).

conv 5x5x20 -> tanh -> max-pool 2/2 -> conv 5x5x50 -> tanh -> max-pool 2/2 -> dense 500 tanh -> dense
classes. 431,080 parameters for 1x28x28 input and 10 classes; 427,072 for the 2-class STL-10 net.

The module pools before the activation (conv -> max-pool -> tanh): tanh and ReLU are non-decreasing, so
max(act(x)) = act(max(x)) and both orders give the same outputs and gradients, but the activation then
runs on a quarter of the elements (docs/performance.md). The weights keep the names they had in the
conv-first order (features.0, features.3), so older checkpoints load.

Differences from the reference: `reference=True` initialises every weight from Uniform(+/-0.01),
the legacy MXNet default; the modern default keeps PyTorch's initialisation. The dense layer's input
width is computed from `input_size` (a side or (H, W)), so other sizes work down to 16x16.
"""

from __future__ import annotations

from torch import nn

from deepvision.models.init import initialize
from deepvision.models.registry import register_model
from deepvision.models.shapes import flat_features


def _act(name: str) -> nn.Module:
    return {"tanh": nn.Tanh, "relu": nn.ReLU}[name]()


class LeNet(nn.Module):
    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: int | tuple[int, int] = 28,
        activation: str = "tanh",
        fc_activation: str = "tanh",
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 20, 5),
            nn.MaxPool2d(2, 2),
            _act(activation),
            nn.Conv2d(20, 50, 5),
            nn.MaxPool2d(2, 2),
            _act(activation),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat_features(self.features, in_channels, input_size), 500),
            _act(fc_activation),
            nn.Linear(500, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model("lenet", input_size=(1, 28, 28), num_classes=10)
def lenet(
    num_classes: int = 10,
    in_channels: int = 1,
    input_size: int | tuple[int, int] = 28,
    activation: str = "tanh",
    fc_activation: str = "tanh",
    init: str | None = None,
    reference: bool = False,
) -> nn.Module:
    """LeNet-5 style CNN of the MXNet MNIST tutorial (tanh, 20/50 filters, dense 500)."""
    if activation not in ("tanh", "relu") or fc_activation not in ("tanh", "relu"):
        raise ValueError("activation and fc_activation must be 'tanh' or 'relu'")
    model = LeNet(num_classes, in_channels, input_size, activation, fc_activation)
    return initialize(model, init or ("uniform" if reference else "default"))
