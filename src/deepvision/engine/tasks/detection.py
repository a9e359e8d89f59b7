"""The detection task: torchvision detectors trained on a built detection dataset (docs/detection.md).

It implements the engine's Task contract (engine/tasks/base.py in main):

- data: `data.source: detection`, `data.root: DIR` (a `deepvision detection build` output); batches
  are lists of uint8 images and lists of target dicts (data/detection/loader.py);
- the model gets `num_classes + 1` outputs (class 0 is the background) and normalises and resizes
  its input itself, so the run's preprocess is only "RGB, scaled by 1/255";
- training: the detector returns its loss dict in train mode; the loss to back-propagate is the
  sum, and the meter records every component (history.csv: train_loss, train_loss_classifier, ...);
- validation: detections in eval mode, accumulated on the CPU; the meter computes PASCAL VOC
  mAP@0.5 (all-point) and, with pycocotools installed, COCO mAP@[.5:.95] (val_map50, val_map).

A config that trains a detector on `data.source: detection` is this task without `task: detection`
being written.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch

from deepvision.config.names import register_inference
from deepvision.config.schema import Config
from deepvision.data.detection.loader import DetectionData, load_detection_data
from deepvision.data.preprocess import Preprocess
from deepvision.engine.detection_metrics import VOCResult, evaluate_coco, evaluate_voc
from deepvision.engine.tasks.base import Task, TaskData, overlap_note
from deepvision.engine.tasks.registry import register_task
from deepvision.errors import UserError
from deepvision.models.detection import RCNN_LOSSES, detection_family
from deepvision.safeload import printable

# torchvision's SSD names its two losses differently from Faster R-CNN; one set of column names for both
LOSS_NAMES = {"classification": "loss_classifier", "bbox_regression": "loss_box_reg"}
SSD_METRICS = ("loss", "loss_classifier", "loss_box_reg")
RCNN_METRICS = ("loss", *RCNN_LOSSES)


class LossMeter:
    """Training phase: the summed loss and each component, image-weighted, summed on the device."""

    def __init__(self, device: torch.device, names: tuple[str, ...]) -> None:
        self.names = names  # "loss" first, then the components
        self.sums = torch.zeros(len(names), dtype=torch.float64, device=device)
        self.count = 0
        self._mark = (self.sums.clone(), 0)

    def mark(self) -> None:
        self._mark = (self.sums.clone(), self.count)

    @torch.no_grad()
    def update(self, outputs: dict[str, torch.Tensor], targets: list[dict[str, torch.Tensor]],
               loss: torch.Tensor | None) -> None:
        n = len(targets)
        values = [loss if loss is not None else sum(outputs.values())]
        values += [outputs[name] for name in self.names[1:]]
        self.sums += torch.stack([v.detach().double() for v in values]) * n
        self.count += n

    def compute(self, distributed: bool = False, since_mark: bool = False) -> dict[str, float]:
        base, count = (self.sums - self._mark[0], self.count - self._mark[1]) if since_mark else (self.sums, self.count)
        sums = torch.cat([base, torch.tensor([float(count)], dtype=torch.float64, device=self.sums.device)])
        if distributed and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(sums)
        *totals, n = sums.tolist()
        if n == 0:
            return {**{k: math.nan for k in self.names}, "count": 0}
        return {**{k: v / n for k, v in zip(self.names, totals)}, "count": int(n)}


class DetectionMeter:
    """Validation phase: detections and ground truth per image (CPU), scored at `compute`.

    After `compute`, `voc` holds the full VOC result (per-class AP, precision/recall curves) and
    `coco` the COCO numbers (empty without pycocotools).
    """

    def __init__(self, classes: list[str], eleven_point: bool = False) -> None:
        self.classes, self.eleven_point = classes, eleven_point
        self.records: list[tuple[int, dict[str, Any], dict[str, Any]]] = []
        self.voc: VOCResult | None = None
        self.coco: dict[str, float] = {}

    def update(self, outputs: list[dict[str, torch.Tensor]], targets: list[dict[str, torch.Tensor]],
               loss: torch.Tensor | None = None) -> None:
        for det, gt in zip(outputs, targets):
            self.records.append((
                int(gt["image_id"]),
                {k: det[k].detach().float().cpu().numpy() if k != "labels" else det[k].cpu().numpy()
                 for k in ("boxes", "scores", "labels")},
                {"boxes": gt["boxes"].float().cpu().numpy(), "labels": gt["labels"].cpu().numpy(),
                 "difficult": gt["difficult"].cpu().numpy()},
            ))

    def gathered(self, distributed: bool = False) -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
        """Every rank's records (each rank scored a disjoint share of the images), ordered by image id."""
        records = self.records
        if distributed and torch.distributed.is_available() and torch.distributed.is_initialized():
            parts: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(parts, records)
            records = [r for part in parts for r in part]
        return sorted(records, key=lambda r: r[0])

    def compute(self, distributed: bool = False) -> dict[str, float]:
        records = self.gathered(distributed)
        dets, gts = [r[1] for r in records], [r[2] for r in records]
        self.voc = evaluate_voc(dets, gts, self.classes, eleven_point=self.eleven_point)
        try:
            self.coco = evaluate_coco(dets, gts, self.classes)
        except ImportError:
            self.coco = {}
        return {"map50": self.voc.map, "map": self.coco.get("map", math.nan), "count": len(records)}


def infer_detection_task(cfg: Config) -> None:
    """A detector on a detection source is the detection task, whatever the (default) task says."""
    if cfg.task == "classification" and cfg.data.source == "detection" and detection_family(cfg.model.name):
        cfg.task = "detection"


register_inference(infer_detection_task)


