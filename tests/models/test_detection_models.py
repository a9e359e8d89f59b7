"""torchvision detectors by name: class counts, the reference's options, COCO/ImageNet weights from the hub cache."""

from __future__ import annotations

import urllib.error

import pytest
import torch

from deepvision.errors import UserError
from deepvision.models import create_model, get_model_spec
from deepvision.models.detection import DETECTION_MODELS, cached_weights_path, detection_family


def _targets(n_classes: int):
    return [{"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0], [70.0, 20.0, 110.0, 50.0]]),
             "labels": torch.tensor([1, n_classes - 1])}]


@pytest.mark.parametrize("name,losses,options", [
    ("ssdlite320_mobilenet_v3_large", {"classification", "bbox_regression"}, {"size": 128}),
    ("fasterrcnn_mobilenet_v3_large_320_fpn", {"loss_classifier", "loss_box_reg", "loss_objectness",
                                               "loss_rpn_box_reg"}, {"min_size": 128, "max_size": 160}),
])
def test_train_losses_and_eval_detections(name, losses, options):
    torch.manual_seed(0)
    model = create_model(name, num_classes=4, **options)
    model.train()
    out = model([torch.rand(3, 120, 128), torch.rand(3, 128, 100)], _targets(4) * 2)  # ssdlite: BN needs 2 images
    assert set(out) == losses and all(torch.isfinite(v) and v.dim() == 0 for v in out.values())
    model.eval()
    with torch.no_grad():
        det = model([torch.rand(3, 96, 140)])[0]
    assert set(det) == {"boxes", "scores", "labels"}
    if len(det["labels"]):
        assert det["labels"].min() >= 1 and det["labels"].max() <= 3
        assert (det["boxes"][:, 2] <= 140 + 1e-3).all() and (det["boxes"][:, 3] <= 96 + 1e-3).all()


def test_registry_lists_every_detector_with_its_options():
    assert set(DETECTION_MODELS) == {
        "fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2", "fasterrcnn_resnet101_fpn",
        "fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn", "ssd300_vgg16",
        "ssdlite320_mobilenet_v3_large"}
    assert detection_family("ssd300_vgg16") == "ssd" and detection_family("lenet") is None
    rcnn = get_model_spec("fasterrcnn_resnet50_fpn").options
    assert {"weights", "anchor_sizes", "aspect_ratios", "rpn_nms_thresh", "box_nms_thresh", "box_detections_per_img",
            "bbox_reg_weights", "min_size", "max_size"} <= set(rcnn)
    assert {"neg_to_pos_ratio", "box_coder_weights", "nms_thresh", "detections_per_img"} <= set(
        get_model_spec("ssd300_vgg16").options)
    with pytest.raises(UserError, match="has no option 'nms_thresh'.*valid options"):
        create_model("fasterrcnn_mobilenet_v3_large_320_fpn", num_classes=3, nms_thresh=0.5)


def _ssd_inputs(model, size: int):
    from torchvision.models.detection.image_list import ImageList

    images = ImageList(torch.zeros(1, 3, size, size), [(size, size)])
    model.eval()
    with torch.no_grad():
        feats = list(model.backbone(images.tensors).values())
    return images, feats


