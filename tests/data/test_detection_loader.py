"""Box-aware augmentation and the detection loader: boxes follow the pixels, order and augmentation depend
only on (seed, epoch), difficult boxes stay out of training targets."""

from __future__ import annotations

import pytest
import torch

from deepvision.config.schema import DataConfig
from deepvision.data.detection.loader import DetectionSource, load_detection_data
from deepvision.data.detection.transforms import BoxTransform, DetectionAugment
from deepvision.data.loader import BatchLoader
from deepvision.data.preprocess import Preprocess
from deepvision.errors import UserError
from tests.detection_helpers import built_fake

PRE = Preprocess(channels=3, size=(96, 96))


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    return built_fake(tmp_path_factory.mktemp("det"), images=12, size=96, seed=5)


def _image_with_boxes():
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 60, 80), dtype=torch.uint8, generator=g)
    boxes = torch.tensor([[5.0, 6.0, 25.0, 30.0], [40.0, 10.0, 70.0, 50.0]])
    return image, boxes, torch.tensor([1, 2]), torch.tensor([False, True])


def test_flip_moves_boxes_with_the_pixels():
    image, boxes, labels, diff = _image_with_boxes()
    t = BoxTransform(DetectionAugment(hflip=True))
    flipped = 0
    for seed in range(8):
        img, b, lab, d = t(image, boxes, labels, diff, seed)
        assert lab.tolist() == [1, 2] and d.tolist() == [False, True]
        if torch.equal(img, image):
            assert torch.equal(b, boxes)
        else:
            flipped += 1
            assert torch.equal(img, image.flip(-1))
            assert torch.allclose(b, torch.stack([80 - boxes[:, 2], boxes[:, 1], 80 - boxes[:, 0], boxes[:, 3]], 1))
    assert 0 < flipped < 8


def test_seeding_touches_only_the_cpu_generator_and_leaves_global_state(monkeypatch):
    """torch.manual_seed also seeds every accelerator backend (~0.9 ms a call): it doubled the detection
    loader's CPU time per image. The transform seeds the CPU generator alone and restores it."""
    image, boxes, labels, diff = _image_with_boxes()
    t = BoxTransform(DetectionAugment(hflip=True, zoom_out=True, iou_crop=True, photometric=True))
    first = [t(image, boxes, labels, diff, seed) for seed in range(4)]

    def refuse(*_args, **_kwargs):
        raise AssertionError("torch.manual_seed called per sample")

    monkeypatch.setattr(torch, "manual_seed", refuse)
    state = torch.get_rng_state()
    again = [t(image, boxes, labels, diff, seed) for seed in range(4)]
    assert torch.equal(torch.get_rng_state(), state)
    for a, b in zip(first, again):
        assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_zoom_out_keeps_box_contents_and_crop_keeps_boxes_inside():
    image, boxes, labels, diff = _image_with_boxes()
    zoom = BoxTransform(DetectionAugment(zoom_out=True))
    grown = 0
    for seed in range(6):
        img, b, lab, d = zoom(image, boxes, labels, diff, seed)
        grown += img.shape[-1] > 80
        for (x1, y1, x2, y2), (u1, v1, u2, v2) in zip(b.round().int().tolist(), boxes.int().tolist()):
            assert torch.equal(img[:, y1:y2, x1:x2], image[:, v1:v2, u1:u2])
    assert grown
    crop = BoxTransform(DetectionAugment(iou_crop=True, photometric=True))
    for seed in range(10):
        img, b, lab, d = crop(image, boxes, labels, diff, seed)
        h, w = img.shape[-2:]
        assert len(b) == len(lab) == len(d) and img.dtype == torch.uint8
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all() and (b[:, 2] > b[:, 0]).all()
        assert all((lab_ == 2) == d_ for lab_, d_ in zip(lab.tolist(), d.tolist()))  # flags travel with their boxes


