"""Output and per-stage shapes of every architecture, hidden-default options, channels_last, compile.

Per-stage shapes are traced on the meta device at each model's full input size (exact shapes, no
arithmetic). Every model also runs one real forward pass at its full input size with batch 1;
AlexNet and VGG16 do it with narrower FC layers (`fc_units`) only to skip initialising 54M / 120M
fully-connected weights, which would dominate the test time - their conv stacks are unchanged.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deepvision.errors import UserError
from deepvision.models import create_model, get_model_spec
from deepvision.models.shapes import meta_forward


def stage_shapes(model: nn.Module, input_shape) -> dict[str, tuple[int, ...]]:
    out, calls = meta_forward(model, input_shape)
    shapes = {c.name: c.output_shape[1:] for c in calls if c.output_shape is not None}
    shapes["output"] = out[1:]
    return shapes


STAGES = {
    "alexnet_ref": {"features.block1.conv1": (96, 55, 55), "features.block1": (96, 27, 27),
                    "features.block2.conv2": (256, 27, 27), "features.block2": (256, 13, 13),
                    "features.block3.conv3_3": (256, 13, 13), "features.block3": (256, 6, 6),
                    "classifier.flatten": (9216,), "classifier.fc1": (4096,), "output": (1000,)},
    "vgg16_ref": {"features.block1": (64, 112, 112), "features.block2": (128, 56, 56),
                  "features.block3": (256, 28, 28), "features.block4": (512, 14, 14), "features.block5": (512, 7, 7),
                  "classifier.flatten": (25088,), "output": (1000,)},
    "googlenet_ref": {"features.stem.conv1": (64, 112, 112), "features.stem.pool1": (64, 56, 56),
                      "features.stem": (192, 28, 28), "features.inception3a": (256, 28, 28),
                      "features.inception3b": (480, 28, 28), "features.pool3": (480, 14, 14),
                      "features.inception4a": (512, 14, 14), "features.inception4d": (528, 14, 14),
                      "features.inception4e": (832, 14, 14), "features.pool4": (832, 7, 7),
                      "features.inception5a": (832, 7, 7), "features.inception5b": (1024, 7, 7),
                      "classifier.pool5": (1024, 1, 1), "output": (1000,)},
    "resnet50_ref": {"features.stem": (64, 56, 56), "features.stage1": (256, 56, 56),
                     "features.stage2": (512, 28, 28), "features.stage3": (1024, 14, 14),
                     "features.stage4": (2048, 7, 7), "classifier.pool": (2048, 1, 1), "output": (1000,)},
    "squeezenet_ref": {"features.conv1": (96, 111, 111), "features.pool1": (96, 55, 55),
                       "features.fire2": (128, 55, 55), "features.fire4": (256, 55, 55),
                       "features.pool4": (256, 27, 27), "features.fire6": (384, 27, 27),
                       "features.fire8": (512, 27, 27), "features.pool8": (512, 13, 13),
                       "features.fire9": (512, 13, 13), "classifier.conv10": (1000, 13, 13), "output": (1000,)},
    "emotion_vgg": {"features.block1": (32, 24, 24), "features.block2": (64, 12, 12),
                    "features.block3": (128, 6, 6), "classifier.flatten": (4608,), "output": (6,)},
    "mini_xception": {"stem": (8, 60, 60), "blocks.block1": (16, 30, 30), "blocks.block2": (32, 15, 15),
                      "blocks.block3": (64, 8, 8), "blocks.block4": (128, 4, 4), "head": (7, 4, 4), "output": (7,)},
    "age_gender_net": {"features.block1.conv1": (96, 56, 56), "features.block1": (96, 27, 27),
                       "features.block2": (256, 13, 13), "features.block3": (384, 6, 6),
                       "classifier.flatten": (13824,), "output": (8,)},
    "minivgg": {"features.block1": (32, 16, 16), "features.block2": (64, 8, 8), "classifier.flatten": (4096,),
                "output": (10,)},
    "lenet": {"features.0": (20, 24, 24), "features.2": (20, 12, 12), "features.3": (50, 8, 8),
              "features.5": (50, 4, 4), "classifier.1": (500,), "output": (10,)},
    "stl10_cnn": {"features.5": (50, 4, 4), "output": (2,)},
    "mlp": {"0": (784,), "1": (128,), "3": (64,), "output": (10,)},
    "keras_mnist_cnn": {"1": (32, 28, 28), "3": (64, 28, 28), "4": (64, 14, 14), "6": (12544,), "output": (10,)},
}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_per_stage_shapes_at_full_size(name):
    spec = get_model_spec(name)
    with torch.device("meta"):
        model = create_model(name)
    shapes = stage_shapes(model, spec.input_size)
    assert {k: shapes[k] for k in STAGES[name]} == STAGES[name]


def test_resnet_stage_shapes_at_227():
    with torch.device("meta"):
        model = create_model("resnet50_ref")
    shapes = stage_shapes(model, (3, 227, 227))
    assert [shapes[f"features.stage{i}"][1] for i in range(1, 5)] == [57, 29, 15, 8]
    assert shapes["output"] == (1000,)


# narrower FC layers for the two models whose FC weights dominate build time (conv stacks unchanged)
REAL_OPTIONS = {"alexnet_ref": {"fc_units": 512}, "vgg16_ref": {"fc_units": 256}}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_real_forward_at_full_size(name):
    torch.manual_seed(0)
    spec = get_model_spec(name)
    model = create_model(name, **REAL_OPTIONS.get(name, {})).eval()
    with torch.no_grad():
        y = model(torch.randn(1, *spec.input_size))
    assert y.shape == (1, spec.num_classes)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", ["alexnet_ref", "vgg16_ref", "age_gender_net", "emotion_vgg", "minivgg"])
def test_unique_layer_names(name):
    # the reference's VGG pool4 had pool3's name and the age net reused a conv name; here every layer
    # of the plain (non-modular) networks has a globally unique short name
    with torch.device("meta"):
        modules = dict(create_model(name).named_modules())
    leaves = [n.rsplit(".", 1)[-1] for n, m in modules.items() if n and not list(m.children())]
    assert len(leaves) == len(set(leaves))
    if name == "vgg16_ref":
        assert {"features.block3.pool3", "features.block4.pool4", "features.block5.pool5"} <= set(modules)
    if name == "age_gender_net":
        assert isinstance(modules["features.block2.conv2"], nn.Conv2d)
        assert isinstance(modules["features.block3.conv3"], nn.Conv2d)


def test_alexnet_input_size_sets_fc_width_and_rejects_tiny_inputs():
    with torch.device("meta"):
        model = create_model("alexnet_ref", input_size=224)
    assert model.classifier.fc1.in_features == 256 * 5 * 5
    with pytest.raises(UserError, match=r"alexnet_ref: input 40x40 is too small: features\.block3\.pool3 "
                                        r"\(3x3/2 max pool\) gets a 1x1 map; the minimum input is 67x67"):
        create_model("alexnet_ref", input_size=40)


@pytest.mark.parametrize("size", [(2, 28), (1, 29), (28, 3), (1, 1)])
def test_the_minimum_input_named_is_the_same_whichever_side_is_short(size):
    """A 2x28 input named 29x29 as lenet's minimum (the square of the long side plus one), 1x29 30x30."""
    with pytest.raises(UserError, match=r"the minimum input is 16x16$"):
        create_model("lenet", input_size=size)
    with torch.device("meta"):
        create_model("lenet", input_size=16)