def detection_overlap_notes(data: DetectionData) -> list[str]:
    """A [WARN] line for each val/test split holding training images (`val: train` names one split twice; a
    built index lists an image in one split only), as classification's `overlap_notes`."""
    train = {im.file for im in data.splits["train"]}
    return [overlap_note(role, shared, len(images)) for role in ("val", "test")
            if (images := data.splits.get(role)) and (shared := sum(im.file in train for im in images))]


def refuse_classes_without_boxes(data: DetectionData) -> None:
    """Refuse a dataset whose class list names a class no training box has (difficult boxes count only with
    data.train_difficult), as the classification task refuses a class with no sample: the model would get an
    output it never learns."""
    boxes, learnt = np.zeros((2, len(data.classes) + 1), np.int64)
    for im in data.splits["train"]:
        boxes += np.bincount(im.labels, minlength=len(boxes))
        learnt += np.bincount(im.labels if data.train_difficult else im.labels[~im.difficult], minlength=len(boxes))
    missing = np.flatnonzero(learnt[1:] == 0)
    if missing.size:
        more = f" (and {missing.size - 1} more)" if missing.size > 1 else ""
        has = "only difficult boxes (data.train_difficult is off)" if boxes[missing[0] + 1] else "no box"
        raise UserError(f"class '{printable(data.classes[missing[0]])}'{more} has {has} in the training split "
                        f"({data.cfg.root}: {data.cfg.train}); the model would get an output it never learns: "
                        f"build the dataset without it (`deepvision detection build --classes`) or add boxes of it")


@register_task("detection")
class DetectionTask(Task):
    """Task "detection" (see the module docstring)."""

    check_input = False  # the detector resizes its input itself
    supports_channels_last = False  # inputs are lists of differently sized images
    cpu_autocast = False  # bf16 on the CPU is measured for classification CNNs only
    train_metrics: ClassVar[tuple[str, ...]] = RCNN_METRICS  # SSD models: SSD_METRICS (set per instance)
    val_metrics: ClassVar[tuple[str, ...]] = ("map50", "map")
    default_monitor: ClassVar[str] = "val_map50"

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        family = detection_family(cfg.model.name)
        if family is None:
            from deepvision.models.detection import DETECTION_MODELS

            raise UserError(f"task detection needs a detection model, not '{cfg.model.name}'; choose one of "
                            f"{', '.join(sorted(DETECTION_MODELS))}")
        self.family = family
        if family == "ssd":
            self.train_metrics = SSD_METRICS  # type: ignore[misc]  (an instance value: the model decides)
        self.classes: list[str] = []
        self.splits_read: dict[str, Any] | None = None

    def load_data(self, roles: tuple[str, ...], model_input: tuple[int, int, int] | None,
                  model_preprocess: dict[str, Any] | None = None) -> DetectionData:
        """The built dataset at data.root. The model normalises and resizes its input itself: the preprocess
        records RGB scaled by 1/255 and the model's nominal input size."""
        size = tuple(model_input[1:]) if model_input else (800, 800)
        if self.cfg.data.channels not in (None, 3):
            raise UserError("detection models take RGB images: set data.channels to 3 (or leave it unset)")
        pre = Preprocess(channels=3, size=size, scale=1 / 255)
        # SSDlite's BatchNorm cannot train on one image (1 x 1 feature maps): never a 1-image batch
        min_batch = 2 if self.cfg.model.name.removeprefix("tv:").startswith("ssdlite") else 1
        if min_batch > self.cfg.data.batch_size:
            raise UserError(f"{self.cfg.model.name} needs data.batch_size >= 2 (BatchNorm on 1 x 1 feature maps)")
        from deepvision.datasets.detection.record import split_record

        data = load_detection_data(self.cfg.data, roles, pre, min_batch=min_batch)
        if not self.cfg.data.max_samples:  # a smoke run's first N images may hold some classes only
            refuse_classes_without_boxes(data)
        self.classes = data.classes
        self.splits_read = split_record(self.cfg.data)  # scoring its own splits or resuming compares with it
        return data

    def data_record(self) -> dict[str, Any] | None:
        return self.splits_read

    def notes(self, data: TaskData) -> list[str]:
        return detection_overlap_notes(data)  # type: ignore[arg-type]

    def num_outputs(self, num_classes: int) -> int:
        return num_classes + 1  # class 0 is the background

    def to_device(self, batch: tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]], device: torch.device
                  ) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
        images, targets = batch
        x = [img.to(device, non_blocking=True).float().div_(255) for img in images]
        y = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
        return x, y

    def train_loss(self, model: torch.nn.Module, x: list[torch.Tensor], y: list[dict[str, torch.Tensor]]
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not model.training:  # a full .train() walks every module, at every step
            model.train()
        losses = model(x, [{"boxes": t["boxes"], "labels": t["labels"]} for t in y])
        components = {LOSS_NAMES.get(k, k): v.float() for k, v in losses.items()}
        loss = sum(components.values())
        return loss, {k: v.detach() for k, v in components.items()}

    def eval_outputs(self, model: torch.nn.Module, x: list[torch.Tensor], y: list[dict[str, torch.Tensor]]
                     ) -> tuple[list[dict[str, torch.Tensor]], None]:
        was_training = model.training
        model.eval()
        with torch.inference_mode():
            out = model(x)
        model.train(was_training)
        return [{"boxes": o["boxes"].float().cpu(), "scores": o["scores"].float().cpu(),
                 "labels": o["labels"].cpu()} for o in out], None

    def meter(self, device: torch.device, phase: str) -> LossMeter | DetectionMeter:
        if phase == "train":
            return LossMeter(device, tuple(self.train_metrics))
        if not self.classes:
            raise RuntimeError("load_data must run before a validation meter is made")
        return DetectionMeter(self.classes)
