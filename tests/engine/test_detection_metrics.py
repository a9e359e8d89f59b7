"""VOC AP (all-point and 11-point) against hand-computed cases and the devkit's algorithm; COCO via pycocotools."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deepvision.engine.detection_metrics import box_iou, evaluate_coco, evaluate_voc, voc_ap


def _gt(boxes, labels=None, difficult=None):
    labels = labels if labels is not None else [1] * len(boxes)
    return {"boxes": np.asarray(boxes, float).reshape(-1, 4), "labels": labels,
            "difficult": difficult if difficult is not None else [False] * len(boxes)}


def _det(boxes, scores, labels=None):
    return {"boxes": np.asarray(boxes, float).reshape(-1, 4), "scores": scores,
            "labels": labels if labels is not None else [1] * len(boxes)}


def test_iou_properties_and_hand_value():
    a = np.array([[0, 0, 2, 2]])
    b = np.array([[1, 1, 3, 3]])
    assert box_iou(a, a)[0, 0] == 1.0
    assert box_iou(a, [[5, 5, 6, 6]])[0, 0] == 0.0
    assert box_iou(a, b)[0, 0] == pytest.approx(1 / 7) == box_iou(b, a)[0, 0]
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, (20, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 30, (20, 2))], 1)
    m = box_iou(boxes, boxes)
    assert np.allclose(m, m.T) and (m >= 0).all() and (m <= 1).all() and np.allclose(np.diag(m), 1)


def test_worked_example_precision_recall_and_both_aps():
    """4 objects, the top-3 predictions with 2 correct -> P = 0.667, R = 0.5."""
    gt = [_gt([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]])]
    det = [_det([[0, 0, 10, 10], [80, 80, 90, 90], [20, 0, 30, 10]], [0.9, 0.8, 0.7])]  # TP, FP, TP
    res = evaluate_voc(det, gt, ["sign"])
    c = res.per_class[0]
    assert c.precision[-1] == pytest.approx(2 / 3) and c.recall[-1] == pytest.approx(0.5)
    assert np.allclose(c.precision, [1, 1 / 2, 2 / 3]) and np.allclose(c.recall, [0.25, 0.25, 0.5])
    # envelope: precision 1 up to recall .25, then 2/3 up to .5 -> .25 * 1 + .25 * 2/3
    assert c.ap == pytest.approx(0.25 + 0.25 * 2 / 3) == res.map
    # 11-point: recall >= 0, .1, .2 -> 1; >= .3, .4, .5 -> 2/3; above -> 0
    assert evaluate_voc(det, gt, ["sign"], eleven_point=True).map == pytest.approx((3 + 3 * 2 / 3) / 11)
    assert "all-point" in res.definition and "11-point" in evaluate_voc(det, gt, ["s"], eleven_point=True).definition


def test_threshold_inclusive_duplicates_and_difficult():
    # IoU exactly 0.5 is a true positive
    assert evaluate_voc([_det([[0, 0, 2, 1]], [1.0])], [_gt([[0, 0, 1, 1]])], ["a"]).map == 1.0
    assert evaluate_voc([_det([[0, 0, 2.1, 1]], [1.0])], [_gt([[0, 0, 1, 1]])], ["a"]).map == 0.0
    # a second detection of a matched box is a false positive: prec 1, 1/2, 2/3 at recall .5, .5, 1
    gt = [_gt([[0, 0, 10, 10], [20, 0, 30, 10]])]
    det = [_det([[0, 0, 10, 10], [0, 0, 10, 9], [20, 0, 30, 10]], [0.9, 0.8, 0.7])]
    assert evaluate_voc(det, gt, ["a"]).map == pytest.approx(0.5 + 0.5 * 2 / 3)
    # difficult boxes: not positives, and detecting them is neither right nor wrong
    gt = [_gt([[0, 0, 10, 10], [20, 0, 30, 10]], difficult=[False, True])]
    det = [_det([[20, 0, 30, 10], [0, 0, 10, 10]], [0.9, 0.8])]
    res = evaluate_voc(det, gt, ["a"])
    assert res.map == 1.0 and res.per_class[0].positives == 1 and res.per_class[0].detections == 1
    # without the flag the same boxes give two positives, both found
    assert evaluate_voc(det, [_gt([[0, 0, 10, 10], [20, 0, 30, 10]])], ["a"]).per_class[0].positives == 2


def test_best_overlap_already_matched_is_a_false_positive():
    """The devkit matches the highest-IoU box even when it is taken (no fallback to the next one)."""
    gt = [_gt([[0, 0, 10, 10], [0, 0, 10, 12]])]
    det = [_det([[0, 0, 10, 10], [0, 0, 10, 10.5]], [0.9, 0.8])]  # the second overlaps box 1 best (.95 vs .875)
    res = evaluate_voc(det, gt, ["a"])
    assert res.per_class[0].true_positives == 1
    assert res.map == pytest.approx(0.5)


def test_classes_without_ground_truth_are_left_out_of_the_mean():
    gt = [_gt([[0, 0, 10, 10]], labels=[1]), _gt([[0, 0, 10, 10]], labels=[2])]
    det = [_det([[0, 0, 10, 10], [30, 30, 40, 40]], [0.9, 0.5], labels=[1, 3]), _det([], [], labels=[])]
    res = evaluate_voc(det, gt, ["a", "b", "c"])
    assert [c.ap for c in res.per_class][:2] == [1.0, 0.0] and math.isnan(res.per_class[2].ap)
    assert res.map == 0.5


def _devkit_voc_eval(dets, gts, k, thresh=0.5, use_07=False):
    """The devkit's voc_eval loop (py-faster-rcnn), continuous coordinates, >= threshold."""
    npos = sum(int(((np.asarray(g["labels"]) == k) & ~np.asarray(g["difficult"], bool)).sum()) for g in gts)
    ids, conf, bb = [], [], []
    for i, d in enumerate(dets):
        for b, s, lab in zip(d["boxes"], d["scores"], d["labels"]):
            if lab == k:
                ids.append(i)
                conf.append(s)
                bb.append(b)
    order = np.argsort(-np.asarray(conf), kind="stable")
    tp, fp = np.zeros(len(order)), np.zeros(len(order))
    seen = {i: np.zeros(len(g["boxes"]), bool) for i, g in enumerate(gts)}
    for d, j in enumerate(order):
        g = gts[ids[j]]
        mask = np.asarray(g["labels"]) == k
        bbgt = np.asarray(g["boxes"])[mask]
        ovmax, jmax = -np.inf, -1
        if len(bbgt):
            b = bb[j]
            iw = np.maximum(np.minimum(bbgt[:, 2], b[2]) - np.maximum(bbgt[:, 0], b[0]), 0)
            ih = np.maximum(np.minimum(bbgt[:, 3], b[3]) - np.maximum(bbgt[:, 1], b[1]), 0)
            inter = iw * ih
            uni = (b[2] - b[0]) * (b[3] - b[1]) + (bbgt[:, 2] - bbgt[:, 0]) * (bbgt[:, 3] - bbgt[:, 1]) - inter
            ov = inter / uni
            ovmax, jmax = ov.max(), ov.argmax()
        if ovmax >= thresh:
            idx = np.flatnonzero(mask)[jmax]
            if not g["difficult"][idx]:
                if not seen[ids[j]][idx]:
                    tp[d] = 1
                    seen[ids[j]][idx] = True
                else:
                    fp[d] = 1
        else:
            fp[d] = 1
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if use_07:
        return sum((np.max(prec[rec >= t]) if np.sum(rec >= t) else 0) / 11.0 for t in np.arange(0.0, 1.1, 0.1))
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


