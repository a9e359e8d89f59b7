"""Box-aware training augmentation with torchvision.transforms.v2 and tv_tensors.BoundingBoxes.

The SSD pipeline of torchvision's detection references, each step optional: photometric distortion,
zoom-out (the image placed on a larger canvas filled with the ImageNet mean), SSD's random IoU crop,
horizontal flip; then boxes that became empty are removed with their labels. Resizing (keep the
aspect with min/max sides, or a fixed 300 x 300) is the detector's own transform (model.args
min_size/max_size; SSD's fixed size), so training and prediction resize identically.

Random numbers come from a generator seeded by (seed, epoch, sample index), so augmentation does not
depend on the worker count and a resumed run replays it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from deepvision.errors import UserError, suggest

OPTION_KEYS = ("iou_crop", "zoom_out", "zoom_out_max", "photometric", "train_difficult")


@dataclass(frozen=True)
class DetectionAugment:
    hflip: bool = False
    iou_crop: bool = False
    zoom_out: bool = False
    zoom_out_max: float = 4.0  # canvas side up to this multiple of the image (SSD: 4)
    photometric: bool = False

    @property
    def active(self) -> bool:
        return self.hflip or self.iou_crop or self.zoom_out or self.photometric

    @classmethod
    def from_options(cls, options: dict[str, Any], hflip: bool) -> DetectionAugment:
        """From `data.options` (iou_crop, zoom_out, zoom_out_max, photometric) and data.augment.rand_mirror."""
        for key in options:
            if key not in OPTION_KEYS:
                raise UserError(f"data.options.{key} is not a detection option{suggest(key, OPTION_KEYS)}; "
                                f"valid: {', '.join(OPTION_KEYS)}")
        aug = cls(hflip=bool(hflip), iou_crop=bool(options.get("iou_crop", False)),
                  zoom_out=bool(options.get("zoom_out", False)),
                  zoom_out_max=float(options.get("zoom_out_max", 4.0)),
                  photometric=bool(options.get("photometric", False)))
        if aug.zoom_out_max < 1:
            raise UserError(f"data.options.zoom_out_max must be >= 1, got {aug.zoom_out_max}")
        return aug


class BoxTransform:
    """(uint8 C x H x W image, boxes (N, 4) xyxy pixels, labels (N,)) -> the same, augmented."""

    def __init__(self, augment: DetectionAugment) -> None:
        from torchvision.transforms import v2 as T

        self.augment = augment
        self.photometric = T.RandomPhotometricDistort(p=0.5) if augment.photometric else None
        self.zoom_out = T.RandomZoomOut(fill={"others": 0, **_image_fill()}, side_range=(1.0, augment.zoom_out_max),
                                        p=0.5) if augment.zoom_out else None
        self.iou_crop = T.RandomIoUCrop() if augment.iou_crop else None
        self.flip = T.RandomHorizontalFlip(p=0.5) if augment.hflip else None
        self.sanitize = T.SanitizeBoundingBoxes(min_size=1.0)

    def __call__(self, image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, extra: torch.Tensor,
                 seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """`extra` (N,) travels with the boxes (e.g. difficult flags); returns image, boxes, labels, extra."""
        from torchvision import tv_tensors

        if not self.augment.active:
            return image, boxes, labels, extra
        h, w = image.shape[-2:]
        sample: Any = (tv_tensors.Image(image),
                       {"boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)),
                        "labels": torch.stack([labels, extra.to(labels.dtype)], 1)})
        with torch.random.fork_rng(devices=[]):
            # the CPU generator only: torch.manual_seed also seeds every accelerator backend, far slower
            # per call (lazy-init bookkeeping)
            torch.default_generator.manual_seed(seed)
            for step in (self.photometric, self.zoom_out):
                if step is not None:
                    sample = step(sample)
            if self.iou_crop is not None and len(boxes):  # a negative image has nothing to crop around
                sample = self.iou_crop(sample)
            if self.flip is not None:
                sample = self.flip(sample)
            if self.iou_crop is not None:  # the only step that can leave degenerate boxes
                sample = self.sanitize(sample)
        img, target = sample
        both = target["labels"]
        return (img.as_subclass(torch.Tensor), target["boxes"].as_subclass(torch.Tensor).float(), both[:, 0],
                both[:, 1].to(extra.dtype))


def _image_fill() -> dict[Any, Any]:
    from torchvision import tv_tensors

    return {tv_tensors.Image: (124, 116, 104)}  # the ImageNet mean, as torchvision's SSD recipe
