"""Exact parameter counts of every registered model, pinned for both profiles.

Models are built on the meta device: counting needs no memory and no initialisation time, even
for VGG16's 138M parameters.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepvision.models import create_model, list_models


def build(name: str, **options) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **options)


def trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def weights_only(model: nn.Module) -> int:
    """Conv and fully-connected parameters (weights and biases), as the reference's tables count them."""
    return sum(p.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) for p in m.parameters())


def running_stats(model: nn.Module) -> int:
    return sum(b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var")))


# name, options, trainable (modern), trainable (reference); the reference's counts where it gives them
COUNTS = [
    ("alexnet_ref", {}, 62_397_480, 62_387_912),
    ("vgg16_ref", {}, 138_394_792, 138_382_376),
    ("googlenet_ref", {}, 7_013_112, 7_005_832),
    ("resnet_ref", {}, 25_549_486, 25_549_483),
    ("resnet50_ref", {}, 25_549_486, 25_549_483),
    ("resnet_ref", {"stages": (2, 2, 2, 2)}, 15_987_630, 15_987_627),
    ("resnet_ref", {"stages": (3, 4, 23, 3)}, 44_541_614, 44_541_611),
    ("resnet_ref", {"stages": (3, 8, 36, 3)}, 60_185_262, 60_185_259),
    ("resnet50_ref", {"preact": False}, 25_557_038, 25_557_035),  # assumption: He-2015 post-activation
    ("squeezenet_ref", {}, 1_248_424, 1_248_424),
    ("emotion_vgg", {}, 587_110, 587_110),
    ("emotion_vgg", {"num_classes": 7}, 587_175, 587_175),
    # 8 convs 1,171,680 + their BN 1,920 + dense 2,304x256 590,080 + BN 512 + classifier 1,542
    ("emotion_vgg4", {}, 1_765_734, 1_765_734),
    ("mini_xception", {}, 56_951, 56_951),  # Keras: 58,423 with the 1,472 BN moving statistics
    ("age_gender_net", {}, 8_862_664, 8_860_904),  # 8,859,144 conv/FC + BN (1,760 channels)
    ("age_gender_net", {"num_classes": 2}, 8_859_586, 8_857_826),  # 8,856,066 conv/FC + BN
    ("stl10_cnn", {}, 427_072, 427_072),
    ("lenet", {}, 431_080, 431_080),
    ("mlp", {}, 109_386, 109_386),
    ("keras_mnist_cnn", {}, 1_274_326, 1_274_326),
    ("minivgg", {}, 2_169_770, 2_169_770),  # not in the reference: the textbook MiniVGGNet
    # torchvision detectors, 91 COCO classes, from scratch (BatchNorm trainable); SSD and v2 match torchvision's docs,
    # the others exceed the documented COCO-weights counts by their backbone's BatchNorm (frozen when pretrained)
    ("ssd300_vgg16", {}, 35_641_826, 35_641_826),
    ("ssdlite320_mobilenet_v3_large", {}, 3_440_060, 3_440_060),
    ("fasterrcnn_resnet50_fpn_v2", {}, 43_712_278, 43_712_278),
    ("fasterrcnn_resnet50_fpn", {}, 41_808_406, 41_808_406),  # 41,755,286 + ResNet-50's 53,120 BN parameters
    ("fasterrcnn_resnet101_fpn", {}, 60_800_534, 60_800_534),
    ("fasterrcnn_mobilenet_v3_large_fpn", {}, 19_410_754, 19_410_754),
    ("fasterrcnn_mobilenet_v3_large_320_fpn", {}, 19_410_754, 19_410_754),
]


@pytest.mark.parametrize(("name", "options", "modern", "reference"), COUNTS,
                         ids=[f"{c[0]}{'-' + '-'.join(f'{k}={v}' for k, v in c[1].items()) if c[1] else ''}"
                              for c in COUNTS])
def test_trainable_parameter_counts(name, options, modern, reference):
    assert trainable(build(name, **options)) == modern
    assert trainable(build(name, reference=True, **options)) == reference


def test_every_registered_model_has_a_pinned_count():
    assert {c[0] for c in COUNTS} == set(list_models())


@pytest.mark.parametrize(("name", "options", "conv_fc", "bn_channels"), [
    ("alexnet_ref", {}, 62_378_344, 9_568),
    ("vgg16_ref", {}, 138_357_544, 12_416),
    ("googlenet_ref", {}, 6_998_552, 7_280),
    ("age_gender_net", {}, 8_859_144, 1_760),
    ("age_gender_net", {"num_classes": 2}, 8_856_066, 1_760),
    ("squeezenet_ref", {}, 1_248_424, 0),
    ("emotion_vgg", {}, 585_958, 576),
])
def test_conv_and_fc_weights_and_bn_channels(name, options, conv_fc, bn_channels):
    model = build(name, **options)
    assert weights_only(model) == conv_fc
    assert running_stats(model) == 2 * bn_channels


def test_alexnet_per_layer_counts():
    model = build("alexnet_ref")
    f, c = model.features, model.classifier
    assert [weights_only(m) for m in (f.block1.conv1, f.block2.conv2, f.block3.conv3_1, f.block3.conv3_2,
                                      f.block3.conv3_3, c.fc1, c.fc2, c.fc3)] == \
        [34_944, 614_656, 885_120, 1_327_488, 884_992, 37_752_832, 16_781_312, 4_097_000]


def test_vgg16_per_part_counts():
    model = build("vgg16_ref")
    conv = sum(weights_only(b) for b in model.features)
    prelu = sum(p.numel() for m in model.modules() if isinstance(m, nn.PReLU) for p in m.parameters())
    bn_layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert conv == 14_714_688
    assert [weights_only(m) for m in (model.classifier.fc1, model.classifier.fc2, model.classifier.fc3)] == \
        [102_764_544, 16_781_312, 4_097_000]
    assert prelu == 12_416
    assert len(bn_layers) == 15


def test_googlenet_module_counts():
    model = build("googlenet_ref")
    f = model.features
    assert [weights_only(f.stem.conv1), weights_only(f.stem.conv2), weights_only(f.stem.conv3)] == \
        [9_472, 4_160, 110_784]
    expected = {"3a": 163_696, "3b": 388_736, "4a": 376_176, "4b": 449_160, "4c": 510_104, "4d": 605_376,
                "4e": 868_352, "5a": 1_043_456, "5b": 1_444_080}
    assert {k: weights_only(getattr(f, f"inception{k}")) for k in expected} == expected
    assert weights_only(model.classifier.fc) == 1_025_000
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 57
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 57


def test_resnet50_per_stage_counts_and_layers():
    model = build("resnet50_ref", reference=True)
    f = model.features
    assert [trainable(f.stem), trainable(f.stage1), trainable(f.stage2), trainable(f.stage3), trainable(f.stage4)] \
        == [9_539, 214_912, 1_218_048, 7_095_296, 14_958_592]
    assert trainable(model.classifier.bn) == 4_096
    assert weights_only(model.classifier.fc) == 2_049_000
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 53
    assert sum(getattr(m, "shortcut", None) is not None for m in model.modules()) == 4  # projections
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 51
    assert running_stats(model) == 45_574
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))


