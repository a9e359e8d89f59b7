"""One augmentation plan, three executors: Pillow (file datasets), OpenCV (record loader) and torch
(in-memory tensors) apply the same plan to the same image and agree."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from deepvision.config.schema import AugmentConfig
from deepvision.data.augment_plan import AugmentPlan, draw_plan, sample_seed
from deepvision.data.loader import BatchLoader
from deepvision.data.preprocess import Preprocess
from deepvision.data.records.pipeline import apply_plan
from deepvision.data.tensor_loader import BatchAugment, TensorSource
from deepvision.data.transforms import SampleTransform

OUT = (24, 20)  # H, W


def _image(seed: int = 0, h: int = 36, w: int = 40) -> np.ndarray:
    """A smooth colour image (so interpolation differences stay small) with a marked corner."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 6, yy * 7, (xx + yy) * 3], -1) + rng.integers(0, 8, (h, w, 3))
    img[:4, -4:] = [250, 10, 10]
    return np.clip(img, 0, 255).astype(np.uint8)


def _run_all(img: np.ndarray, plan: AugmentPlan, aug: AugmentConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pre = Preprocess(channels=3, size=OUT)
    pil = SampleTransform(pre, aug, True).apply(Image.fromarray(img), plan).convert("RGB")
    cv = np.empty((*OUT, 3), np.uint8)
    apply_plan(img, plan, cv, aug.fill, aug.fill_mode)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].contiguous()
    tt = BatchAugment(aug, OUT).apply(x, [plan])[0].permute(1, 2, 0).numpy()
    return np.asarray(pil), cv, tt


