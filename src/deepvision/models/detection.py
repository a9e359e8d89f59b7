"""torchvision detectors by name (each also answers to `tv:NAME`), adapted to `num_classes` (which
counts the background, class 0).

    fasterrcnn_resnet50_fpn, fasterrcnn_resnet50_fpn_v2, fasterrcnn_resnet101_fpn,
    fasterrcnn_mobilenet_v3_large_fpn, fasterrcnn_mobilenet_v3_large_320_fpn,
    ssd300_vgg16, ssdlite320_mobilenet_v3_large

`weights`: "coco" (torchvision's COCO weights; the class head is then replaced when `num_classes`
is not 91), "imagenet" (backbone only) or None (from scratch). Weight files are read from the torch
hub cache (`$TORCH_HOME/hub/checkpoints`, as torchvision stores them) with `weights_only=True`, and
downloaded there when online (never with DEEPVISION_OFFLINE=1); offline, a missing file is a one-line
error naming it and where to place it.

The reference detectors' parameters that torchvision exposes are builder options (`model.args`):
Faster R-CNN takes torchvision's own names (min_size, max_size, rpn_nms_thresh, rpn_pre/post_nms_top_n_*,
rpn_fg/bg_iou_thresh, box_nms_thresh, box_detections_per_img, box_score_thresh, bbox_reg_weights, ...)
plus anchor_sizes / aspect_ratios; SSD takes nms_thresh, detections_per_img, score_thresh, iou_thresh,
topk_candidates, neg_to_pos_ratio (hard-negative mining), box_coder_weights, anchor_scales (default-box
sizes as fractions of the input, one per feature map plus one) and, for SSDlite (whose
default boxes are relative to the image), the input `size` (default 320).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from deepvision.errors import UserError
from deepvision.fileio import read_torch_file
from deepvision.models.registry import register_model
from deepvision.safeload import env_flag

RCNN_LOSSES = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")
SSD_LOSSES = ("classification", "bbox_regression")
DETECTION_MODELS: dict[str, str] = {}  # name -> family ("rcnn" | "ssd")
WEIGHT_CHOICES = ("coco", "imagenet", "none")


def detection_family(name: str) -> str | None:
    """'rcnn' or 'ssd' for a registered detector (by its name or `tv:NAME`), None for any other model."""
    return DETECTION_MODELS.get(name.removeprefix("tv:"))


def cached_weights_path(url: str) -> Path:
    """Where torch.hub keeps the file of `url` (the torchvision cache)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def load_weights_file(entry: Any) -> dict[str, torch.Tensor]:
    """The state dict of a torchvision weights entry: from the hub cache, else downloaded into it."""
    path = cached_weights_path(entry.url)
    label = f"{type(entry).__name__}.{entry.name}"
    if path.is_file():  # a truncated download, or not a state dict: a one-line error
        return read_torch_file(path, f"{label} weights file", f"delete it and download {entry.url} again")
    if env_flag("DEEPVISION_OFFLINE"):
        raise UserError(f"{label} weights are not in the torch hub cache and DEEPVISION_OFFLINE is set; without "
                        f"network, download {entry.url} elsewhere and place it at {path} (docs/transfer.md)")
    try:
        return torch.hub.load_state_dict_from_url(entry.url, map_location="cpu", weights_only=True, check_hash=True,
                                                  progress=False)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a failed hash check a RuntimeError
        raise UserError(f"{label} weights are not in the torch hub cache ({path}) and could not be downloaded "
                        f"({exc}); download {entry.url} to that path where there is internet access") from None


def _call_with_cached_weights(builder: Any, **kwargs: Any) -> nn.Module:
    """Run a torchvision builder so every weights file it needs comes from `load_weights_file`."""
    from unittest import mock

    import torchvision.models._api as api

    by_url: dict[str, Any] = {}
    for value in (kwargs.get("weights"), kwargs.get("weights_backbone")):
        if value is not None:
            by_url[value.url] = value
    with mock.patch.object(api, "load_state_dict_from_url", lambda url, *a, **k: load_weights_file(by_url[url])):
        return builder(**kwargs)


def _replace_rcnn_predictor(model: nn.Module, num_classes: int) -> None:
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

    old = model.roi_heads.box_predictor
    if old.cls_score.out_features != num_classes:
        model.roi_heads.box_predictor = FastRCNNPredictor(old.cls_score.in_features, num_classes)