@pytest.mark.parametrize("use_07", [False, True])
def test_random_scenes_match_the_devkit_algorithm(use_07):
    rng = np.random.default_rng(7)
    gts, dets = [], []
    for _ in range(25):
        n = int(rng.integers(0, 5))
        xy = rng.uniform(0, 80, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(5, 30, (n, 2))], 1)
        labels = rng.integers(1, 4, n)
        gts.append({"boxes": boxes, "labels": labels, "difficult": rng.random(n) < 0.15})
        jitter = boxes + rng.normal(0, 3, boxes.shape)
        extra = rng.integers(0, 4)
        xy2 = rng.uniform(0, 80, (extra, 2))
        fps = np.concatenate([xy2, xy2 + rng.uniform(5, 30, (extra, 2))], 1)
        dets.append({"boxes": np.concatenate([jitter, fps, jitter[:1]]),
                     "scores": rng.uniform(0, 1, n + extra + min(n, 1)),
                     "labels": np.concatenate([np.where(rng.random(n) < 0.85, labels, rng.integers(1, 4, n)),
                                               rng.integers(1, 4, extra), labels[:1]])})
    res = evaluate_voc(dets, gts, ["a", "b", "c"], eleven_point=use_07)
    for k, c in enumerate(res.per_class, 1):
        assert c.ap == pytest.approx(_devkit_voc_eval(dets, gts, k, use_07=use_07), abs=1e-12)
    assert 0.2 < res.map < 1.0


def test_voc_ap_of_a_perfect_and_an_empty_curve():
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0])) == 1.0
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0]), eleven_point=True) == 1.0
    assert voc_ap(np.zeros(0), np.zeros(0)) == 0.0


def test_coco_metrics_by_pycocotools():
    pytest.importorskip("pycocotools")
    gt = [_gt([[0, 0, 10, 10]]), _gt([[0, 0, 40, 40]], labels=[2])]
    # box 1 found with IoU 0.62 (counts at IoU .50, .55, .60 of the ten thresholds); box 2 exactly
    det = [_det([[0, 0, 10, 6.2]], [0.9]), _det([[0, 0, 40, 40]], [0.8], labels=[2])]
    m = evaluate_coco(det, gt, ["small", "medium"], [(100, 100), (100, 100)])
    assert m["map50"] == pytest.approx(1.0) and m["map75"] == pytest.approx(0.5)
    assert m["map"] == pytest.approx((0.3 + 1.0) / 2)
    assert m["map_small"] == pytest.approx(0.3) and m["map_medium"] == pytest.approx(1.0)
    assert math.isnan(m["map_large"])
    empty = evaluate_coco([_det([], [], [])] * 2, gt, ["small", "medium"], [(100, 100)] * 2)
    assert empty["map"] == 0.0 and empty["map_small"] == 0.0 and empty["mar_medium"] == 0.0
    assert math.isnan(empty["map_large"]) and math.isnan(empty["mar_large"])  # no large box: n/a, as COCOeval says
    nothing = evaluate_coco([_det([], [], [])], [_gt([])], ["small"], [(100, 100)])
    assert all(math.isnan(v) for v in nothing.values())
