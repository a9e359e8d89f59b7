"""EmotionVGGNet, the Keras facial-expression network (docs/faces.md), and the small-VGG module it shares.

Input 1x48x48 (FER2013 faces). Conv -> activation -> BN throughout; all convs 3x3 "same".

    features.block1   [conv 32 -> ELU -> BN] x 2 -> max-pool 2 -> dropout 0.25     32x24x24
    features.block2   [conv 64 -> ELU -> BN] x 2 -> max-pool 2 -> dropout 0.25     64x12x12
    features.block3   [conv 128 -> ELU -> BN] x 2 -> max-pool 2 -> dropout 0.25    128x6x6
    classifier        flatten (4,608) -> [dense 64 -> ELU -> BN -> dropout 0.5] x 2 -> dense classes

PyTorch trainable parameters: 587,110 for 6 classes (the default; disgust merged into angry) and
587,175 for 7, in both profiles. Keras reports 588,262 / 588,327 because it also counts the 1,152
BN moving statistics, which PyTorch keeps as buffers.

Differences between the profiles (`reference=True` / modern default):
- BN: eps 1e-3 and momentum 0.01 (Keras' 0.99) / PyTorch's 1e-5 and 0.1; gamma learnable in both.
- Initialisation: Keras he_normal (truncated normal, std sqrt(2/fan_in)) / Kaiming-normal.
- ELU alpha 1.0 in both (Keras' default). Keras is channels-last; this module is NCHW, so the
  flattened feature order differs from Keras (only matters when importing Keras weights).

Options: `activation` 'elu' (final model, E4) or 'relu' with `init: glorot` for the E1-E3
ablations; `input_size` sets the dense-layer width.

`emotion_vgg4` is the same module with a fourth block and one wider dense layer (32/64/128/256 filters,
ReLU, dense 256; 1.77M parameters for 6 classes): the network of the fast FER2013 recipe
(docs/faces.md), about 1.4x EmotionVGGNet's multiply-adds.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from deepvision.models.init import initialize
from deepvision.models.layers import NormSettings, activation, check_choice, norm_settings, resolve_elu_alpha
from deepvision.models.registry import register_model
from deepvision.models.shapes import flat_features


class SmallVGG(nn.Module):
    """Keras-style small VGG: blocks of [conv 3x3 same -> act -> BN] x convs -> max-pool 2 -> dropout,
    then [dense -> act -> BN -> dropout] per hidden width and a dense classifier."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        input_size: int | tuple[int, int],
        filters: Sequence[int],
        fc_units: Sequence[int],
        convs_per_block: int = 2,
        activation_name: str = "elu",
        elu_alpha: float = 1.0,
        norm: NormSettings | None = None,
        conv_dropout: float = 0.25,
        fc_dropout: float = 0.5,
    ) -> None:
        super().__init__()
        norm = norm or NormSettings()
        self.num_classes = num_classes
        blocks: list[tuple[str, nn.Module]] = []
        channels = in_channels
        for b, width in enumerate(filters, start=1):
            layers: list[tuple[str, nn.Module]] = []
            for i in range(1, convs_per_block + 1):
                layers += [(f"conv{b}_{i}", nn.Conv2d(channels, width, 3, padding=1)),
                           (f"act{b}_{i}", activation(activation_name, width, elu_alpha)),
                           (f"bn{b}_{i}", norm.bn2d(width))]
                channels = width
            layers += [(f"pool{b}", nn.MaxPool2d(2, 2)), (f"drop{b}", nn.Dropout(conv_dropout))]
            blocks.append((f"block{b}", nn.Sequential(OrderedDict(layers))))
        self.features = nn.Sequential(OrderedDict(blocks))
        width = flat_features(self.features, in_channels, input_size)
        head: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
        for f, units in enumerate(fc_units, start=1):
            head += [(f"fc{f}", nn.Linear(width, units)), (f"act_fc{f}", activation(activation_name, units, elu_alpha)),
                     (f"bn_fc{f}", norm.bn1d(units)), (f"drop_fc{f}", nn.Dropout(fc_dropout))]
            width = units
        head.append((f"fc{len(fc_units) + 1}", nn.Linear(width, num_classes)))
        self.classifier = nn.Sequential(OrderedDict(head))

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model("emotion_vgg", input_size=(1, 48, 48), num_classes=6)
def emotion_vgg(
    num_classes: int = 6,
    in_channels: int = 1,
    input_size: int | tuple[int, int] = 48,
    activation: str = "elu",
    elu_alpha: float | None = None,
    bn_eps: float | None = None,
    bn_momentum: float | None = None,
    bn_scale: str | None = None,
    init: str | None = None,
    reference: bool = False,
) -> nn.Module:
    """EmotionVGGNet (Keras, FER2013): conv-ELU-BN x6 (32/64/128), 2 dense-64."""
    check_choice("activation", activation, ("elu", "relu"))
    norm = norm_settings("keras", reference, bn_eps, bn_momentum, bn_scale)
    model = SmallVGG(num_classes, in_channels, input_size, (32, 64, 128), (64, 64), 2, activation,
                     resolve_elu_alpha("keras", reference, elu_alpha), norm)
    return initialize(model, init or ("he_normal" if reference else "kaiming"))


@register_model("emotion_vgg4", input_size=(1, 48, 48), num_classes=6)
def emotion_vgg4(
    num_classes: int = 6,
    in_channels: int = 1,
    input_size: int | tuple[int, int] = 48,
    filters: Sequence[int] = (32, 64, 128, 256),
    fc_units: Sequence[int] = (256,),
    activation: str = "relu",
    conv_dropout: float = 0.1,
    fc_dropout: float = 0.5,
    init: str | None = None,
) -> nn.Module:
    """Four-block small VGG for 48x48 faces (conv-ReLU-BN x8, 32..256, dense 256): the fast FER2013 net."""
    check_choice("activation", activation, ("elu", "relu"))
    if not (0 <= conv_dropout < 1 and 0 <= fc_dropout < 1):
        raise ValueError(f"dropout rates must be in [0, 1), got conv {conv_dropout}, fc {fc_dropout}")
    model = SmallVGG(num_classes, in_channels, input_size, tuple(filters), tuple(fc_units), 2, activation,
                     1.0, norm_settings("keras", False), conv_dropout, fc_dropout)
    return initialize(model, init or "kaiming")