def test_reference_parameters_reach_the_torchvision_modules():
    m = create_model("fasterrcnn_mobilenet_v3_large_320_fpn", num_classes=4, anchor_sizes=[64, 128, 256, 512],
                     aspect_ratios=[0.5, 1.0, 2.0], rpn_nms_thresh=0.7, rpn_post_nms_top_n_test=300,
                     box_nms_thresh=0.6, box_detections_per_img=300, bbox_reg_weights=[10, 10, 5, 5], min_size=600,
                     max_size=1024)
    assert m.rpn.anchor_generator.num_anchors_per_location() == [12, 12, 12]  # 4 scales x 3 ratios, as the reference
    assert m.rpn.head.cls_logits.out_channels == 12 and m.rpn.head.bbox_pred.out_channels == 48
    assert m.rpn.nms_thresh == 0.7 and m.rpn._post_nms_top_n["testing"] == 300
    assert m.roi_heads.nms_thresh == 0.6 and m.roi_heads.detections_per_img == 300
    assert m.roi_heads.box_coder.weights == (10, 10, 5, 5)
    assert m.transform.min_size == (600,) and m.transform.max_size == 1024
    assert m.roi_heads.box_predictor.cls_score.out_features == 4
    s = create_model("ssdlite320_mobilenet_v3_large", num_classes=3, neg_to_pos_ratio=3, nms_thresh=0.6,
                     detections_per_img=100, iou_thresh=0.5, box_coder_weights=[10, 10, 5, 5])
    assert s.neg_to_pos_ratio == 3 and s.nms_thresh == 0.6 and s.detections_per_img == 100
    assert s.proposal_matcher.high_threshold == 0.5 and s.box_coder.weights == (10.0, 10.0, 5.0, 5.0)
    assert create_model("ssdlite320_mobilenet_v3_large", num_classes=3, size=160).transform.fixed_size == (160, 160)
    small = create_model("ssdlite320_mobilenet_v3_large", num_classes=3, size=128,
                         anchor_scales=[0.08, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95])
    boxes = small.anchor_generator(*_ssd_inputs(small, 128))[0]  # cx, cy, w, h of the first map's square boxes
    assert small.anchor_generator.scales[0] == 0.08 and boxes.shape[0] == 8 * 8 * 6 + 4 * 4 * 6 + 2 * 2 * 6 + 3 * 6
    assert torch.isclose((boxes[0, 2] - boxes[0, 0]), torch.tensor(0.08 * 128), atol=1e-3)
    with pytest.raises(UserError, match="anchor_scales needs 7 increasing"):
        create_model("ssdlite320_mobilenet_v3_large", num_classes=3, anchor_scales=[0.3, 0.2])
    with pytest.raises(UserError, match="RGB"):
        create_model("ssdlite320_mobilenet_v3_large", num_classes=3, in_channels=1)
    with pytest.raises(UserError, match="no COCO weights for fasterrcnn_resnet101_fpn"):
        create_model("fasterrcnn_resnet101_fpn", num_classes=3, weights="coco")
    with pytest.raises(UserError, match="has 2 lists but the model has 3 feature levels"):
        create_model("fasterrcnn_mobilenet_v3_large_320_fpn", num_classes=3, anchor_sizes=[[32], [64]])


def test_coco_weights_from_the_hub_cache_and_offline_error(tmp_path, monkeypatch):
    from torchvision.models.detection import SSDLite320_MobileNet_V3_Large_Weights, ssdlite320_mobilenet_v3_large

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    entry = SSDLite320_MobileNet_V3_Large_Weights.COCO_V1
    path = cached_weights_path(entry.url)
    with pytest.raises(UserError) as err:
        create_model("ssdlite320_mobilenet_v3_large", num_classes=3, weights="coco")
    assert str(path) in str(err.value) and "\n" not in str(err.value) and entry.url in str(err.value)
    torch.manual_seed(1)
    coco = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=91)
    path.parent.mkdir(parents=True)
    torch.save(coco.state_dict(), path)
    model = create_model("ssdlite320_mobilenet_v3_large", num_classes=3, weights="coco")
    assert model.head.classification_head.num_columns == 3
    mine, theirs = model.state_dict(), coco.state_dict()
    shared = [k for k in theirs if not k.startswith("head.classification_head")]
    assert all(torch.equal(mine[k], theirs[k]) for k in shared)
    assert mine["head.classification_head.module_list.0.1.weight"].shape[0] == 3 * 6


def test_imagenet_backbone_weights_from_the_hub_cache(tmp_path, monkeypatch):
    from torchvision.models import MobileNet_V3_Large_Weights, mobilenet_v3_large

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(2)
    net = mobilenet_v3_large()
    path = cached_weights_path(MobileNet_V3_Large_Weights.IMAGENET1K_V1.url)
    path.parent.mkdir(parents=True)
    torch.save(net.state_dict(), path)
    model = create_model("fasterrcnn_mobilenet_v3_large_320_fpn", num_classes=3, weights="imagenet")
    first = model.backbone.body["0"][0].weight
    assert torch.equal(first, net.features[0][0].weight)
    assert type(model.backbone.body["1"].block[0][1]).__name__ == "FrozenBatchNorm2d"  # as torchvision does


