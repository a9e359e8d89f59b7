"""Every torchvision classification model by name (`tv:NAME`), adapted to classes and channels.

All 80 models are built on the meta device (no memory, no initialisation) and traced there, so the
whole family is covered in seconds. Downloading published weights is exercised with a fake
`torch.hub.load_state_dict_from_url` (no internet in CI); the real download path is the same code.
"""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision
from torch import nn

from deepvision.errors import UserError
from deepvision.models import create_model, get_model_spec
from deepvision.models.pretrained import torchvision_tag
from deepvision.models.shapes import meta_forward, meta_init
from deepvision.models.torchvision_models import (
    adapt_first_conv,
    replace_head,
    resolve_weights,
    torchvision_names,
)

NAMES = torchvision_names()


def meta(name: str, **options) -> nn.Module:
    with meta_init():
        return create_model(name, **options)


def test_names_are_torchvisions_classification_models():
    assert set(NAMES) == set(torchvision.models.list_models(module=torchvision.models))
    assert {"resnet50", "efficientnet_b0", "vit_b_16", "inception_v3", "convnext_tiny"} <= set(NAMES)
    assert "fasterrcnn_resnet50_fpn" not in NAMES


@pytest.mark.parametrize("name", NAMES)
def test_builds_with_adapted_classes_and_channels(name):
    spec = get_model_spec(f"tv:{name}")
    model = meta(f"tv:{name}", num_classes=10, in_channels=1)
    out, _ = meta_forward(model, (1, *spec.input_size[1:]))
    assert out == (1, 10)
    reference = meta(f"tv:{name}", **({"aux_logits": True} if name == "inception_v3" else {}))  # as published
    entry = torchvision.models.get_model_weights(name).DEFAULT
    if not name.startswith("vit_h"):  # vit_h_14's published weights are the 518-pixel SWAG ones
        assert sum(p.numel() for p in reference.parameters()) == entry.meta["num_params"]


@pytest.mark.parametrize(("name", "size", "resize", "interpolation"), [
    ("resnet50", 224, 232, "bilinear"), ("inception_v3", 299, 342, "bilinear"),
    ("efficientnet_b3", 300, 320, "bicubic"), ("vit_b_16", 224, 256, "bilinear"), ("vit_h_14", 224, 224, "bicubic"),
    ("swin_v2_t", 256, 260, "bicubic"),
])
def test_input_size_and_preprocessing_from_weights_metadata(name, size, resize, interpolation):
    spec = get_model_spec(f"tv:{name}")
    assert spec.input_size == (3, size, size)
    assert spec.num_classes == 1000
    pre = spec.preprocess
    assert (pre["size"], pre["resize"], pre["interpolation"]) == ([size, size], resize, interpolation)
    assert pre["mean"] == pytest.approx([0.485, 0.456, 0.406]) and pre["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert pre["scale"] == pytest.approx(1 / 255)


def test_real_training_step_on_grayscale_with_ten_classes():
    torch.manual_seed(0)
    model = create_model("tv:resnet18", num_classes=10, in_channels=1)
    assert model.conv1.in_channels == 1 and model.fc.out_features == 10
    x, y = torch.randn(4, 1, 64, 64), torch.tensor([0, 1, 2, 3])
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert model.conv1.weight.grad is not None


def test_aux_heads_default_off_so_training_gets_one_tensor():
    model = create_model("tv:googlenet", num_classes=5).train()
    out = model(torch.randn(2, 3, 64, 64))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 5)
    assert meta("tv:inception_v3").AuxLogits is None
    assert meta("tv:inception_v3", aux_logits=True).AuxLogits is not None