def _replace_ssd_classifier(model: nn.Module, num_classes: int, lite: bool) -> None:
    from functools import partial

    from torchvision.models.detection.ssd import SSDClassificationHead
    from torchvision.models.detection.ssdlite import SSDLiteClassificationHead

    head = model.head.classification_head
    if head.num_columns == num_classes:
        return
    anchors = model.anchor_generator.num_anchors_per_location()
    if lite:
        channels = [block[1].in_channels for block in head.module_list]
        norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
        model.head.classification_head = SSDLiteClassificationHead(channels, anchors, num_classes, norm)
    else:
        channels = [conv.in_channels for conv in head.module_list]
        model.head.classification_head = SSDClassificationHead(channels, anchors, num_classes)


def _nested(values: Sequence[Any], levels: int, one_per_level: bool, what: str) -> tuple[tuple[float, ...], ...]:
    if all(isinstance(v, (list, tuple)) for v in values):
        if len(values) != levels:
            raise UserError(f"{what} has {len(values)} lists but the model has {levels} feature levels")
        return tuple(tuple(v) for v in values)
    if one_per_level:
        if len(values) != levels:
            raise UserError(f"{what}: give {levels} values (one per feature level) or a list per level")
        return tuple((v,) for v in values)
    return (tuple(values),) * levels