def test_non_square_input_size():
    with torch.device("meta"):
        model = create_model("emotion_vgg", input_size=(48, 96))
    assert model.classifier.fc1.in_features == 128 * 6 * 12
    assert meta_forward(model, (1, 48, 96))[0] == (1, 6)


# -- hidden framework defaults (models/layers.py) ---------------------------------------------------
def bn_settings(model: nn.Module) -> set[tuple[float, float, bool]]:
    return {(m.eps, m.momentum, m.weight.requires_grad) for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)}


@pytest.mark.parametrize(("name", "modern", "reference"), [
    ("alexnet_ref", {(1e-5, 0.1, True)}, {(1e-3, 0.1, False)}),
    ("vgg16_ref", {(1e-5, 0.1, True)}, {(1e-3, 0.1, False)}),
    ("googlenet_ref", {(1e-5, 0.1, True)}, {(1e-3, 0.1, False)}),
    ("age_gender_net", {(1e-5, 0.1, True)}, {(1e-3, 0.1, False)}),
    ("resnet50_ref", {(2e-5, 0.1, True)}, {(2e-5, 0.1, True), (2e-5, 0.1, False)}),
    ("emotion_vgg", {(1e-5, 0.1, True)}, {(1e-3, 0.01, True)}),
    ("minivgg", {(1e-5, 0.1, True)}, {(1e-3, 0.01, True)}),
])
def test_bn_defaults_per_profile(name, modern, reference):
    with torch.device("meta"):
        assert bn_settings(create_model(name)) == modern
        assert bn_settings(create_model(name, reference=True)) == reference
        assert bn_settings(create_model(name, bn_eps=1e-4, bn_momentum=0.05, bn_scale="learnable")) == \
            {(1e-4, 0.05, True)}


