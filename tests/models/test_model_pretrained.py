"""`model.pretrained`: torchvision state dicts and deepvision checkpoints, loaded with weights_only=True."""

from __future__ import annotations

import pytest
import torch
import torchvision

from deepvision.config.io import build_config
from deepvision.data.preprocess import Preprocess
from deepvision.errors import UserError
from deepvision.models import create_model
from deepvision.models.build import build_model
from deepvision.models.pretrained import head_modules, load_pretrained
from deepvision.runs.checkpoint import FORMAT

SMALL_RESNET = {"stages": (1, 1, 1, 1), "filters": (8, 16, 16, 32, 32)}


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """A torchvision-format ImageNet ResNet18 state dict (random weights)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    state = torchvision.models.resnet18().state_dict()
    torch.save(state, path)
    return path, state


def test_torchvision_state_dict_into_a_new_head(resnet18_file):
    path, state = resnet18_file
    model = create_model("tv:resnet18", num_classes=10)
    report = load_pretrained(model, path, "tv:resnet18")
    assert torch.equal(model.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    assert report["mismatched"] == ["fc.weight", "fc.bias"]
    assert report["missing"] == ["fc.weight", "fc.bias"]  # left at their fresh initialisation
    assert report["unexpected"] == [] and report["adapted"] == []
    assert model.fc.out_features == 10


def test_rgb_weights_adapt_to_grayscale(resnet18_file):
    path, state = resnet18_file
    model = create_model("tv:resnet18", num_classes=1000, in_channels=1)
    report = load_pretrained(model, path, "tv:resnet18")
    assert report["adapted"] == ["conv1.weight"]
    torch.testing.assert_close(model.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(model.fc.weight, state["fc.weight"])


def test_deepvision_checkpoint_and_prefixed_keys(tmp_path):
    torch.manual_seed(0)
    source = create_model("resnet_ref", num_classes=5, **SMALL_RESNET)
    ckpt = {"format": FORMAT, "version": 1, "model": {"name": "resnet_ref"},
            "model_state": {f"module.{k}": v for k, v in source.state_dict().items()}}  # saved from DDP
    torch.save(ckpt, tmp_path / "run-0010.pt")
    target = create_model("resnet_ref", num_classes=3, **SMALL_RESNET)
    report = load_pretrained(target, tmp_path / "run-0010.pt", "resnet_ref")
    assert torch.equal(target.features.stage2.unit1.conv2.weight, source.features.stage2.unit1.conv2.weight)
    assert torch.equal(target.features.stem.bn0.running_var, source.features.stem.bn0.running_var)
    assert report["missing"] == ["classifier.fc.weight", "classifier.fc.bias"]


def test_weights_of_another_architecture_are_rejected(resnet18_file):
    path, _ = resnet18_file
    with pytest.raises(UserError, match=r"share no tensor with model 'alexnet_ref'.*another architecture"):
        load_pretrained(create_model("alexnet_ref", input_size=67, fc_units=8), path, "alexnet_ref")
    # same layer names, other shapes and depths: ResNet18 weights into a ResNet50
    with pytest.raises(UserError, match=r"do not fit model 'tv:resnet50': \d+ tensors of the model are missing .*"
                                        r"differ in shape \(layer1\.0\.conv1\.weight \(64, 64, 3, 3\) vs "
                                        r"\(64, 64, 1, 1\).*only the classifier head may differ"):
        load_pretrained(create_model("tv:resnet50"), path, "tv:resnet50")


def test_deeper_or_shallower_networks_are_rejected(tmp_path):
    torch.manual_seed(0)
    deep = create_model("resnet_ref", num_classes=3, stages=(2, 1, 1, 1), filters=SMALL_RESNET["filters"])
    torch.save(deep.state_dict(), tmp_path / "deep.pth")
    shallow = create_model("resnet_ref", num_classes=3, **SMALL_RESNET)
    with pytest.raises(UserError, match=r"extra tensors \(features\.stage1\.unit2\."):
        load_pretrained(shallow, tmp_path / "deep.pth", "resnet_ref")
    torch.save(shallow.state_dict(), tmp_path / "shallow.pth")
    with pytest.raises(UserError, match=r"tensors of the model are missing \(features\.stage1\.unit2\."):
        load_pretrained(deep, tmp_path / "shallow.pth", "resnet_ref")


def test_loading_never_unpickles_code(tmp_path):
    torch.save({"weight": torch.zeros(1), "payload": Preprocess(1, (28, 28))}, tmp_path / "evil.pth")
    with pytest.raises(UserError, match="holds Python objects besides tensors"):
        load_pretrained(create_model("lenet"), tmp_path / "evil.pth", "lenet")


def test_missing_file_and_non_weights():
    with pytest.raises(UserError, match="weights file not found"):
        load_pretrained(create_model("lenet"), "/nonexistent/w.pth", "lenet")


def test_head_modules():
    assert head_modules(create_model("lenet")) == ["classifier.3"]
    assert head_modules(create_model("squeezenet_ref", num_classes=4)) == ["classifier.conv10"]
    with torch.device("meta"):
        inception = torchvision.models.inception_v3(aux_logits=True, init_weights=False)
    assert head_modules(inception) == ["AuxLogits.fc", "fc"]


def test_build_model_loads_config_pretrained(tmp_path):
    torch.manual_seed(0)
    source = create_model("lenet", num_classes=10)
    torch.save(source.state_dict(), tmp_path / "lenet.pth")
    cfg = build_config({"model": {"name": "lenet", "num_classes": 2, "in_channels": 1,
                                  "pretrained": str(tmp_path / "lenet.pth")}})
    model = build_model(cfg, Preprocess(1, (28, 28)))
    assert torch.equal(model.features[0].weight, source.features[0].weight)
    assert model.pretrained_report["missing"] == ["classifier.3.weight", "classifier.3.bias"]


def test_build_model_fetches_torchvision_weights(monkeypatch):
    requested = []
    monkeypatch.setattr("deepvision.models.torchvision_models.fetch_weights_model",
                        lambda name, entry, **kw: requested.append(entry.name) or torchvision.models.get_model(name))
    cfg = build_config({"model": {"name": "tv:squeezenet1_1", "num_classes": 3, "in_channels": 3,
                                  "pretrained": "torchvision:IMAGENET1K_V1"}})
    model = build_model(cfg, Preprocess(3, (224, 224)))
    assert requested == ["IMAGENET1K_V1"]
    assert model.classifier[1].out_channels == 3
    assert not hasattr(model, "pretrained_report")


@pytest.mark.parametrize("spelling", ["torchvision:IMAGENET1K_V1", "IMAGENET1K_V1", "torchvision",
                                      "SqueezeNet1_1_Weights.IMAGENET1K_V1"])
def test_config_pretrained_takes_the_command_line_spelling(monkeypatch, spelling):
    requested = []
    monkeypatch.setattr("deepvision.models.torchvision_models.fetch_weights_model",
                        lambda name, entry, **kw: requested.append(entry.name) or torchvision.models.get_model(name))
    cfg = build_config({"model": {"name": "tv:squeezenet1_1", "num_classes": 3, "in_channels": 3,
                                  "pretrained": spelling}})
    build_model(cfg, Preprocess(3, (224, 224)))
    assert requested == ["IMAGENET1K_V1"]


def test_detector_coco_weights_offline_is_one_line_without_download(monkeypatch, tmp_path, capfd):
    from deepvision.models.detection import cached_weights_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("DEEPVISION_OFFLINE", "1")
    calls = []
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: calls.append(a))
    cfg = build_config({"model": {"name": "ssdlite320_mobilenet_v3_large", "num_classes": 3, "in_channels": 3,
                                  "pretrained": "coco"}})
    with pytest.raises(UserError) as err:
        build_model(cfg, Preprocess(3, (320, 320)))
    from torchvision.models.detection import SSDLite320_MobileNet_V3_Large_Weights

    url = SSDLite320_MobileNet_V3_Large_Weights.COCO_V1.url
    message = str(err.value)
    assert "DEEPVISION_OFFLINE" in message and url in message and str(cached_weights_path(url)) in message
    assert "\n" not in message and calls == []
    assert "Downloading" not in capfd.readouterr().err


@pytest.mark.parametrize(("value", "offline"), [("false", False), ("No", False), ("off", False), ("0", False),
                                                ("", False), ("yes", True), ("ON", True), ("true", True)])
def test_offline_switch_reads_yes_no_words(monkeypatch, tmp_path, value, offline):
    """DEEPVISION_OFFLINE=false/no/off turned offline mode on; the words now read as written."""
    from torchvision.models.detection import SSDLite320_MobileNet_V3_Large_Weights

    from deepvision.models.detection import load_weights_file

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("DEEPVISION_OFFLINE", value)
    calls = []
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: calls.append(a) or {})
    entry = SSDLite320_MobileNet_V3_Large_Weights.COCO_V1
    if offline:
        with pytest.raises(UserError, match="DEEPVISION_OFFLINE is set"):
            load_weights_file(entry)
    else:
        assert load_weights_file(entry) == {}
    assert len(calls) == (0 if offline else 1)


def test_detector_keyword_that_is_also_a_file_here_is_refused(monkeypatch, tmp_path):
    """`pretrained: coco` with a file ./coco here: the keyword was taken without a word; a COCO data folder
    named coco is no weights file and leaves the keyword alone."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "coco").write_bytes(b"a state dict")
    cfg = build_config({"model": {"name": "ssdlite320_mobilenet_v3_large", "num_classes": 3, "in_channels": 3,
                                  "pretrained": "coco"}})
    with pytest.raises(UserError, match=r"^'coco' is a detector weights keyword and a file in this folder; give "
                                        r"\./coco for the file, or rename it$"):
        build_model(cfg, Preprocess(3, (320, 320)))
    assert (tmp_path / "coco").read_bytes() == b"a state dict"