@pytest.mark.parametrize("plan", [
    AugmentPlan(crop=(7, 3)),
    AugmentPlan(crop=(0, 12), mirror=True),
    AugmentPlan(mirror=True),  # centre crop
])
def test_crops_and_mirrors_are_pixel_exact_in_all_executors(plan):
    img = _image()
    pil, cv, tt = _run_all(img, plan, AugmentConfig(rand_crop=True, rand_mirror=True))
    assert np.array_equal(pil, cv) and np.array_equal(pil, tt)
    left, top = plan.crop or ((40 - 20) // 2, (36 - 24) // 2)
    want = img[top : top + 24, left : left + 20]
    assert np.array_equal(pil, want[:, ::-1] if plan.mirror else want)


@pytest.mark.parametrize("plan", [
    AugmentPlan(affine=True, angle=12.0, shear=0.1, crop=(5, 4), mirror=True),
    AugmentPlan(affine=True, angle=-30.0, crop=(10, 2)),
    AugmentPlan(affine=True, angle=8.0, zoom=(0.9, 1.1), crop=(6, 5), mirror=True),
    AugmentPlan(box=(4, 3, 30, 28), mirror=True),
])
def test_warps_and_resized_crops_agree_up_to_resampling(plan):
    img = _image(1)
    pil, cv, tt = _run_all(img, plan, AugmentConfig(rand_crop=True, rand_mirror=True, rotate=30,
                                                    max_shear_ratio=0.1, fill=0))
    for other in (cv, tt):
        diff = np.abs(pil.astype(int) - other.astype(int))
        assert diff.mean() < 4.0 and np.percentile(diff, 90) < 12  # same geometry, other interpolation


def test_quarter_turn_lands_the_corner_in_the_same_place_everywhere():
    img = _image(2, 24, 24)
    aug = AugmentConfig(rotate=90, rotation_mode="fixed", fill=0)
    plan = draw_plan(aug, (24, 24), (24, 24), random.Random(0))
    assert plan.affine and plan.angle == 90 and plan.crop is None and not plan.mirror
    out = [a for a in _run_all(img, plan, aug)]
    for a in out:  # counter-clockwise: the red top-right corner moves to the top-left
        assert a[1, 1, 0] > 200 and a[1, 1, 1] < 60


@pytest.mark.parametrize("fill_mode", ["constant", "nearest"])
def test_zoom_scales_each_axis_about_the_centre_in_every_executor(fill_mode):
    h, w = OUT
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 10 + 20, yy * 8 + 20, np.full_like(xx, 200)], -1).astype(np.uint8)  # ramps in x and y
    aug = AugmentConfig(zoom=0.5, fill=0, fill_mode=fill_mode)
    magnified = AugmentPlan(affine=True, zoom=(0.5, 1.0))  # x magnified twice, y unchanged
    for out in _run_all(img, magnified, aug):
        centre = out[6:18, 5:15].astype(float)
        dx, dy = np.diff(centre[:, :, 0], axis=1), np.diff(centre[:, :, 1], axis=0)
        assert abs(dx.mean() - 5) < 0.2 and np.abs(dx - 5).max() <= 1.01  # the x ramp: 10 per pixel -> 5 (rounded)
        assert abs(dy.mean() - 8) < 0.2 and np.abs(dy - 8).max() <= 1.01  # the y ramp unchanged
    shrunk = AugmentPlan(affine=True, zoom=(1.5, 1.5))  # zoomed out: the border is uncovered
    for out in _run_all(img, shrunk, aug):
        corner = out[0, 0].astype(int)
        if fill_mode == "nearest":  # the top-left pixel repeated
            assert np.abs(corner - img[0, 0]).max() <= 2
        else:
            assert corner.tolist() == [0, 0, 0]
        assert abs(int(out[h // 2, w // 2, 0]) - int(img[h // 2, w // 2, 0])) <= 6  # the centre stays put


def test_zoom_draws_two_factors_after_the_shear():
    aug = AugmentConfig(rotate=10, rotation_mode="uniform", zoom=0.1, rand_mirror=True)
    plan = draw_plan(aug, (48, 48), (48, 48), random.Random(5))
    rng = random.Random(5)
    angle = rng.uniform(-10, 10)
    zoom = (rng.uniform(0.9, 1.1), rng.uniform(0.9, 1.1))
    assert (plan.angle, plan.zoom, plan.mirror) == (angle, zoom, rng.random() < 0.5)
    assert AugmentConfig(zoom=0.1).active and draw_plan(AugmentConfig(zoom=0.1), (9, 9), (9, 9),
                                                        random.Random(0)).affine


def test_draws_follow_the_reference_order_and_depend_only_on_the_seed():
    aug = AugmentConfig(rand_crop=True, rand_mirror=True, rotate=10, max_shear_ratio=0.2)
    a = draw_plan(aug, (40, 36), OUT, random.Random(5))
    rng = random.Random(5)
    angle, shear = rng.uniform(-10, 10), rng.uniform(-0.2, 0.2)
    crop = (rng.randint(0, 20), rng.randint(0, 12))
    assert (a.angle, a.shear, a.crop, a.mirror) == (angle, shear, crop, rng.random() < 0.5)
    assert a == draw_plan(aug, (40, 36), OUT, random.Random(5))


def test_tensor_loader_gives_a_sample_the_augmentation_the_file_loader_gives_it():
    """Same (seed, epoch, index) -> same plan -> same crop and flip, in memory or from files."""
    images = torch.from_numpy(np.stack([_image(i) for i in range(6)])).permute(0, 3, 1, 2).contiguous()
    aug = AugmentConfig(rand_crop=True, rand_mirror=True)
    source = TensorSource(images, torch.arange(6), augment=BatchAugment(aug, OUT), training=True, seed=11)
    loader = BatchLoader(source, 3, training=True, seed=11)
    loader.set_epoch(2)
    order, batches = [], []
    for x, y in loader:
        order += y.tolist()
        batches.append(x)
    got = torch.cat(batches)
    transform = SampleTransform(Preprocess(channels=3, size=OUT, crop=True), aug, True)
    for k, index in enumerate(order):
        img = Image.fromarray(images[index].permute(1, 2, 0).numpy())
        want = transform(img, random.Random(sample_seed(11, 2, index)))
        assert torch.equal(got[k], want), index