def test_unknown_names_and_options():
    with pytest.raises(UserError, match=r"unknown torchvision model 'tv:resnet5' \(did you mean: tv:resnet50"):
        get_model_spec("tv:resnet5")
    with pytest.raises(UserError, match="unknown torchvision model 'tv:fasterrcnn_resnet_fpn' .*tv:fasterrcnn_"):
        get_model_spec("tv:fasterrcnn_resnet_fpn")
    with pytest.raises(UserError, match="unknown model 'resnet50' .*did you mean: .*tv:resnet50"):
        get_model_spec("resnet50")
    with pytest.raises(UserError, match="unknown model namespace 'hub:'"):
        get_model_spec("hub:resnet50")
    with pytest.raises(UserError, match="^model 'tv:resnet18' has no option 'dropout'; valid options: weights, block"):
        meta("tv:resnet18", dropout=0.1)


@pytest.mark.parametrize("name, options, message", [
    # torchvision built these without a word: 8-channel layers, a string taken as true
    ("mobilenet_v2", {"width_mult": -1}, "option 'width_mult' must be above 0, got -1"),
    ("resnet18", {"zero_init_residual": "abc"}, "option 'zero_init_residual' must be true or false, got 'abc'"),
    # torchvision's own words, a traceback, or a message about something else
    ("mobilenet_v2", {"round_nearest": 0}, "option 'round_nearest' must be above 0, got 0"),
    ("efficientnet_b0", {"stochastic_depth_prob": 5}, "option 'stochastic_depth_prob' must be in [0, 1], got 5"),
    ("efficientnet_b0", {"dropout": -1}, "option 'dropout' must be in [0, 1], got -1"),
    ("resnet18", {"groups": 2.5}, "option 'groups' must be a whole number, got 2.5"),
    ("vit_b_16", {"image_size": 1e9}, "option image_size 1000000000 exceeds the ceiling of"),
    ("vit_b_16", {"patch_size": 8}, "sets its option 'patch_size' itself (it defines the variant)"),
    ("swin_t", {"depths": [2, -1, 2, 2]}, "option 'depths' must list whole numbers from 1, got [2, -1, 2, 2]"),
    ("inception_v3", {"init_weights": "no"}, "option 'init_weights' must be true or false, got 'no'"),  # Optional
])
def test_torchvision_options_are_checked_before_building(name, options, message):
    with pytest.raises(UserError) as info:
        meta(f"tv:{name}", **options)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_torchvision_options_take_the_classes_kinds():
    assert meta("tv:vit_b_16", image_size=256.0).image_size == 256  # YAML's 256.0 or 2.56e2: a whole number
    assert meta("tv:efficientnet_b0", dropout=0.3, stochastic_depth_prob=0.0).classifier[0].p == 0.3
    assert "width_mult" in get_model_spec("tv:mobilenet_v2").options
    with pytest.raises(UserError, match="sets its option 'growth_rate' itself"):  # a width, not a rate in [0, 1]
        meta("tv:densenet121", growth_rate=48)


def test_resolve_weights():
    assert resolve_weights("resnet50", "DEFAULT").name == "IMAGENET1K_V2"
    assert resolve_weights("resnet50", "IMAGENET1K_V1").name == "IMAGENET1K_V1"
    assert resolve_weights("resnet50", "ResNet50_Weights.IMAGENET1K_V1").name == "IMAGENET1K_V1"
    with pytest.raises(UserError, match=r"tv:resnet50 has no weights 'IMAGENET1K_V3' \(did you mean.*available: "
                                        r"DEFAULT, IMAGENET1K_V1, IMAGENET1K_V2"):
        resolve_weights("resnet50", "IMAGENET1K_V3")


def test_published_weights_are_loaded_with_weights_only(monkeypatch):
    torch.manual_seed(0)
    published = torchvision.models.squeezenet1_1().state_dict()
    calls = []

    def fake_download(url, *args, **kwargs):
        calls.append((url, kwargs))
        return {k: v.clone() for k, v in published.items()}

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    model = create_model("tv:squeezenet1_1", num_classes=10, weights="DEFAULT")
    entry = torchvision.models.SqueezeNet1_1_Weights.IMAGENET1K_V1
    assert calls == [(entry.url, {"weights_only": True, "progress": True, "check_hash": True})]
    assert torch.equal(model.features[0].weight, published["features.0.weight"])
    assert model.classifier[1].out_channels == 10  # the head was replaced after loading


