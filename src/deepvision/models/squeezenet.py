"""The reference SqueezeNet variant: fire modules, ELU, fixed 13x13 average pool, input 227.

Fire(s, e): squeeze 1x1 (s) -> act, then expand 1x1 (e) -> act and expand 3x3 (e, pad 1) -> act in
parallel, concatenated 1x1 first (2e channels). All convs have biases; there is no FC layer.

    features    conv1 96 7x7/2 -> act -> pool1 max 3/2                     96x55x55
                fire2 (16, 64), fire3 (16, 64), fire4 (32, 128) -> pool4   256x27x27
                fire5 (32, 128), fire6 (48, 192), fire7 (48, 192), fire8 (64, 256) -> pool8   512x13x13
                fire9 (64, 256) -> drop9 (0.5)                             512x13x13
    classifier  conv10 classes 1x1 -> act10 -> pool10 average 13x13/1 -> flatten

1,248,424 parameters (26 convs) for 1,000 classes in both profiles. The activation follows every
conv including conv10, so with ELU the logits are bounded below by -alpha (as in the reference).
pool10 is a fixed 13x13 window, not a global pool: a 224 input reaches it as a 12x12 map and is
rejected (the minimum input is 227); inputs up to 242 still give 13x13. `global_pool=True` (not in
the reference) pools globally so any input from 35 pixels works, with the same parameters. The
reference prose has typos (fire4 "64", a second fire after pool8, stride "4"); this is the
architecture of its code.

Differences between the profiles (`reference=True` / modern default):
- ELU alpha 0.25 (MXNet) / 1.0 (PyTorch).
- Initialisation: Xavier (Glorot-uniform; conv10 bound 0.06299 for 1,000 classes) in both.

Options: `activation` 'elu' (final model, S4) or 'relu' (S1/S2); `batch_norm=True` adds BN after
every activation except conv10's (the failed Exp. S3; where the reference put its BN layers is not
stated, so this placement is an assumption), with the MXNet BN settings of the profile.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from deepvision.models.init import initialize
from deepvision.models.layers import NormSettings, activation, check_choice, norm_settings, resolve_elu_alpha
from deepvision.models.registry import register_model

FIRES = {2: (16, 64), 3: (16, 64), 4: (32, 128), 5: (32, 128), 6: (48, 192), 7: (48, 192), 8: (64, 256), 9: (64, 256)}


def _conv_act(conv: nn.Conv2d, act: str, alpha: float, norm: NormSettings | None, suffix: str = "") -> list:
    layers = [(f"conv{suffix}", conv), (f"act{suffix}", activation(act, conv.out_channels, alpha))]
    if norm is not None:
        layers.append((f"bn{suffix}", norm.bn2d(conv.out_channels)))
    return layers


class Fire(nn.Module):
    """squeeze 1x1 -> act, then expand 1x1 and expand 3x3 (each -> act) concatenated."""

    def __init__(self, cin: int, squeeze: int, expand: int, act: str, alpha: float, norm: NormSettings | None):
        super().__init__()
        self.squeeze = nn.Sequential(OrderedDict(_conv_act(nn.Conv2d(cin, squeeze, 1), act, alpha, norm)))
        self.expand1x1 = nn.Sequential(OrderedDict(_conv_act(nn.Conv2d(squeeze, expand, 1), act, alpha, norm)))
        self.expand3x3 = nn.Sequential(OrderedDict(
            _conv_act(nn.Conv2d(squeeze, expand, 3, padding=1), act, alpha, norm)))

    def forward(self, x):
        x = self.squeeze(x)
        return torch.cat([self.expand1x1(x), self.expand3x3(x)], 1)


class SqueezeNetRef(nn.Module):
    def __init__(self, num_classes: int = 1000, in_channels: int = 3, activation: str = "elu", elu_alpha: float = 1.0,
                 norm: NormSettings | None = None, global_pool: bool = False) -> None:
        super().__init__()
        self.num_classes = num_classes
        layers = _conv_act(nn.Conv2d(in_channels, 96, 7, stride=2), activation, elu_alpha, norm, suffix="1")
        layers.append(("pool1", nn.MaxPool2d(3, 2)))
        channels = 96
        for index, (squeeze, expand) in FIRES.items():
            layers.append((f"fire{index}", Fire(channels, squeeze, expand, activation, elu_alpha, norm)))
            channels = 2 * expand
            if index in (4, 8):
                layers.append((f"pool{index}", nn.MaxPool2d(3, 2)))
        layers.append(("drop9", nn.Dropout(0.5)))
        self.features = nn.Sequential(OrderedDict(layers))
        self.classifier = nn.Sequential(OrderedDict([
            ("conv10", nn.Conv2d(channels, num_classes, 1)),
            ("act10", nn.ELU(elu_alpha) if activation == "elu" else nn.ReLU(inplace=True)),
            ("pool10", nn.AdaptiveAvgPool2d(1) if global_pool else nn.AvgPool2d(13, 1)),
            ("flatten", nn.Flatten()),
        ]))

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model("squeezenet_ref", input_size=(3, 227, 227), num_classes=1000)
def squeezenet_ref(
    num_classes: int = 1000,
    in_channels: int = 3,
    activation: str = "elu",
    batch_norm: bool = False,
    global_pool: bool = False,
    elu_alpha: float | None = None,
    bn_eps: float | None = None,
    bn_momentum: float | None = None,
    bn_scale: str | None = None,
    init: str | None = None,
    reference: bool = False,
) -> nn.Module:
    """Reference SqueezeNet: fire modules, ELU after every conv, fixed 13x13 average pool."""
    check_choice("activation", activation, ("elu", "relu"))
    norm = norm_settings("mxnet", reference, bn_eps, bn_momentum, bn_scale) if batch_norm else None
    model = SqueezeNetRef(num_classes, in_channels, activation, resolve_elu_alpha("mxnet", reference, elu_alpha),
                          norm, global_pool)
    return initialize(model, init or "xavier")
