"""The optional `timm:` namespace: a clear error without timm, and the provider against a stand-in module.

timm is not a test dependency; a small fake module with timm's API surface (is_model, list_models,
get_pretrained_cfg, create_model) checks what the provider passes and reads.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import pytest
import torch
import torchvision

from deepvision.errors import UserError
from deepvision.models import create_model, get_model_spec
from deepvision.models.timm_models import timm_spec


@pytest.fixture(autouse=True)
def fresh_specs():
    timm_spec.cache_clear()
    yield
    timm_spec.cache_clear()


def test_timm_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` raise ImportError
    with pytest.raises(UserError, match=r"timm models need the timm package, which is not installed: pip install timm "
                                        r"\(or pip install 'deepvision\[timm\]'\)"):
        get_model_spec("timm:resnet50")


@dataclass
class FakeCfg:
    input_size: tuple = (3, 256, 256)
    crop_pct: float = 0.95
    mean: tuple = (0.5, 0.5, 0.5)
    std: tuple = (0.5, 0.5, 0.5)
    interpolation: str = "bicubic"
    num_classes: int = 1000


@pytest.fixture
def fake_timm(monkeypatch):
    calls = []
    timm = types.ModuleType("timm")
    timm.list_models = lambda pattern="*": ["convnext_tiny", "resnet50", "resnet101"]
    timm.is_model = lambda name: name.split(".")[0] in timm.list_models()
    timm.get_pretrained_cfg = lambda name: FakeCfg()

    def create(name, pretrained=False, num_classes=1000, in_chans=3, **kwargs):
        calls.append({"name": name, "pretrained": pretrained, "num_classes": num_classes, "in_chans": in_chans,
                      **kwargs})
        model = torchvision.models.resnet18(num_classes=num_classes)
        model.conv1 = torch.nn.Conv2d(in_chans, 64, 7, 2, 3, bias=False)
        return model

    timm.create_model = create
    monkeypatch.setitem(sys.modules, "timm", timm)
    return calls


def test_timm_spec_from_pretrained_config(fake_timm):
    spec = get_model_spec("timm:resnet50.a1_in1k")
    assert spec.input_size == (3, 256, 256)
    assert spec.preprocess == {"size": [256, 256], "resize": 269, "scale": 1 / 255, "mean": [0.5] * 3,
                               "std": [0.5] * 3, "interpolation": "bicubic"}
    assert spec.options == ["pretrained"]


def test_timm_model_gets_classes_channels_and_options(fake_timm):
    model = create_model("timm:resnet50", num_classes=7, in_channels=1, pretrained=True, drop_rate=0.2)
    assert fake_timm == [{"name": "resnet50", "pretrained": True, "num_classes": 7, "in_chans": 1, "drop_rate": 0.2}]
    assert model(torch.randn(1, 1, 64, 64)).shape == (1, 7)
    assert model.num_classes == 7


def test_unknown_timm_model(fake_timm):
    with pytest.raises(UserError, match=r"unknown timm model 'timm:resnet5' \(did you mean: resnet50"):
        get_model_spec("timm:resnet5")
