"""The detection recipes carry the reference experiments' settings and results, with options the builders accept."""

from __future__ import annotations

import pytest
import yaml

from deepvision.data.detection.transforms import DetectionAugment
from deepvision.models import get_model_spec
from deepvision.recipes import recipe_path


def _recipe(name: str) -> dict:
    return yaml.safe_load(recipe_path(name).read_text())


@pytest.mark.parametrize("name", ["detection_lisa_frcnn", "detection_vehicles_ssd", "detection_synthetic"])
def test_recipes_use_valid_options(name):
    r = _recipe(name)
    assert r["task"] == "detection" and r["data"]["source"] == "detection" and r["checkpoint"]["monitor"] == "val_map50"
    spec = get_model_spec(r["model"]["name"])
    assert set(r["model"].get("args", {})) <= set(spec.options)
    DetectionAugment.from_options(r["data"].get("options", {}), r["data"]["augment"]["rand_mirror"])


def test_faster_rcnn_lisa_settings():
    r = _recipe("detection_lisa_frcnn")
    args = r["model"]["args"]
    assert (args["min_size"], args["max_size"]) == (600, 1024) and r["data"]["batch_size"] == 1
    assert r["optim"] == {"name": "sgd", "lr": 0.0003, "momentum": 0.9}
    assert r["train"]["clip_grad_norm"] == 10.0 and r["data"]["augment"] == {"rand_mirror": True}
    assert args["rpn_nms_thresh"] == 0.7 and args["rpn_post_nms_top_n_test"] == 300 and args["box_nms_thresh"] == 0.6
    assert r["reference"]["val_map50"] == 98.0 and r["reference"]["steps"] == 50000
    assert r["model"]["pretrained"] == "coco"


def test_ssd_vehicles_settings():
    r = _recipe("detection_vehicles_ssd")
    assert r["model"]["name"] == "ssd300_vgg16" and r["data"]["batch_size"] == 24
    o = r["optim"]
    assert (o["name"], o["lr"], o["momentum"], o["alpha"], o["eps"]) == ("rmsprop", 0.004, 0.9, 0.9, 1.0)
    assert r["model"]["args"]["neg_to_pos_ratio"] == 3 and r["data"]["options"]["iou_crop"] is True
    assert r["reference"]["val_map50"] == 65.5 and r["reference"]["steps"] == 200000