def test_resnet_reference_freezes_only_the_input_bn():
    with torch.device("meta"):
        model = create_model("resnet50_ref", reference=True)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen == ["features.stem.bn_data.weight"]


@pytest.mark.parametrize(("name", "modern", "reference"), [
    ("alexnet_ref", 1.0, 0.25), ("squeezenet_ref", 1.0, 0.25), ("emotion_vgg", 1.0, 1.0)])
def test_elu_alpha_per_profile(name, modern, reference):
    with torch.device("meta"):
        for options, alpha in (({}, modern), ({"reference": True}, reference), ({"elu_alpha": 0.5}, 0.5)):
            alphas = {m.alpha for m in create_model(name, **options).modules() if isinstance(m, nn.ELU)}
            assert alphas == {alpha}


def test_vgg_prelu_per_channel_at_025():
    with torch.device("meta"):
        model = create_model("vgg16_ref")
    assert model.features.block1.act1_1.num_parameters == 64
    assert model.classifier.act_fc1.num_parameters == 4096
    small = create_model("vgg16_ref", input_size=32, filters=(4, 4, 4, 4, 4), fc_units=8)
    assert torch.all(small.features.block1.act1_1.weight == 0.25)


def test_reference_initialisation_uses_mxnet_fan_average():
    torch.manual_seed(0)
    vgg = create_model("vgg16_ref", reference=True, input_size=32, fc_units=16)
    assert vgg.features.block1.conv1_1.weight.std().item() == pytest.approx(0.07901, rel=0.05)
    assert vgg.features.block5.conv5_3.weight.std().item() == pytest.approx(0.02021, rel=0.01)
    assert vgg.features.block1.conv1_1.bias.abs().sum() == 0
    modern = create_model("vgg16_ref", input_size=32, fc_units=16)  # Kaiming fan_in: sqrt(2/27)
    assert modern.features.block1.conv1_1.weight.std().item() == pytest.approx(math.sqrt(2 / 27), rel=0.05)
    resnet = create_model("resnet50_ref", reference=True)
    assert resnet.features.stem.conv0.weight.std().item() == pytest.approx(0.03386, rel=0.02)
    assert resnet.classifier.fc.weight.std().item() == pytest.approx(0.03514, rel=0.01)
    squeeze = create_model("squeezenet_ref", reference=True)
    assert squeeze.classifier.conv10.weight.abs().max().item() == pytest.approx(0.06299, rel=0.01)
    google = create_model("googlenet_ref")
    assert google.classifier.fc.weight.abs().max().item() == pytest.approx(0.05445, rel=0.01)


def test_emotion_reference_uses_truncated_he_normal():
    torch.manual_seed(0)
    w = create_model("emotion_vgg", reference=True).features.block3.conv3_2.weight
    std = math.sqrt(2 / (128 * 9))
    assert w.abs().max().item() <= 2 * std / 0.87962566103423978 + 1e-6
    assert w.std().item() == pytest.approx(std, rel=0.03)


