"""One augmentation plan per sample: the random parameters, drawn once by one function.

`draw_plan` turns an `AugmentConfig` and a per-sample `random.Random` into an `AugmentPlan` (angle, shear, per-axis
zoom, crop window or random-resized-crop box, mirror). The executors only apply plans: Pillow
(`transforms.SampleTransform`, file datasets), OpenCV (`records.pipeline`, the record loader) and torch
(`tensor_loader.BatchAugment`, in-memory tensors on the device). Box-aware (detection) samples get their plan from
`draw_box_plan` (SSD's zoom-out canvas, IoU crop window and the same mirror rule), which
`detection.transforms.BoxTransform` applies to the image and its boxes together. Every loader seeds the generator with
`sample_seed(seed, epoch, index)`, so a sample gets the same crop, flip and rotation whichever loader, worker count or
device produced it, and a resumed run replays them exactly.

The order of the draws is the reference record iterator's order of operations: affine (angle, then shear, then the x and
y zoom when `zoom` is set), then the crop window, then the mirror; a random-resized crop draws its box, then the mirror.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np

from deepvision.config.schema import AugmentConfig
from deepvision.data.imageio import max_image_pixels
from deepvision.errors import UserError

IOU_CROP_THRESHOLDS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)  # SSD's minimum-IoU options; 1.0: keep the whole image


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
    box: tuple[int, int, int, int] | None = None  # random-resized or IoU crop (left, top, width, height)
    mirror: bool = False
    canvas: tuple[int, int, int, int] | None = None  # zoom-out: the image at (left, top) of a (width, height) canvas


def draw_mirror(enabled: bool, rng: random.Random) -> bool:
    """The mirror rule of every plan: a horizontal flip with probability 1/2 when enabled (no draw otherwise)."""
    return bool(enabled and rng.random() < 0.5)


def draw_plan(aug: AugmentConfig, size: tuple[int, int], out_size: tuple[int, int], rng: random.Random) -> AugmentPlan:
    """The plan for one sample of width x height `size` (after any resize) and output (H, W) `out_size`."""
    w, h = size
    th, tw = out_size
    if aug.random_resized_crop:
        box = random_resized_crop_box(w, h, aug, rng)
        return AugmentPlan(box=box, mirror=draw_mirror(aug.rand_mirror, rng))
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
    return AugmentPlan(affine, angle, shear, zoom, crop, None, draw_mirror(aug.rand_mirror, rng))


def draw_box_plan(size: tuple[int, int], boxes: np.ndarray, rng: random.Random, *, mirror: bool = False,
                  zoom_out_max: float | None = None, iou_crop: bool = False) -> AugmentPlan:
    """The plan for one box-aware sample of width x height `size` with xyxy pixel `boxes` (N x 4), in
    the order of SSD's augmentation: zoom-out (with probability 1/2, the image at a random place on a
    canvas whose sides are 1 to `zoom_out_max` times its own; `canvas`), then an IoU crop (`box`, in
    canvas pixels, see `iou_crop_box`; none for an image without boxes), then the mirror."""
    w, h = size
    canvas = None
    if zoom_out_max is not None and rng.random() < 0.5:
        ratio = rng.uniform(1.0, zoom_out_max)
        cw, ch = int(w * ratio), int(h * ratio)
        left, top = int((cw - w) * rng.random()), int((ch - h) * rng.random())
        canvas = (left, top, cw, ch)
        boxes = boxes + np.array([left, top, left, top], boxes.dtype)
        w, h = cw, ch
    box = iou_crop_box(w, h, boxes, rng) if iou_crop and len(boxes) else None
    return AugmentPlan(box=box, mirror=draw_mirror(mirror, rng), canvas=canvas)


def centres_inside(boxes: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """Which xyxy boxes have their centre strictly inside the (left, top, width, height) window."""
    left, top, cw, ch = window
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    return (left < cx) & (cx < left + cw) & (top < cy) & (cy < top + ch)


def iou_crop_box(w: int, h: int, boxes: np.ndarray, rng: random.Random, trials: int = 40
                 ) -> tuple[int, int, int, int] | None:
    """SSD's random IoU crop (torchvision's RandomIoUCrop rule): draw a minimum IoU from
    IOU_CROP_THRESHOLDS (1.0: no crop, None), then up to `trials` windows with sides 0.3-1 of the
    image's and an aspect ratio in [0.5, 2] until one holds the centre of a box it overlaps by at
    least that IoU; with none found, draw the minimum again. (left, top, width, height)."""
    while True:
        min_iou = rng.choice(IOU_CROP_THRESHOLDS)
        if min_iou >= 1.0:
            return None
        for _ in range(trials):
            cw, ch = int(w * rng.uniform(0.3, 1.0)), int(h * rng.uniform(0.3, 1.0))
            if cw == 0 or ch == 0 or not 0.5 <= cw / ch <= 2.0:
                continue
            window = (int((w - cw) * rng.random()), int((h - ch) * rng.random()), cw, ch)
            inside = centres_inside(boxes, window)
            if inside.any() and _iou(boxes[inside], window).max() >= min_iou:
                return window


def _iou(boxes: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    left, top, cw, ch = window
    ix = np.clip(np.minimum(boxes[:, 2], left + cw) - np.maximum(boxes[:, 0], left), 0, None)
    iy = np.clip(np.minimum(boxes[:, 3], top + ch) - np.maximum(boxes[:, 1], top), 0, None)
    inter = ix * iy
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + cw * ch - inter)


def random_resized_crop_box(w: int, h: int, aug: AugmentConfig, rng: random.Random) -> tuple[int, int, int, int]:
    """(left, top, width, height) of a random-resized crop (torchvision's rule: area in `aug.scale`,
    log-uniform aspect ratio in `aug.ratio`, 10 tries, then the centre square)."""
    area = w * h
    lo, hi = aug.scale
    rlo, rhi = (math.log(r) for r in aug.ratio)
    for _ in range(10):
        target = area * rng.uniform(lo, hi)
        ratio = math.exp(rng.uniform(rlo, rhi))
        cw, ch = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            return rng.randint(0, w - cw), rng.randint(0, h - ch), cw, ch
    side = min(w, h)
    return (w - side) // 2, (h - side) // 2, side, side


def prepared_size(size: tuple[int, int], out_size: tuple[int, int], resize: int | None, aug: AugmentConfig,
                  crop: bool = False) -> tuple[int, int] | None:
    """The deterministic resize before a plan is drawn, as (width, height), or None to leave the image as
    it is: a random-resized crop works on the original image; `resize` scales the shorter side to it
    (im2rec's rule); else the image is resized to the output (H, W) unless a crop (random, or `crop`:
    centre) takes the window. Every executor applies it with its own resampling."""
    w, h = size
    th, tw = out_size
    if aug.random_resized_crop:
        return None
    if resize:
        return None if min(w, h) == resize else short_side_size((w, h), resize)
    return (tw, th) if (w, h) != (tw, th) and not (aug.rand_crop or crop) else None


def short_side_size(size: tuple[int, int], resize: int) -> tuple[int, int]:
    """(width, height) of a `size` image whose shorter side is scaled to `resize`, keeping the aspect
    ratio (im2rec's rule). UserError when the result is above the pixel limit (`imageio.max_image_pixels`):
    a 1 kB 999,999 x 1 PNG resized to a shorter side of 256 would be a 65-gigapixel image."""
    w, h = size
    new = (resize, h * resize // w) if h > w else (w * resize // h, resize)
    limit = max_image_pixels()
    if new[0] * new[1] > limit:
        ratio = max(w, h) / min(w, h)
        raise UserError(f"a {w:,} x {h:,} image (aspect {ratio:,.0f}:1) resized to a shorter side of {resize} "
                        f"would be {new[0]:,} x {new[1]:,} = {new[0] * new[1]:,} pixels, above the pixel limit of "
                        f"{limit:,}; crop it to a usual aspect ratio")
    return new


def inverse_affine(angle: float, shear: float, zoom: tuple[float, float] = (1.0, 1.0)
                   ) -> tuple[float, float, float, float]:
    """Inverse (output -> input) 2x2 matrix of: rotate `angle` degrees counter-clockwise, then
    shear x by `shear`, in pixel coordinates with y pointing down; `zoom` (zx, zy) then scales the
    output coordinates before that map, as Keras' zoom_range does (a zoom above 1 shows more of the image, smaller)."""
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
