"""Per-sample transforms for file and record datasets (run inside loader workers).

Order of operations follows the reference record iterator: decode -> affine (rotation + shear) ->
crop -> mirror; mean/std normalisation happens later, on whole batches, on the device.
Random numbers come from a `random.Random` seeded per (seed, epoch, sample index), so augmentation
is reproducible whatever the number of workers, and resumed runs replay it exactly.
"""

from __future__ import annotations

import math
import random

from PIL import Image

from deepvision.config.schema import AugmentConfig
from deepvision.data.preprocess import Preprocess, center_crop, pil_to_tensor, resize_short_side


def sample_seed(seed: int, epoch: int, index: int) -> int:
    return (int(seed) * 0x9E3779B1 + int(epoch) * 0x85EBCA77 + int(index) * 0xC2B2AE3D) & 0xFFFFFFFFFFFF


class SampleTransform:
    """PIL image -> uint8 C x H x W tensor, for training (augmenting) or evaluation (centre crop)."""

    def __init__(self, preprocess: Preprocess, augment: AugmentConfig | None, training: bool) -> None:
        self.pre = preprocess
        self.aug = augment if (training and augment is not None) else AugmentConfig()
        self.training = training

    def __call__(self, img: Image.Image, rng: random.Random | None = None) -> torch.Tensor:  # noqa: F821
        pre, aug = self.pre, self.aug
        rng = rng or random.Random(0)
        th, tw = pre.size
        if aug.random_resized_crop:
            img = self._random_resized_crop(img, rng)
        else:
            if pre.resize:
                img = resize_short_side(img, pre.resize)
            elif img.size != (tw, th) and not (aug.rand_crop or pre.crop):
                img = img.resize((tw, th), Image.BILINEAR)
            if aug.rotate or aug.max_shear_ratio:
                img = self._affine(img, rng)
            w, h = img.size
            if aug.rand_crop and (w > tw or h > th):
                left, top = rng.randint(0, max(0, w - tw)), rng.randint(0, max(0, h - th))
                img = img.crop((left, top, left + tw, top + th))
                if img.size != (tw, th):
                    img = center_crop(img, (th, tw))
            elif (w, h) != (tw, th):
                img = center_crop(img, (th, tw))
        if aug.rand_mirror and rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return pil_to_tensor(img)

    def _affine(self, img: Image.Image, rng: random.Random) -> Image.Image:
        aug = self.aug
        angle = aug.rotate if aug.rotation_mode == "fixed" else rng.uniform(-aug.rotate, aug.rotate)
        shear = rng.uniform(-aug.max_shear_ratio, aug.max_shear_ratio) if aug.max_shear_ratio else 0.0
        a, b, d, e = inverse_affine(angle, shear)
        w, h = img.size
        cx, cy = w / 2, h / 2
        c = cx - a * cx - b * cy
        f = cy - d * cx - e * cy
        fill = aug.fill if img.mode == "L" else (aug.fill,) * len(img.getbands())
        return img.transform(img.size, Image.AFFINE, (a, b, c, d, e, f), resample=Image.BILINEAR, fillcolor=fill)

    def _random_resized_crop(self, img: Image.Image, rng: random.Random) -> Image.Image:
        th, tw = self.pre.size
        left, top, cw, ch = random_resized_crop_box(*img.size, self.aug, rng)
        return img.resize((tw, th), Image.BILINEAR, box=(left, top, left + cw, top + ch))


def random_resized_crop_box(w: int, h: int, aug: AugmentConfig, rng: random.Random) -> tuple[int, int, int, int]:
    """(left, top, width, height) of a random-resized crop (torchvision's rule: area in `aug.scale`,
    log-uniform aspect ratio in `aug.ratio`, 10 tries, then the centre square)."""
    area = w * h
    lo, hi = aug.scale
    rlo, rhi = (math.log(r) for r in aug.ratio)
    for _ in range(10):
        target = area * rng.uniform(lo, hi)
        ratio = math.exp(rng.uniform(rlo, rhi))
        cw = int(round(math.sqrt(target * ratio)))
        ch = int(round(math.sqrt(target / ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            return rng.randint(0, w - cw), rng.randint(0, h - ch), cw, ch
    side = min(w, h)
    return (w - side) // 2, (h - side) // 2, side, side


def inverse_affine(angle: float, shear: float) -> tuple[float, float, float, float]:
    """Inverse (output -> input) 2x2 matrix of: rotate `angle` degrees counter-clockwise, then
    shear x by `shear`, in pixel coordinates with y pointing down."""
    rad = math.radians(angle)
    cos, sin = math.cos(rad), math.sin(rad)
    # forward M = [[1, shear], [0, 1]] @ [[cos, sin], [-sin, cos]]
    m00, m01, m10, m11 = cos - shear * sin, sin + shear * cos, -sin, cos
    det = m00 * m11 - m01 * m10
    return m11 / det, -m01 / det, -m10 / det, m00 / det