# -- architecture options ---------------------------------------------------------------------------
def test_alexnet_bn_before_activation_and_relu():
    model = create_model("alexnet_ref", activation="relu", bn_position="before", input_size=67, fc_units=8)
    assert list(model.features.block1._modules) == ["conv1", "bn1", "act1", "pool1", "drop1"]
    assert isinstance(model.features.block1.act1, nn.ReLU)
    default = create_model("alexnet_ref", input_size=67, fc_units=8)
    assert list(default.features.block1._modules) == ["conv1", "act1", "bn1", "pool1", "drop1"]


def test_squeezenet_options():
    with torch.device("meta"):
        relu_bn = create_model("squeezenet_ref", activation="relu", batch_norm=True)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in relu_bn.modules()) == 25  # every conv but conv10
    assert not any(isinstance(m, nn.ELU) for m in relu_bn.modules())
    with torch.device("meta"):
        pooled = create_model("squeezenet_ref", global_pool=True)
    assert meta_forward(pooled, (3, 64, 64))[0] == (1, 1000)


def test_resnet_post_activation_variant():
    with torch.device("meta"):
        model = create_model("resnet_ref", preact=False)
    assert meta_forward(model, (3, 224, 224))[0] == (1, 1000)
    assert "bn" not in model.classifier._modules
    assert isinstance(model.features.stage1.unit1.shortcut.bn, nn.BatchNorm2d)


@pytest.mark.parametrize(("name", "options", "message"), [
    ("resnet_ref", {"stages": (3, 4), "filters": (64, 256)}, "filters needs one more entry"),
    ("alexnet_ref", {"activation": "tanh"}, "activation must be one of elu, relu"),
    ("vgg16_ref", {"bn_scale": "frozen"}, "bn_scale must be one of learnable, fixed"),
    ("emotion_vgg", {"init": "nope"}, "unknown init scheme"),
    ("googlenet_ref", {"dropout": 0.2}, "has no option 'dropout'"),
])
def test_bad_options_are_user_errors(name, options, message):
    with pytest.raises(UserError, match=message), torch.device("meta"):
        create_model(name, **options)


# -- channels_last and torch.compile ----------------------------------------------------------------
SMALL = {  # (options, input) small enough for a quick real forward pass
    "alexnet_ref": ({"input_size": 67, "fc_units": 16}, (3, 67, 67)),
    "vgg16_ref": ({"input_size": 32, "filters": (8, 8, 8, 8, 8), "fc_units": 16}, (3, 32, 32)),
    "googlenet_ref": ({"global_pool": True}, (3, 32, 32)),
    "resnet_ref": ({"stages": (1, 1, 1, 1), "filters": (8, 16, 16, 32, 32)}, (3, 32, 32)),
    "resnet50_ref": ({}, (3, 32, 32)),
    "squeezenet_ref": ({"global_pool": True}, (3, 40, 40)),
    "emotion_vgg": ({}, (1, 48, 48)),
    "mini_xception": ({}, (1, 64, 64)),
    "age_gender_net": ({"input_size": 64, "fc_units": 16}, (3, 64, 64)),
    "minivgg": ({}, (3, 32, 32)),
    "lenet": ({}, (1, 28, 28)),
    "stl10_cnn": ({}, (1, 28, 28)),
    "mlp": ({}, (1, 28, 28)),
    "keras_mnist_cnn": ({}, (1, 28, 28)),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_channels_last_matches_contiguous(name):
    torch.manual_seed(0)
    options, shape = SMALL[name]
    model = create_model(name, **options).eval()
    x = torch.randn(2, *shape)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        got = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=2e-3)  # different conv kernels, float32