def _set_anchors(model: nn.Module, sizes: Sequence[Any] | None, ratios: Sequence[Any] | None, per_level: bool) -> None:
    """Replace the RPN anchors; the RPN's output convolutions are re-created when the count per cell changes."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    gen = model.rpn.anchor_generator
    levels = len(gen.sizes)
    new_sizes = _nested(sizes, levels, per_level, "anchor_sizes") if sizes is not None else gen.sizes
    new_ratios = _nested(ratios, levels, False, "aspect_ratios") if ratios is not None else gen.aspect_ratios
    if any(s <= 0 for level in new_sizes for s in level) or any(r <= 0 for level in new_ratios for r in level):
        raise UserError("anchor_sizes and aspect_ratios must be positive")
    before = gen.num_anchors_per_location()
    model.rpn.anchor_generator = AnchorGenerator(new_sizes, new_ratios)
    after = model.rpn.anchor_generator.num_anchors_per_location()
    if len(set(after)) != 1:
        raise UserError("every feature level needs the same number of anchors (sizes x ratios)")
    if after != before:
        head = model.rpn.head
        channels = head.cls_logits.in_channels
        head.cls_logits = nn.Conv2d(channels, after[0], 1)
        head.bbox_pred = nn.Conv2d(channels, after[0] * 4, 1)
        for layer in (head.cls_logits, head.bbox_pred):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.constant_(layer.bias, 0)


def _entry(spec: str | None) -> Any:
    """'FasterRCNN_ResNet50_FPN_Weights.COCO_V1' -> the torchvision enum member (imported on use)."""
    if spec is None:
        return None
    import torchvision.models as tvm
    import torchvision.models.detection as tvd

    enum, _, tag = spec.partition(".")
    return getattr(getattr(tvd, enum, None) or getattr(tvm, enum), tag)


def _check(num_classes: int, in_channels: int, weights: str | None) -> None:
    if in_channels != 3:
        raise UserError(f"detection models take RGB images (in_channels 3), got {in_channels}; set data.channels 3")
    if num_classes < 2:
        raise UserError(f"num_classes counts the background: at least 2, got {num_classes}")
    if weights not in (None, *WEIGHT_CHOICES):
        raise UserError(f"weights must be coco, imagenet or none, got {weights!r}")


MAX_DETECTION_SIDE = 4096  # the side a detector resizes its input to: 5x torchvision's 800, a bounded batch
MAX_DETECTION_COUNT = 100_000  # proposals, detections, sampled boxes per image


def _check_args(options: dict[str, Any]) -> None:
    """The numeric model.args of a detector: sides whole numbers from 64 (SSDlite's size) or 1 to
    MAX_DETECTION_SIDE, counts whole numbers from 1 to MAX_DETECTION_COUNT, IoU and score thresholds and
    fractions numbers in [0, 1], ratios finite and positive; UserError naming the argument otherwise."""
    import math

    from deepvision.safeload import check_range, shown_value

    for key, value in options.items():
        if value is None:
            continue
        values = value if key == "min_size" and isinstance(value, (list, tuple)) else [value]
        for v in values:
            if key in ("size", "min_size", "max_size"):
                check_range(f"model.args.{key}", v, 64 if key == "size" else 1, MAX_DETECTION_SIDE)
            elif key.endswith(("_top_n_train", "_top_n_test", "detections_per_img", "topk_candidates",
                               "batch_size_per_image")):
                check_range(f"model.args.{key}", v, 1, MAX_DETECTION_COUNT)
            elif key.endswith(("_thresh", "_fraction", "neg_to_pos_ratio")):
                high = math.inf if key == "neg_to_pos_ratio" else 1.0
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= high or \
                        not math.isfinite(v):
                    span = "a finite number >= 0" if high == math.inf else "a number from 0 to 1"
                    raise UserError(f"model.args.{key} must be {span}, got {shown_value(v)}")


def _rcnn(name: str, coco: str | None, backbone: str, per_level: bool, input_size: tuple[int, int, int]) -> None:
    def build(num_classes: int = 91, in_channels: int = 3, weights: str | None = None,
              trainable_backbone_layers: int | None = None, anchor_sizes: list | None = None,
              aspect_ratios: list | None = None, min_size: int | list[int] | None = None, max_size: int | None = None,
              rpn_pre_nms_top_n_train: int | None = None, rpn_pre_nms_top_n_test: int | None = None,
              rpn_post_nms_top_n_train: int | None = None, rpn_post_nms_top_n_test: int | None = None,
              rpn_nms_thresh: float | None = None, rpn_fg_iou_thresh: float | None = None,
              rpn_bg_iou_thresh: float | None = None, rpn_batch_size_per_image: int | None = None,
              rpn_positive_fraction: float | None = None, rpn_score_thresh: float | None = None,
              box_score_thresh: float | None = None, box_nms_thresh: float | None = None,
              box_detections_per_img: int | None = None, box_fg_iou_thresh: float | None = None,
              box_bg_iou_thresh: float | None = None, box_batch_size_per_image: int | None = None,
              box_positive_fraction: float | None = None, bbox_reg_weights: list[float] | None = None) -> nn.Module:
        import torchvision.models.detection as tvd

        options = dict(locals())
        weights = None if weights == "none" else weights
        _check(num_classes, in_channels, weights)
        _check_args(options)
        if weights == "coco" and coco is None:
            raise UserError(f"torchvision publishes no COCO weights for {name}; use weights: imagenet or none")
        extra = {k: v for k, v in options.items() if k.startswith(("rpn_", "box_", "bbox_")) and v is not None}
        if min_size is not None:
            extra["min_size"] = tuple(min_size) if isinstance(min_size, (list, tuple)) else min_size
        if max_size is not None:
            extra["max_size"] = max_size
        if "bbox_reg_weights" in extra:
            extra["bbox_reg_weights"] = tuple(float(v) for v in extra["bbox_reg_weights"])
        kwargs: dict[str, Any] = {"weights": _entry(coco) if weights == "coco" else None,
                                  "weights_backbone": _entry(backbone) if weights == "imagenet" else None,
                                  "trainable_backbone_layers": trainable_backbone_layers, **extra}
        if weights != "coco":
            kwargs["num_classes"] = num_classes
        try:
            if name == "fasterrcnn_resnet101_fpn":
                model = _resnet101_fpn(**kwargs)
            else:
                model = _call_with_cached_weights(getattr(tvd, name), **kwargs)
        except ValueError as exc:
            raise UserError(f"cannot build {name}: {exc}") from None
        _replace_rcnn_predictor(model, num_classes)
        if anchor_sizes is not None or aspect_ratios is not None:
            _set_anchors(model, anchor_sizes, aspect_ratios, per_level)
        return model

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"torchvision {name} (Faster R-CNN), COCO/ImageNet/no weights."
    register_model(name, input_size=input_size, num_classes=91, description=build.__doc__,
                   aliases=(f"tv:{name}",))(build)
    DETECTION_MODELS[name] = "rcnn"


def _resnet101_fpn(weights: Any, weights_backbone: Any, trainable_backbone_layers: int | None,
                   num_classes: int, **kwargs: Any) -> nn.Module:
    """Faster R-CNN with a ResNet-101-FPN backbone (the reference's depth; torchvision has no COCO weights)."""
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.backbone_utils import _validate_trainable_layers, resnet_fpn_backbone
    from torchvision.ops import misc as misc_nn_ops

    trained = weights_backbone is not None
    layers = _validate_trainable_layers(trained, trainable_backbone_layers, 5, 3)
    norm = misc_nn_ops.FrozenBatchNorm2d if trained else nn.BatchNorm2d
    from unittest import mock

    import torchvision.models._api as api

    with mock.patch.object(api, "load_state_dict_from_url", lambda url, *a, **k: load_weights_file(weights_backbone)):
        backbone = resnet_fpn_backbone(backbone_name="resnet101", weights=weights_backbone, norm_layer=norm,
                                       trainable_layers=layers)
    return FasterRCNN(backbone, num_classes=num_classes, **kwargs)


def _set_ssd_scales(model: nn.Module, scales: Sequence[Any]) -> None:
    """Default-box scales (fractions of the input, one per feature map plus one): smaller first scales find
    smaller objects. The box count per cell is unchanged, so the heads stay as built."""
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator

    gen = model.anchor_generator
    want = len(gen.aspect_ratios) + 1
    values = [float(v) for v in scales]
    if len(values) != want or any(not 0 < v <= 2 for v in values) or values != sorted(values):
        raise UserError(f"anchor_scales needs {want} increasing fractions of the input in (0, 2] (one per feature "
                        f"map and a last one), got {list(scales)}; the default is {[round(v, 3) for v in gen.scales]}")
    model.anchor_generator = DefaultBoxGenerator(gen.aspect_ratios, scales=values, steps=gen.steps, clip=gen.clip)


def _ssd(name: str, coco: str, backbone: str, lite: bool, input_size: tuple[int, int, int]) -> None:
    def build(num_classes: int = 91, in_channels: int = 3, weights: str | None = None,
              trainable_backbone_layers: int | None = None, score_thresh: float | None = None,
              nms_thresh: float | None = None, detections_per_img: int | None = None, iou_thresh: float | None = None,
              topk_candidates: int | None = None, neg_to_pos_ratio: float | None = None,
              box_coder_weights: list[float] | None = None, size: int | None = None,
              anchor_scales: list[float] | None = None) -> nn.Module:
        import torchvision.models.detection as tvd
        from torchvision.models.detection import _utils as det_utils

        weights = None if weights == "none" else weights
        _check(num_classes, in_channels, weights)
        _check_args({"score_thresh": score_thresh, "nms_thresh": nms_thresh, "iou_thresh": iou_thresh,
                     "detections_per_img": detections_per_img, "topk_candidates": topk_candidates,
                     "neg_to_pos_ratio": neg_to_pos_ratio, "size": size})
        kwargs: dict[str, Any] = {"weights": _entry(coco) if weights == "coco" else None,
                                  "weights_backbone": _entry(backbone) if weights == "imagenet" else None,
                                  "trainable_backbone_layers": trainable_backbone_layers}
        if weights != "coco":
            kwargs["num_classes"] = num_classes
        model = _call_with_cached_weights(getattr(tvd, name), **kwargs)
        _replace_ssd_classifier(model, num_classes, lite)
        for key, value in (("score_thresh", score_thresh), ("nms_thresh", nms_thresh),
                           ("detections_per_img", detections_per_img), ("topk_candidates", topk_candidates),
                           ("neg_to_pos_ratio", neg_to_pos_ratio)):
            if value is not None:
                if value < 0:
                    raise UserError(f"{key} must be >= 0, got {value}")
                setattr(model, key, value)
        if size is not None:
            if not lite:
                raise UserError(f"{name} is fixed at 300 x 300 by its anchor steps; size is for ssdlite")
            if size < 64:
                raise UserError(f"size must be at least 64, got {size}")
            model.transform.fixed_size, model.transform.min_size, model.transform.max_size = (size, size), (size,), size
        if anchor_scales is not None:
            _set_ssd_scales(model, anchor_scales)
        if iou_thresh is not None:
            model.proposal_matcher = det_utils.SSDMatcher(iou_thresh)
        if box_coder_weights is not None:
            if len(box_coder_weights) != 4:
                raise UserError(f"box_coder_weights needs 4 values (x, y, w, h), got {box_coder_weights}")
            model.box_coder = det_utils.BoxCoder(weights=tuple(float(w) for w in box_coder_weights))
        return model

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"torchvision {name} (SSD), COCO/ImageNet/no weights."
    register_model(name, input_size=input_size, num_classes=91, description=build.__doc__,
                   aliases=(f"tv:{name}",))(build)
    DETECTION_MODELS[name] = "ssd"


def _register() -> None:
    r50, mnv3 = "ResNet50_Weights.IMAGENET1K_V1", "MobileNet_V3_Large_Weights.IMAGENET1K_V1"
    _rcnn("fasterrcnn_resnet50_fpn", "FasterRCNN_ResNet50_FPN_Weights.COCO_V1", r50, True, (3, 800, 800))
    _rcnn("fasterrcnn_resnet50_fpn_v2", "FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1", r50, True, (3, 800, 800))
    _rcnn("fasterrcnn_resnet101_fpn", None, "ResNet101_Weights.IMAGENET1K_V1", True, (3, 800, 800))
    _rcnn("fasterrcnn_mobilenet_v3_large_fpn", "FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1", mnv3, False,
          (3, 800, 800))
    _rcnn("fasterrcnn_mobilenet_v3_large_320_fpn", "FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1", mnv3,
          False, (3, 320, 320))
    _ssd("ssd300_vgg16", "SSD300_VGG16_Weights.COCO_V1", "VGG16_Weights.IMAGENET1K_FEATURES", False, (3, 300, 300))
    _ssd("ssdlite320_mobilenet_v3_large", "SSDLite320_MobileNet_V3_Large_Weights.COCO_V1", mnv3, True,
         (3, 320, 320))


_register()