def test_squeezenet_fire_counts():
    model = build("squeezenet_ref")
    f = model.features
    assert weights_only(f.conv1) == 14_208
    assert [weights_only(getattr(f, f"fire{i}")) for i in range(2, 10)] == \
        [11_920, 12_432, 45_344, 49_440, 104_880, 111_024, 188_992, 197_184]
    assert weights_only(model.classifier.conv10) == 513_000
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 26
    assert not any(isinstance(m, (nn.Linear, nn.BatchNorm2d)) for m in model.modules())


def test_emotion_vgg_keras_total_includes_moving_statistics():
    # Keras' summary counts the BN moving mean/variance too: 588,262 (6 classes), 588,327 (7)
    for classes, keras_total in ((6, 588_262), (7, 588_327)):
        model = build("emotion_vgg", num_classes=classes)
        assert trainable(model) + running_stats(model) == keras_total


def test_frozen_bn_scale_is_one_and_not_trainable():
    model = create_model("age_gender_net", reference=True)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(bns) == 5
    for bn in bns:
        assert not bn.weight.requires_grad and bn.bias.requires_grad
        assert torch.equal(bn.weight, torch.ones_like(bn.weight))
    # an explicit override wins over the profile
    assert trainable(build("age_gender_net", reference=True, bn_scale="learnable")) == 8_862_664
    assert trainable(build("age_gender_net", bn_scale="fixed")) == 8_860_904
