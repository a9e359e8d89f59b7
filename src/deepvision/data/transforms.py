"""Per-sample transforms for file and record datasets (run inside loader workers).

Order of operations follows the reference record iterator: decode -> affine (rotation + shear) ->
crop -> mirror; mean/std normalisation happens later, on whole batches, on the device. The random
parameters come from the sample's `AugmentPlan` (`data.augment_plan`), drawn from a `random.Random`
seeded per (seed, epoch, sample index): augmentation is reproducible whatever the number of workers,
resumed runs replay it exactly, and the OpenCV and torch executors apply the same plans.
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image

from deepvision.config.schema import AugmentConfig
from deepvision.data.augment_plan import AugmentPlan, draw_plan, inverse_affine, prepared_size
from deepvision.data.preprocess import Preprocess, center_crop, pil_to_tensor


class SampleTransform:
    """PIL image -> uint8 C x H x W tensor, for training (augmenting) or evaluation (centre crop)."""

    def __init__(self, preprocess: Preprocess, augment: AugmentConfig | None, training: bool) -> None:
        self.pre = preprocess
        self.aug = augment if (training and augment is not None) else AugmentConfig()
        self.training = training

    def __call__(self, img: Image.Image, rng: random.Random | None = None) -> torch.Tensor:  # noqa: F821
        img = self.prepare(img)
        plan = draw_plan(self.aug, img.size, self.pre.size, rng or random.Random(0))
        return pil_to_tensor(self.apply(img, plan))

    def prepare(self, img: Image.Image) -> Image.Image:
        """The deterministic steps before the random ones (`augment_plan.prepared_size`)."""
        target = prepared_size(img.size, self.pre.size, self.pre.resize, self.aug, self.pre.crop)
        return img if target is None else img.resize(target, Image.BILINEAR)

    def apply(self, img: Image.Image, plan: AugmentPlan) -> Image.Image:
        """Execute `plan` on a prepared image with Pillow: affine, crop (else centre crop), mirror."""
        th, tw = self.pre.size
        if plan.box is not None:
            left, top, cw, ch = plan.box
            img = img.resize((tw, th), Image.BILINEAR, box=(left, top, left + cw, top + ch))
        else:
            if plan.affine:
                img = self._affine(img, plan.angle, plan.shear, plan.zoom)
            w, h = img.size
            if plan.crop is not None:
                left, top = plan.crop
                img = img.crop((left, top, left + tw, top + th))
                if img.size != (tw, th):
                    img = center_crop(img, (th, tw))
            elif (w, h) != (tw, th):
                img = center_crop(img, (th, tw))
        if plan.mirror:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return img

    def _affine(self, img: Image.Image, angle: float, shear: float, zoom: tuple[float, float] = (1.0, 1.0)
                ) -> Image.Image:
        a, b, d, e = inverse_affine(angle, shear, zoom)
        w, h = img.size
        cx, cy = w / 2, h / 2
        c, f = cx - a * cx - b * cy, cy - d * cx - e * cy
        fill = self.aug.fill if img.mode == "L" else (self.aug.fill,) * len(img.getbands())
        if self.aug.fill_mode == "nearest":  # edge pixels repeated: warp from an edge-padded copy
            pad = max(w, h)
            padded = np.pad(np.asarray(img), ((pad, pad), (pad, pad)) + ((0, 0),) * (len(img.getbands()) > 1),
                            mode="edge")
            source = Image.fromarray(padded, img.mode)
            return source.transform(img.size, Image.AFFINE, (a, b, c + pad, d, e, f + pad), resample=Image.BILINEAR,
                                    fillcolor=fill)
        return img.transform(img.size, Image.AFFINE, (a, b, c, d, e, f), resample=Image.BILINEAR, fillcolor=fill)
