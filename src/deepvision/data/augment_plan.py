"""One augmentation plan per sample: the random parameters, drawn once by one function.

`draw_plan` turns an `AugmentConfig` and a per-sample `random.Random` into an `AugmentPlan` (angle,
shear, per-axis zoom, crop window or random-resized-crop box, mirror). The three executors only apply plans:
Pillow (`transforms.SampleTransform`, file datasets), OpenCV (`records.pipeline`, the record loader)
and torch (`tensor_loader.BatchAugment`, in-memory tensors on the device). Every loader seeds the
generator with `sample_seed(seed, epoch, index)`, so a sample gets the same crop, flip and rotation
whichever loader, worker count or device produced it, and a resumed run replays them exactly.

The order of the draws is the reference record iterator's order of operations: affine (angle, then
shear, then the x and y zoom when `zoom` is set), then the crop window, then the mirror; a
random-resized crop draws its box, then the mirror.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from deepvision.config.schema import AugmentConfig


def sample_seed(seed: int, epoch: int, index: int) -> int:
    return (int(seed) * 0x9E3779B1 + int(epoch) * 0x85EBCA77 + int(index) * 0xC2B2AE3D) & 0xFFFFFFFFFFFF


@dataclass(frozen=True)
class AugmentPlan:
    """What to do to one sample. `crop`/`box` are in the pixels of the image the plan was drawn for."""

    affine: bool = False  # zoom, then rotate by `angle` degrees counter-clockwise, then shear x by `shear`
    angle: float = 0.0
    shear: float = 0.0
    zoom: tuple[float, float] = (1.0, 1.0)  # (x, y) input pixels per output pixel: > 1 zooms out (Keras)
    crop: tuple[int, int] | None = None  # (left, top) of the output-size window; None: centre
    box: tuple[int, int, int, int] | None = None  # random-resized crop (left, top, width, height)
    mirror: bool = False



def draw_plan(aug: AugmentConfig, size: tuple[int, int], out_size: tuple[int, int], rng: random.Random
              ) -> AugmentPlan:
    """The plan for one sample of width x height `size` (after any resize) and output (H, W) `out_size`."""
    w, h = size
    th, tw = out_size
    if aug.random_resized_crop:
        box = random_resized_crop_box(w, h, aug, rng)
        return AugmentPlan(box=box, mirror=bool(aug.rand_mirror and rng.random() < 0.5))
    affine = bool(aug.rotate or aug.max_shear_ratio or aug.zoom)
    angle = shear = 0.0
    zoom = (1.0, 1.0)
    if affine:
        angle = aug.rotate if aug.rotation_mode == "fixed" else rng.uniform(-aug.rotate, aug.rotate)
        shear = rng.uniform(-aug.max_shear_ratio, aug.max_shear_ratio) if aug.max_shear_ratio else 0.0
        if aug.zoom:
            zoom = (rng.uniform(1 - aug.zoom, 1 + aug.zoom), rng.uniform(1 - aug.zoom, 1 + aug.zoom))
    crop = None
    if aug.rand_crop and (w > tw or h > th):
        crop = (rng.randint(0, max(0, w - tw)), rng.randint(0, max(0, h - th)))
    return AugmentPlan(affine, angle, shear, zoom, crop, None, bool(aug.rand_mirror and rng.random() < 0.5))


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


def inverse_affine(angle: float, shear: float, zoom: tuple[float, float] = (1.0, 1.0)
                   ) -> tuple[float, float, float, float]:
    """Inverse (output -> input) 2x2 matrix of: rotate `angle` degrees counter-clockwise, then
    shear x by `shear`, in pixel coordinates with y pointing down; `zoom` (zx, zy) then scales the
    output coordinates before that map, as Keras' zoom_range does (a zoom above 1 shows more of the
    image, smaller)."""
    rad = math.radians(angle)
    cos, sin = math.cos(rad), math.sin(rad)
    # forward M = [[1, shear], [0, 1]] @ [[cos, sin], [-sin, cos]]
    m00, m01, m10, m11 = cos - shear * sin, sin + shear * cos, -sin, cos
    det = m00 * m11 - m01 * m10
    zx, zy = zoom
    return m11 / det * zx, -m01 / det * zy, -m10 / det * zx, m00 / det * zy


_seed_c = random.Random.__mro__[1].seed  # the C seeding random.Random(int) ends up calling


def reseed(rng: random.Random, seed: int) -> random.Random:
    """Put `rng` in the state random.Random(seed) starts in, without building a new generator."""
    _seed_c(rng, seed)
    rng.gauss_next = None
    return rng
