"""Box-aware training augmentation with torchvision.transforms.v2 and tv_tensors.BoundingBoxes.

The SSD pipeline of torchvision's detection references, each step optional: photometric distortion,
zoom-out (the image placed on a larger canvas filled with the ImageNet mean), SSD's random IoU crop,
horizontal flip; then boxes that became empty are removed with their labels. Resizing (keep the
aspect with min/max sides, or a fixed 300 x 300) is the detector's own transform (model.args
min_size/max_size; SSD's fixed size), so training and prediction resize identically.

The geometry is an `AugmentPlan` drawn by `augment_plan.draw_box_plan` from a generator seeded by
(seed, epoch, sample index), by the same rules as every other loader's plans (the mirror rule is
shared), so augmentation does not depend on the worker count and a resumed run replays it exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from deepvision.data.augment_plan import AugmentPlan, centres_inside, draw_box_plan, reseed
from deepvision.errors import UserError, suggest
from deepvision.safeload import shown_value

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
        ratio = options.get("zoom_out_max", 4.0)
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 1 <= ratio <= 16:  # SSD: 4
            raise UserError(f"data.options.zoom_out_max must be a number from 1 to 16, got {shown_value(ratio)}")
        return cls(hflip=bool(hflip), iou_crop=bool(options.get("iou_crop", False)),
                   zoom_out=bool(options.get("zoom_out", False)), zoom_out_max=float(ratio),
                   photometric=bool(options.get("photometric", False)))


class BoxTransform:
    """(uint8 C x H x W image, boxes (N, 4) xyxy pixels, labels (N,)) -> the same, augmented.

    The geometry (zoom-out canvas, IoU crop window, mirror) is the sample's `AugmentPlan`, drawn by
    `augment_plan.draw_box_plan` from the sample's seed; this class only applies it, with torchvision's
    box-aware functional ops, so the boxes move with the pixels. The photometric distortion (colour
    only, boxes untouched) is torchvision's, seeded by the same seed.
    """

    def __init__(self, augment: DetectionAugment) -> None:
        from torchvision.transforms import v2 as T

        self.augment = augment
        self.photometric = T.RandomPhotometricDistort(p=0.5) if augment.photometric else None
        self.sanitize = T.SanitizeBoundingBoxes(min_size=1.0)
        self._rng = random.Random()

    def plan(self, size: tuple[int, int], boxes: torch.Tensor, seed: int) -> AugmentPlan:
        """The sample's plan: image `size` (width, height), its boxes, the sample seed."""
        aug = self.augment
        return draw_box_plan(size, boxes.numpy().astype(np.float64), reseed(self._rng, seed), mirror=aug.hflip,
                             zoom_out_max=aug.zoom_out_max if aug.zoom_out else None, iou_crop=aug.iou_crop)

    def __call__(self, image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, extra: torch.Tensor,
                 seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """`extra` (N,) travels with the boxes (e.g. difficult flags); returns image, boxes, labels, extra."""
        from torchvision import tv_tensors
        from torchvision.transforms.v2 import functional as F

        if not self.augment.active:
            return image, boxes, labels, extra
        h, w = image.shape[-2:]
        plan = self.plan((w, h), boxes, seed)
        img: Any = tv_tensors.Image(image)
        if self.photometric is not None:
            with torch.random.fork_rng(devices=[]):
                # the CPU generator only: torch.manual_seed also seeds every accelerator backend, far slower
                # per call (lazy-init bookkeeping)
                torch.default_generator.manual_seed(seed)
                img = self.photometric(img)
        bb: Any = tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w))
        both = torch.stack([labels, extra.to(labels.dtype)], 1)
        if plan.canvas is not None:
            left, top, cw, ch = plan.canvas
            padding = [left, top, cw - w - left, ch - h - top]
            img, bb = F.pad(img, padding, fill=list(IMAGE_FILL)), F.pad(bb, padding)
        if plan.box is not None:
            left, top, cw, ch = plan.box
            outside = torch.from_numpy(~centres_inside(bb.numpy(), plan.box))
            img, bb = F.crop(img, top, left, ch, cw), F.crop(bb, top, left, ch, cw)
            bb[outside] = 0  # boxes whose centre the window lost: made empty, then removed
        if plan.mirror:
            img, bb = F.horizontal_flip(img), F.horizontal_flip(bb)
        if self.augment.iou_crop:  # the only step that can leave degenerate boxes
            img, target = self.sanitize((img, {"boxes": bb, "labels": both}))
            bb, both = target["boxes"], target["labels"]
        return (img.as_subclass(torch.Tensor), bb.as_subclass(torch.Tensor).float(), both[:, 0],
                both[:, 1].to(extra.dtype))


IMAGE_FILL = (124, 116, 104)  # the zoom-out canvas: the ImageNet mean, as torchvision's SSD recipe