def test_torch_compile_small_model():
    # one small model only: compilation is slow on CPU. aot_eager traces the whole graph (fullgraph:
    # no graph breaks in our forward) through autograd without needing a C++ toolchain.
    torch.manual_seed(0)
    model = create_model("stl10_cnn", activation="relu")
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    x = torch.randn(4, 1, 28, 28)
    out = compiled(x)
    torch.testing.assert_close(out, model(x))
    out.sum().backward()
    assert model.features[0].weight.grad is not None


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_lenet_pools_before_its_activation_with_the_conv_first_orders_outputs_and_gradients(activation):
    torch.manual_seed(0)
    model = create_model("lenet", activation=activation, fc_activation=activation).double()
    f = model.features
    assert [type(m).__name__ for m in f] == ["Conv2d", "MaxPool2d", type(f[2]).__name__, "Conv2d", "MaxPool2d",
                                             type(f[5]).__name__]
    conv_first = torch.nn.Sequential(f[0], f[2], f[1], f[3], f[5], f[4])
    x = torch.randn(4, 1, 28, 28, dtype=torch.float64)
    grads = []
    for features in (f, conv_first):
        model.zero_grad()
        out = model.classifier(features(x))
        out.square().sum().backward()
        grads.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    assert torch.equal(grads[0][0], grads[1][0])
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_planned_activations_are_held_to_the_read_ceiling(monkeypatch):
    """A globally pooled network takes any input size with the same weights: at 16384x16384 its
    layers' outputs for one image sum to 111 GB (in-place ReLUs write into their input and are not
    counted), refused on the meta device naming the largest."""
    import torchvision

    from deepvision.models.shapes import check_planned_activations

    monkeypatch.setenv("DEEPVISION_MAX_READ_GB", "24")

    with torch.device("meta"):
        model = torchvision.models.resnet18()
    check_planned_activations(model, (3, 224, 224), "preprocess.json")  # 27 MB: passes
    with pytest.raises(UserError, match=r"^preprocess.json: at input 3x16384x16384 the model's layers output "
                                        r"110.6 GB per image \(the largest, conv1, \(64, 8192, 8192\)\), "
                                        r"above the 24.0 GB"):
        check_planned_activations(model, (3, 16384, 16384), "preprocess.json")


def test_a_training_batch_is_planned_before_it_is_read(monkeypatch):
    """One batch of images and, on this machine's memory, the layers' outputs the backward pass keeps:
    a file-backed source at data.image_size 8192 asks for terabytes, refused naming the batch size."""
    import torchvision

    from deepvision.models.shapes import check_batch_memory

    monkeypatch.setenv("DEEPVISION_MAX_READ_GB", "24")
    model = torchvision.models.resnet18()
    check_batch_memory(model, (3, 224, 224), 64, activations=True)  # 64 x 21 MB: passes
    with pytest.raises(UserError, match=r"^a training batch of 64 images at 3x8192x8192 needs 1.8 TB \(the images "
                                        r"51.5 GB, the layers' outputs 1.8 TB; the largest, conv1, \(64, 4096, 4096\) "
                                        r"per image\), above the 24.0 GB .*lower data.batch_size"):
        check_batch_memory(model, (3, 8192, 8192), 64, activations=True)
    # on a GPU only the batch itself is read into this machine's memory
    check_batch_memory(model, (3, 8192, 8192), 8, activations=False)  # 6.4 GB
    with pytest.raises(UserError, match=r"^a training batch of 64 images at 3x8192x8192 needs 51.5 GB \(the images "
                                        r"51.5 GB\), above"):
        check_batch_memory(model, (3, 8192, 8192), 64, activations=False)
    # a validation batch keeps no graph, but a huge one still holds its images and its largest layer
    check_batch_memory(model, (3, 224, 224), 64, activations=True, eval_batch=4096)  # 4096 x 3.8 MB: 15.6 GB
    with pytest.raises(UserError, match=r"^a validation batch of 65,536 images at 3x224x224 needs 249.9 GB \(the "
                                        r"images 39.5 GB, the largest layer's output 210.5 GB; the largest, conv1, "
                                        r"\(64, 112, 112\) per image\), above .*lower data.eval_batch_size"):
        check_batch_memory(model, (3, 224, 224), 64, activations=True, eval_batch=65536)