def test_models_show_on_a_detector_is_one_line(run_cli):
    code, _, err = run_cli("models", "show", "ssdlite320_mobilenet_v3_large")
    assert code == 2 and err.count("\n") == 1 and "depends on the data" in err


def test_detectors_answer_to_tv_names_and_imply_the_detection_task():
    import deepvision.engine.tasks  # noqa: F401  (registers the task inference)
    from deepvision.config import build_config

    spec = get_model_spec("tv:ssdlite320_mobilenet_v3_large")
    assert spec is get_model_spec("ssdlite320_mobilenet_v3_large")
    assert detection_family("tv:fasterrcnn_resnet50_fpn") == "rcnn"
    model = create_model("tv:ssdlite320_mobilenet_v3_large", num_classes=4, size=64)
    assert model.head.classification_head.num_columns == 4
    cfg = build_config({"model": {"name": "tv:ssdlite320_mobilenet_v3_large"}, "data": {"source": "detection"}})
    assert (cfg.model.name, cfg.task) == ("ssdlite320_mobilenet_v3_large", "detection")
    cfg = build_config({"model": {"name": "tv:resnet18"}, "data": {"source": "folder"}})
    assert (cfg.model.name, cfg.task) == ("tv:resnet18", "classification")


@pytest.mark.parametrize("typed, first", [("tv:fasterrcnn_resnet50", "tv:fasterrcnn_resnet50_fpn"),
                                          ("fasterrcnn_resnet50", "fasterrcnn_resnet50_fpn"),
                                          ("tv:ssdlite320_mobilenet_v3", "tv:ssdlite320_mobilenet_v3_large"),
                                          ("resnet18", "tv:resnet18"), ("minivg", "minivgg")])
def test_did_you_mean_searches_every_registry(typed, first):
    with pytest.raises(UserError) as err:
        get_model_spec(typed)
    message = str(err.value)
    assert f"(did you mean: {first}" in message and "\n" not in message


@pytest.mark.parametrize(("name", "args", "message"), [
    ("ssdlite320_mobilenet_v3_large", {"size": 60000}, r"model.args.size must be a whole number from 64 to 4,096"),
    ("ssdlite320_mobilenet_v3_large", {"size": float("inf")}, r"option 'size' must be finite, got inf"),
    ("ssdlite320_mobilenet_v3_large", {"detections_per_img": float("nan")},
     r"option 'detections_per_img' must be finite, got nan"),
    ("ssdlite320_mobilenet_v3_large", {"nms_thresh": 1.5}, r"model.args.nms_thresh must be a number from 0 to 1"),
    ("ssdlite320_mobilenet_v3_large", {"neg_to_pos_ratio": float("inf")},
     r"option 'neg_to_pos_ratio' must be finite, got inf"),
    ("ssdlite320_mobilenet_v3_large", {"neg_to_pos_ratio": -1.0},
     r"model.args.neg_to_pos_ratio must be a finite number >= 0"),
    ("fasterrcnn_mobilenet_v3_large_320_fpn", {"min_size": [320, 90000]}, r"model.args.min_size must be a whole"),
    ("fasterrcnn_mobilenet_v3_large_320_fpn", {"box_score_thresh": "0.5"},
     r"model.args.box_score_thresh must be a number from 0 to 1, got '0.5' \(a str\)"),
    ("fasterrcnn_mobilenet_v3_large_320_fpn", {"rpn_post_nms_top_n_test": 0}, r"rpn_post_nms_top_n_test must be"),
])
def test_detector_arguments_are_bounded_numbers(name, args, message):
    """Sides, counts and thresholds are checked when the model is built: a 60000-pixel size asked for
    43 GB at the first batch, NaN counts failed a whole epoch later."""
    with pytest.raises(UserError, match=message):
        create_model(name, num_classes=3, **args)