def test_same_seed_and_epoch_same_batches_whatever_the_workers(voc_root):
    cfg = DataConfig(source="detection", root=str(voc_root), batch_size=4, workers=0,
                     options={"iou_crop": True, "photometric": True})
    cfg.augment.rand_mirror = True
    data = load_detection_data(cfg, ("train", "val"), PRE)
    a = data.loaders(("train",), seed=3)["train"]
    cfg.workers = 2
    b = load_detection_data(cfg, ("train",), PRE).loaders(("train",), seed=3)["train"]
    try:
        for epoch in (0, 1):
            a.set_epoch(epoch)
            b.set_epoch(epoch)
            batches_a, batches_b = list(a), list(b)
            assert len(batches_a) == len(a) == 2  # 9 images: 4 + 5 (a lone last image joins the batch before)
            for (xa, ya), (xb, yb) in zip(batches_a, batches_b):
                assert isinstance(xa, list) and all(torch.equal(p, q) for p, q in zip(xa, xb))
                assert all(torch.equal(p["boxes"], q["boxes"]) for p, q in zip(ya, yb))
            if epoch == 0:
                first = [t["image_id"].item() for _, ys in batches_a for t in ys]
        assert [t["image_id"].item() for _, ys in batches_a for t in ys] != first  # reshuffled per epoch
    finally:
        b.close()


def test_training_targets_leave_out_difficult_boxes(voc_root):
    cfg = DataConfig(source="detection", root=str(voc_root), batch_size=16, workers=0, test=None)
    data = load_detection_data(cfg, ("train",), PRE)
    with_difficult = [i for i, im in enumerate(data.splits["train"]) if im.difficult.any()]
    assert with_difficult
    i = with_difficult[0]
    _, target = data.dataset("train")[(i, 0)]
    assert not target["difficult"].any() and len(target["boxes"]) == int((~data.splits["train"][i].difficult).sum())
    data.train_difficult = True
    _, full = data.dataset("train")[(i, 0)]
    assert full["difficult"].any() and len(full["boxes"]) == len(data.splits["train"][i].labels)


def test_roles_fractions_and_errors(voc_root):
    cfg = DataConfig(source="detection", root=str(voc_root), val_fraction=0.25, workers=0)
    data = load_detection_data(cfg, ("train", "val", "test"), PRE)
    assert data.counts() == {"train": 7, "val": 2, "test": 3}
    files = [im.file for r in ("train", "val") for im in data.splits[r]]
    assert len(set(files)) == 9
    with pytest.raises(UserError, match="data.source: detection"):
        load_detection_data(DataConfig(source="folder", root=str(voc_root)), ("train",), PRE)
    with pytest.raises(UserError, match="split 'nope' not found.*available: train, test"):
        load_detection_data(DataConfig(source="detection", root=str(voc_root), val="nope"), ("train", "val"), PRE)
    with pytest.raises(UserError, match="iou_crops is not a detection option.*did you mean: iou_crop"):
        load_detection_data(DataConfig(source="detection", root=str(voc_root), options={"iou_crops": True}),
                            ("train",), PRE)


def test_a_trailing_single_training_image_joins_the_batch_before(voc_root):
    data = load_detection_data(DataConfig(source="detection", root=str(voc_root), batch_size=4, workers=0),
                               ("train",), PRE)
    ds = data.dataset("train")  # 9 images: 4 + 5, never 4 + 4 + 1
    for min_batch in (1, 2):
        loader = BatchLoader(DetectionSource(ds), 4, training=True, workers=0, min_batch=min_batch)
        assert [len(x) for x, _ in loader] == [4, 5]
    evaluation = BatchLoader(DetectionSource(ds), 4, training=False, workers=0, min_batch=2)
    assert len(evaluation) == 3  # evaluation scores every image
    one = BatchLoader(DetectionSource(ds), 9, training=True, workers=0, min_batch=2, max_steps=None)
    assert [len(x) for x, _ in one] == [9]


def test_worker_batches_share_one_storage_per_field_and_equal_the_inline_ones(voc_root):
    """Batches made by worker processes hand over one storage per field (not one per tensor) and hold
    exactly what an in-process loader yields."""
    cfg = DataConfig(source="detection", root=str(voc_root), batch_size=4)
    data = load_detection_data(cfg, ("train",), PRE)
    ds = data.dataset("train")
    inline = BatchLoader(DetectionSource(ds), 4, training=True, seed=3, workers=0)
    forked = BatchLoader(DetectionSource(ds), 4, training=True, seed=3, workers=1)
    try:
        (xa, ya), (xb, yb) = next(iter(inline)), next(iter(forked))
    finally:
        inline.close()
        forked.close()
    assert len({x.untyped_storage().data_ptr() for x in xb}) == 1
    assert len({t["boxes"].untyped_storage().data_ptr() for t in yb}) == 1
    for a, b in zip(xa, xb):
        assert torch.equal(a, b)
    for a, b in zip(ya, yb):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)


