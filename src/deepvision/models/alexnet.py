"""The reference AlexNet variant: BN after ELU, dropout after every pool, no LRN.

Input 3x227x227. Five conv layers in three blocks, each block ending in max-pool 3/2 and dropout
0.25, then two FC-4096 layers (activation, BN, dropout 0.5) and the classifier.

    features.block1  conv1 96 11x11/4 -> act -> bn -> pool 3/2 -> dropout      96x27x27
    features.block2  conv2 256 5x5 pad 2 -> act -> bn -> pool -> dropout       256x13x13
    features.block3  conv3_1 384, conv3_2 384, conv3_3 256 (3x3 pad 1, each act -> bn)
                     -> pool -> dropout                                        256x6x6
    classifier       fc1 4096 -> act_fc1 -> bn_fc1 -> drop_fc1 (0.5), fc2 4096 (same), fc3 classes

Conv and FC parameters: 62,378,344; BN covers 9,568 channels. Trainable: 62,397,480 (modern, BN
gamma learnable) or 62,387,912 (reference, gamma frozen at 1). The reference's table names the last
pool 13x13x256; it is 6x6x256.

Differences between the profiles (`reference=True` / modern default):
- BN: eps 1e-3 and gamma frozen at 1 (MXNet `fix_gamma`) / eps 1e-5, gamma learnable; momentum 0.1.
- ELU alpha 0.25 (MXNet's default) / 1.0 (PyTorch's).
- Initialisation: Xavier (MXNet magnitude 3, fan average = Glorot-uniform) in both, as the
  reference trained it; `init` overrides it.

Options: `activation` ('elu', the final model, or 'relu'), `bn_position` ('after' the activation,
the final model, or 'before' it, Exp. A1), `fc_units` (4096) to build narrower variants, and
`input_size`: the fc1 width is computed from it (a 224 input gives 256x5x5 features instead of
256x6x6, so fc1 has 6,400 inputs).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from deepvision.models.init import initialize
from deepvision.models.layers import NormSettings, activation, check_choice, norm_settings, resolve_elu_alpha
from deepvision.models.registry import register_model
from deepvision.models.shapes import flat_features


def _unit(tag: str, conv: nn.Module, channels: int, act: str, alpha: float, norm: NormSettings,
          bn_position: str, one_d: bool = False) -> list[tuple[str, nn.Module]]:
    bn = norm.bn1d(channels) if one_d else norm.bn2d(channels)
    act_layer = activation(act, channels, alpha)
    layer, tag = (f"fc{tag}", f"_fc{tag}") if one_d else (f"conv{tag}", tag)
    if bn_position == "before":
        return [(layer, conv), (f"bn{tag}", bn), (f"act{tag}", act_layer)]
    return [(layer, conv), (f"act{tag}", act_layer), (f"bn{tag}", bn)]


class AlexNetRef(nn.Module):
    """AlexNet with BN and dropout, as the reference built it (no LRN, no grouped convolutions)."""

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        input_size: int | tuple[int, int] = 227,
        activation: str = "elu",
        elu_alpha: float = 1.0,
        norm: NormSettings | None = None,
        bn_position: str = "after",
        fc_units: int = 4096,
    ) -> None:
        super().__init__()
        norm = norm or NormSettings()
        self.num_classes = num_classes
        a, alpha, pos = activation, elu_alpha, bn_position
        self.features = nn.Sequential(OrderedDict([
            ("block1", nn.Sequential(OrderedDict([
                *_unit("1", nn.Conv2d(in_channels, 96, 11, stride=4), 96, a, alpha, norm, pos),
                ("pool1", nn.MaxPool2d(3, 2)),
                ("drop1", nn.Dropout(0.25)),
            ]))),
            ("block2", nn.Sequential(OrderedDict([
                *_unit("2", nn.Conv2d(96, 256, 5, padding=2), 256, a, alpha, norm, pos),
                ("pool2", nn.MaxPool2d(3, 2)),
                ("drop2", nn.Dropout(0.25)),
            ]))),
            ("block3", nn.Sequential(OrderedDict([
                *_unit("3_1", nn.Conv2d(256, 384, 3, padding=1), 384, a, alpha, norm, pos),
                *_unit("3_2", nn.Conv2d(384, 384, 3, padding=1), 384, a, alpha, norm, pos),
                *_unit("3_3", nn.Conv2d(384, 256, 3, padding=1), 256, a, alpha, norm, pos),
                ("pool3", nn.MaxPool2d(3, 2)),
                ("drop3", nn.Dropout(0.25)),
            ]))),
        ]))
        width = flat_features(self.features, in_channels, input_size)
        self.classifier = nn.Sequential(OrderedDict([
            ("flatten", nn.Flatten()),
            *_unit("1", nn.Linear(width, fc_units), fc_units, a, alpha, norm, pos, one_d=True),
            ("drop_fc1", nn.Dropout(0.5)),
            *_unit("2", nn.Linear(fc_units, fc_units), fc_units, a, alpha, norm, pos, one_d=True),
            ("drop_fc2", nn.Dropout(0.5)),
            ("fc3", nn.Linear(fc_units, num_classes)),
        ]))

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model("alexnet_ref", input_size=(3, 227, 227), num_classes=1000)
def alexnet_ref(
    num_classes: int = 1000,
    in_channels: int = 3,
    input_size: int | tuple[int, int] = 227,
    activation: str = "elu",
    bn_position: str = "after",
    fc_units: int = 4096,
    elu_alpha: float | None = None,
    bn_eps: float | None = None,
    bn_momentum: float | None = None,
    bn_scale: str | None = None,
    init: str | None = None,
    reference: bool = False,
) -> nn.Module:
    """Reference AlexNet: ELU then BN, dropout after every pool, no LRN."""
    check_choice("activation", activation, ("elu", "relu"))
    check_choice("bn_position", bn_position, ("after", "before"))
    norm = norm_settings("mxnet", reference, bn_eps, bn_momentum, bn_scale)
    model = AlexNetRef(num_classes, in_channels, input_size, activation,
                       resolve_elu_alpha("mxnet", reference, elu_alpha), norm, bn_position, fc_units)
    return initialize(model, init or "xavier")