def test_download_failure_is_a_user_error(monkeypatch):
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(UserError, match=r"could not fetch ResNet18_Weights\.IMAGENET1K_V1 from https://.*set "
                                        r"model\.pretrained to the file"):
        create_model("tv:resnet18", weights="DEFAULT")


@pytest.mark.parametrize(("name", "heads"), [
    ("efficientnet_b0", ["classifier.1"]), ("squeezenet1_0", ["classifier.1"]), ("vit_b_16", ["heads.head"]),
    ("convnext_tiny", ["classifier.2"]), ("inception_v3", ["AuxLogits.fc", "fc"]),
])
def test_replace_head(name, heads):
    model = meta(f"tv:{name}", **({"aux_logits": True} if name == "inception_v3" else {}))
    assert replace_head(model, 1000, 7) == heads
    out, _ = meta_forward(model, (3, *get_model_spec(f"tv:{name}").input_size[1:]))
    assert out == (1, 7)


def test_adapt_first_conv_keeps_the_gray_response():
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    rgb = model.conv1.weight.detach().clone()
    assert adapt_first_conv(model, 1) == "conv1"
    torch.testing.assert_close(model.conv1.weight, rgb.sum(1, keepdim=True))
    model2 = torchvision.models.resnet18()
    w = model2.conv1.weight.detach().clone()
    adapt_first_conv(model2, 4)
    torch.testing.assert_close(model2.conv1.weight[:, :3], w * 0.75)
    torch.testing.assert_close(model2.conv1.weight[:, 3], w[:, 0] * 0.75)


def test_pretrained_torchvision_option():
    assert torchvision_tag("tv:resnet50", "torchvision") == "DEFAULT"
    assert torchvision_tag("tv:resnet50", "torchvision:IMAGENET1K_V1") == "IMAGENET1K_V1"
    assert torchvision_tag("tv:resnet50", "weights/resnet50.pth") is None
    assert torchvision_tag("tv:resnet50", None) is None
    with pytest.raises(UserError, match="pretrained: torchvision needs a torchvision model"):
        torchvision_tag("alexnet_ref", "torchvision")


def test_a_weights_tag_that_is_also_a_file_here_is_refused(tmp_path, monkeypatch):
    """`pretrained: DEFAULT` (or `torchvision`) with a file of that name here took the file as the weights;
    which one was meant the word does not say. `./DEFAULT` names the file, `torchvision:DEFAULT` the weights,
    and a folder named like the keyword (a clone of the library) is no weights file."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "DEFAULT").write_bytes(b"a state dict")
    (tmp_path / "torchvision").mkdir()
    with pytest.raises(UserError, match=r"^'DEFAULT' is a torchvision weights tag and a file in this folder; give "
                                        r"\./DEFAULT for the file, or torchvision:DEFAULT for the weights$"):
        torchvision_tag("tv:resnet18", "DEFAULT")
    assert torchvision_tag("tv:resnet18", "./DEFAULT") is None
    assert torchvision_tag("tv:resnet18", "torchvision:DEFAULT") == "DEFAULT"
    assert torchvision_tag("tv:resnet18", "torchvision") == "DEFAULT"  # the folder is not a weights file
    assert torchvision_tag("alexnet_ref", "DEFAULT") is None  # tags exist only for tv: models
    (tmp_path / "torchvision").rmdir()
    (tmp_path / "torchvision").write_bytes(b"a state dict")
    with pytest.raises(UserError, match=r"^'torchvision' is the keyword for torchvision's weights and a file in "
                                        r"this folder; give \./torchvision for the file, or torchvision:DEFAULT"):
        torchvision_tag("tv:resnet18", "torchvision")
    assert (tmp_path / "DEFAULT").read_bytes() == (tmp_path / "torchvision").read_bytes() == b"a state dict"