def test_one_seed_one_plan_and_boxes_follow_the_pixels():
    """The box-aware path draws its geometry as an AugmentPlan (draw_box_plan) and only applies it: the
    same seed gives the same plan and output, and every box kept still frames the pixels it framed."""
    import random

    import numpy as np

    from deepvision.data.augment_plan import draw_box_plan, reseed

    image = torch.zeros(3, 60, 80, dtype=torch.uint8)
    boxes = torch.tensor([[5.0, 6.0, 25.0, 30.0], [40.0, 10.0, 70.0, 50.0]])
    for k, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):  # a distinct gradient inside each box
        patch = torch.arange((y2 - y1) * (x2 - x1), dtype=torch.int64).reshape(y2 - y1, x2 - x1)
        image[:, y1:y2, x1:x2] = ((patch * (7 + 3 * k)) % 200 + 30).to(torch.uint8)
    aug = DetectionAugment(hflip=True, zoom_out=True, iou_crop=True)
    t = BoxTransform(aug)
    seen = {"canvas": 0, "box": 0, "mirror": 0}
    compared = 0
    for seed in range(40):
        plan = t.plan((80, 60), boxes, seed)
        again = draw_box_plan((80, 60), boxes.numpy().astype(np.float64), reseed(random.Random(), seed), mirror=True,
                              zoom_out_max=aug.zoom_out_max, iou_crop=True)
        assert plan == again  # the plan is a pure function of the seed
        for key in seen:
            seen[key] += getattr(plan, key) not in (None, False)
        img, b, lab, d = t(image, boxes, torch.tensor([1, 2]), torch.tensor([False, True]), seed)
        again_img, again_b, *_ = t(image, boxes, torch.tensor([1, 2]), torch.tensor([False, True]), seed)
        assert torch.equal(img, again_img) and torch.equal(b, again_b)
        # the image size follows the plan: canvas, then crop window
        w, h = (plan.canvas[2], plan.canvas[3]) if plan.canvas else (80, 60)
        if plan.box:
            w, h = plan.box[2], plan.box[3]
        assert tuple(img.shape[-2:]) == (h, w)
        for (x1, y1, x2, y2), label in zip(b.round().int().tolist(), lab.tolist()):
            u1, v1, u2, v2 = boxes[label - 1].int().tolist()
            if (x2 - x1, y2 - y1) != (u2 - u1, v2 - v1):
                continue  # cut by the crop window
            want = image[:, v1:v2, u1:u2]
            assert torch.equal(img[:, y1:y2, x1:x2], want.flip(-1) if plan.mirror else want)
            compared += 1
    assert all(seen.values()) and compared > 40, (seen, compared)  # every step of the plan happened for some seed


@pytest.mark.parametrize("value", [1_000_000, float("nan"), 0.5, "4", True])
def test_zoom_out_max_is_a_bounded_number(value):
    """A canvas 10^6 images wide asks for petabytes at the first batch; NaN crashed the plan."""

    with pytest.raises(UserError, match=r"data.options.zoom_out_max must be a number from 1 to 16"):
        DetectionAugment.from_options({"zoom_out": True, "zoom_out_max": value}, True)
    assert DetectionAugment.from_options({"zoom_out": True, "zoom_out_max": 16}, True).zoom_out_max == 16.0


def test_a_test_image_listed_in_train_is_refused_before_training(tmp_path):
    """One image in train.json and test.json would be trained on and scored: training refuses it in one line."""
    import json

    root = built_fake(tmp_path, images=8, size=48)
    train, test = (json.loads((root / f"{s}.json").read_text()) for s in ("train", "test"))
    test["images"].append(train["images"][2])
    (root / "test.json").write_text(json.dumps(test))
    cfg = DataConfig(source="detection", root=str(root), val=None, workers=0)
    with pytest.raises(UserError, match=rf"^{train['images'][2]['file']} is listed twice, as image 3 of .*train.json "
                                        rf"and image 3 of .*test.json; an image belongs to one split, once"):
        load_detection_data(cfg, ("train", "val", "test"), PRE)
