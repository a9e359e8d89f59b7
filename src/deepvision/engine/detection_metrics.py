"""Detection metrics: PASCAL VOC AP@0.5 per class and mAP (docs/detection.md), and COCO mAP via pycocotools.

VOC (the devkit's `voc_eval`, in continuous coordinates, without the legacy +1 pixel):

1. per class, pool the detections of the whole set and sort them by descending score (stable);
2. each detection takes the ground-truth box of its image and class with the highest IoU; IoU >= 0.5
   with a box not yet matched is a true positive, with a matched one a false positive (duplicate);
   a match to a *difficult* box counts as neither, and difficult boxes are not in the positives;
3. AP is the area under the precision envelope (precision made non-increasing): all-point
   (VOC2010+, the default) or the mean of the envelope at recall 0, 0.1, ..., 1 (VOC2007 11-point).

mAP is the mean over classes that have at least one (non-difficult) ground-truth box; classes with
none have AP NaN. COCO numbers use pycocotools' COCOeval (101-point AP averaged over IoU .50:.95);
difficult boxes are given as crowd regions so they are ignored the same way, and areas are box areas.
This lives in the engine (below `deepvision.evaluation`) because the training loop's validation
meter computes these numbers every epoch.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

COCO_KEYS = ("map", "map50", "map75", "map_small", "map_medium", "map_large", "mar_1", "mar_10", "mar_100",
             "mar_small", "mar_medium", "mar_large")


def _np(x: Any, dtype: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=dtype)
    return a.reshape(shape) if shape is not None else a.reshape(-1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes in continuous coordinates."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def voc_ap(recall: np.ndarray, precision: np.ndarray, eleven_point: bool = False) -> float:
    """Area under the precision envelope (all-point), or the VOC2007 11-point mean."""
    recall, precision = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
    if eleven_point:
        return float(np.mean([precision[recall >= t].max() if (recall >= t).any() else 0.0
                              for t in np.linspace(0, 1, 11)]))
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # the envelope: non-increasing from the right
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


@dataclass
class ClassAP:
    name: str
    ap: float  # NaN when the class has no ground truth
    positives: int  # non-difficult ground-truth boxes
    detections: int
    true_positives: int
    precision: np.ndarray = field(repr=False)  # after each detection, in score order
    recall: np.ndarray = field(repr=False)


@dataclass
class VOCResult:
    per_class: list[ClassAP]
    map: float
    iou_threshold: float
    eleven_point: bool

    @property
    def definition(self) -> str:
        kind = "11-point (VOC2007)" if self.eleven_point else "all-point (VOC2010+)"
        return f"PASCAL VOC AP@{self.iou_threshold:g}, {kind}, difficult boxes ignored"


def evaluate_voc(
    detections: Sequence[dict[str, Any]],
    ground_truth: Sequence[dict[str, Any]],
    classes: Sequence[str],
    iou_threshold: float = 0.5,
    eleven_point: bool = False,
) -> VOCResult:
    """VOC AP per class and mAP (see the module doc).

    `detections[i]` and `ground_truth[i]` describe image i: detections have boxes (N, 4) xyxy, scores
    and labels; ground truth has boxes, labels and optionally difficult. Labels are 1-based ids
    into `classes` (0 is the background). Tensors or arrays are accepted.
    """
    if len(detections) != len(ground_truth):
        raise ValueError(f"{len(detections)} detection entries for {len(ground_truth)} images")
    gts = []
    for g in ground_truth:
        labels = _np(g["labels"], np.int64)
        diff = _np(g["difficult"], bool) if "difficult" in g and g["difficult"] is not None else \
            np.zeros(len(labels), bool)
        gts.append((_np(g["boxes"], np.float64, (-1, 4)), labels, diff))
    dets = [(_np(d["boxes"], np.float64, (-1, 4)), _np(d["scores"], np.float64), _np(d["labels"], np.int64))
            for d in detections]
    results = []
    for k, name in enumerate(classes, 1):
        positives = sum(int(((lab == k) & ~dif).sum()) for _, lab, dif in gts)
        image_ids, scores, boxes = [], [], []
        for i, (b, s, lab) in enumerate(dets):
            sel = lab == k
            if sel.any():
                image_ids.append(np.full(int(sel.sum()), i))
                scores.append(s[sel])
                boxes.append(b[sel])
        if not scores:
            ap = float("nan") if positives == 0 else 0.0
            results.append(ClassAP(name, ap, positives, 0, 0, np.zeros(0), np.zeros(0)))
            continue
        image_ids_a, scores_a, boxes_a = np.concatenate(image_ids), np.concatenate(scores), np.concatenate(boxes)
        order = np.argsort(-scores_a, kind="stable")
        tp = np.zeros(len(order))
        fp = np.zeros(len(order))
        matched: dict[int, np.ndarray] = {}
        for rank, j in enumerate(order):
            img = int(image_ids_a[j])
            g_boxes, g_labels, g_diff = gts[img]
            sel = g_labels == k
            if not sel.any():
                fp[rank] = 1
                continue
            overlaps = box_iou(boxes_a[j], g_boxes[sel])[0]
            best = int(np.argmax(overlaps))
            if overlaps[best] < iou_threshold:
                fp[rank] = 1
                continue
            if g_diff[sel][best]:
                continue  # matched a difficult box: ignored
            used = matched.setdefault(img, np.zeros(int(sel.sum()), bool))
            if used[best]:
                fp[rank] = 1  # a second match to a matched box: duplicate
            else:
                used[best] = True
                tp[rank] = 1
        ctp, cfp = np.cumsum(tp), np.cumsum(fp)
        counted = (ctp + cfp) > 0
        precision = np.where(counted, ctp / np.maximum(ctp + cfp, 1e-12), 1.0)
        # detections matching difficult boxes are dropped from the curve (they are neither TP nor FP)
        keep = (tp + fp) > 0
        precision, ctp_kept = precision[keep], ctp[keep]
        if positives == 0:
            recall = np.zeros(len(ctp_kept))
            ap = float("nan")
        else:
            recall = ctp_kept / positives
            ap = voc_ap(recall, precision, eleven_point)
        results.append(ClassAP(name, ap, positives, int(keep.sum()), int(tp.sum()), precision, recall))
    valid = [r.ap for r in results if r.positives > 0]
    return VOCResult(results, float(np.mean(valid)) if valid else float("nan"), iou_threshold, eleven_point)


COCO_AREAS = {"small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2), "large": (96.0**2, 1e10)}  # COCOeval's


def _coco_without_detections(annotations: list[dict[str, Any]]) -> dict[str, float]:
    """What COCOeval reports when nothing was detected: 0 for a measure with ground truth to find, NaN (its
    -1, "n/a") where there is none, e.g. a size range without a box of that size. Crowd boxes count for none."""
    areas = [a["area"] for a in annotations if not a["iscrowd"]]
    out = {}
    for key in COCO_KEYS:
        size = key.rsplit("_", 1)[-1]
        lo, hi = COCO_AREAS.get(size, (0.0, 1e10))
        out[key] = 0.0 if any(lo <= area <= hi for area in areas) else float("nan")
    return out


def evaluate_coco(
    detections: Sequence[dict[str, Any]],
    ground_truth: Sequence[dict[str, Any]],
    classes: Sequence[str],
    sizes: Sequence[tuple[int, int]] | None = None,
) -> dict[str, float]:
    """COCO metrics (COCO_KEYS) by pycocotools (`sizes`: the images' (width, height), informative only);
    NaN where COCO has nothing to measure. Raises ImportError when pycocotools is missing."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, results = [], [], []
    sizes = sizes if sizes is not None else [(0, 0)] * len(ground_truth)
    for i, ((w, h), g, d) in enumerate(zip(sizes, ground_truth, detections), 1):
        images.append({"id": i, "width": int(w), "height": int(h)})
        boxes = _np(g["boxes"], np.float64, (-1, 4))
        labels = _np(g["labels"], np.int64)
        diff = _np(g["difficult"], bool) if g.get("difficult") is not None else np.zeros(len(labels), bool)
        for b, lab, dif in zip(boxes, labels, diff):
            bw, bh = b[2] - b[0], b[3] - b[1]
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(lab),
                                "bbox": [b[0], b[1], bw, bh], "area": bw * bh, "iscrowd": int(dif)})
        for b, s, lab in zip(_np(d["boxes"], np.float64, (-1, 4)), _np(d["scores"], np.float64),
                             _np(d["labels"], np.int64)):
            results.append({"image_id": i, "category_id": int(lab), "score": float(s),
                            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})
    if not results or not annotations:  # pycocotools cannot load an empty result list: its numbers, by hand
        return _coco_without_detections(annotations)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations,
                      "categories": [{"id": k, "name": n} for k, n in enumerate(classes, 1)]}
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {k: (float(v) if v >= 0 else float("nan")) for k, v in zip(COCO_KEYS, ev.stats)}
