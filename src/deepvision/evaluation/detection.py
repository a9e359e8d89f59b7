"""`deepvision evaluate` for detection runs: VOC AP@0.5 (both definitions) and COCO metrics on a split.

Writes into the run's eval/ folder (or `out`): metrics.json (every number with the definition it
follows), per_class_ap.csv (positives, detections, true positives, all-point and 11-point AP) and
pr_curves.png (one precision-recall curve per class, with its precision envelope).
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepvision.data.detection.index import load_index
from deepvision.data.detection.loader import DetectionDataset, DetectionSource, load_detection_data
from deepvision.data.loader import BatchLoader
from deepvision.engine.detection_metrics import VOCResult, evaluate_coco, evaluate_voc
from deepvision.engine.distributed import resolve_device
from deepvision.engine.tasks.detection import DetectionMeter, DetectionTask
from deepvision.errors import UserError
from deepvision.evaluation.report_folder import ROLES, refuse_other_runs_folder, report_folder, slug
from deepvision.fileio import atomic_write_text, written_whole
from deepvision.placement import require_own_folder
from deepvision.runs.loading import LoadedRun, load_run, refuse_split_edit
from deepvision.runs.rundir import RunDir
from deepvision.safeload import spreadsheet_cell

DEFINITIONS = {
    "voc_map50": "PASCAL VOC mAP@0.5, all-point (VOC2010+) area under the precision envelope, difficult ignored",
    "voc_map50_11pt": "PASCAL VOC mAP@0.5, 11-point (VOC2007) mean of the envelope at recall 0, 0.1, ..., 1",
    "coco": "COCO mAP by pycocotools: 101-point AP averaged over IoU 0.50:0.05:0.95 (map), at IoU 0.5 (map50) "
            "and 0.75 (map75), and by box area (small < 32^2 <= medium < 96^2 <= large); difficult boxes as crowd",
}


@dataclass
class DetectionEvaluation:
    split: str
    data: str  # the split's name, for the run's own dataset; else the built dataset's folder
    images: int
    boxes: int
    voc: VOCResult
    voc_11pt: VOCResult
    coco: dict[str, float]
    out_dir: Path
    scored: dict[str, Any] = field(default_factory=dict)  # the run, its id, the checkpoint and its epoch
    notes: list[str] = field(default_factory=list)  # [WARN] lines shown before the scores

    def metrics(self) -> dict[str, Any]:
        return {"split": self.split, "data": self.data, **self.scored, "images": self.images, "boxes": self.boxes,
                "voc_map50": self.voc.map, "voc_map50_11pt": self.voc_11pt.map, "coco": self.coco,
                "per_class": {c.name: {"ap": c.ap, "ap_11pt": c11.ap, "positives": c.positives}
                              for c, c11 in zip(self.voc.per_class, self.voc_11pt.per_class)},
                "definitions": DEFINITIONS}

    def lines(self) -> list[str]:
        out = [*self.notes, f"{self.split}: {self.images:,} images, {self.boxes:,} boxes",
               f"VOC mAP@0.5, all-point (VOC2010+): {self.voc.map:.4f}",
               f"VOC mAP@0.5, 11-point (VOC2007):   {self.voc_11pt.map:.4f}"]
        if self.coco:
            c = self.coco
            out.append(f"COCO mAP@[.5:.95]: {c['map']:.4f}  mAP50: {c['map50']:.4f}  mAP75: {c['map75']:.4f}")
            out.append(f"COCO mAP small/medium/large: {_f(c['map_small'])} / {_f(c['map_medium'])} / "
                       f"{_f(c['map_large'])}")
        else:
            out.append("COCO metrics: pycocotools is not installed (pip install deepvision[detection])")
        out.append("per class (AP all-point / 11-point):")
        for c, c11 in zip(self.voc.per_class, self.voc_11pt.per_class):
            out.append(f"  {c.name:<20} {_f(c.ap)} / {_f(c11.ap)}  ({c.positives:,} boxes)")
        out.append(f"wrote metrics.json, per_class_ap.csv, pr_curves.png to {self.out_dir}/")
        return out


def _f(v: float) -> str:
    return "n/a" if v is None or math.isnan(v) else f"{v:.4f}"


def evaluate_detection_run(run_dir: str | Path | LoadedRun, split: str = "test", *, data: str | Path | None = None,
                           epoch: int | None = None, device: str = "auto", out: str | Path | None = None
                           ) -> DetectionEvaluation:
    """Score a detection run on `split` of its dataset (or of the built dataset `data`)."""
    if out is not None:  # never another run's folder or report, refused before the model loads
        refuse_other_runs_folder(out, run_dir.run if isinstance(run_dir, LoadedRun) else RunDir.open(run_dir))
        require_own_folder(out, "metrics.json", '{\n  "split":', "detection evaluate")  # never the user's files
    loaded = run_dir if isinstance(run_dir, LoadedRun) else load_run(run_dir, epoch, "best", resolve_device(device))
    cfg = copy.deepcopy(loaded.cfg)
    task = DetectionTask(cfg)
    notes: list[str] = []
    if data is None and split in ("train", "val", "test"):
        # the run's own split, carved from train when the run used val_fraction/test_fraction
        refuse_split_edit(loaded.run, loaded.cfg, loaded.checkpoint, loaded.trained, loaded.data_splits)
        task_data = load_detection_data(cfg.data, (split,), loaded.pre)
        if split not in task_data.splits:
            raise UserError(f"the run has no {split} split (data.{split} is not set); give --split NAME or --data DIR")
        images, classes, root = task_data.splits[split], task_data.classes, cfg.data.root
    else:
        root = str(data) if data is not None else cfg.data.root
        index = load_index(root, [split])
        images, classes = index.splits[split], index.classes
        if shared := _training_images_in(cfg, loaded.pre, images):
            notes = [f"[WARN] {shared:,} of the {len(images):,} images of {split} in {root} are images the run "
                     f"trained on: its scores do not measure generalisation"]
    if classes != loaded.classes[: len(classes)] or len(classes) + 1 != (loaded.cfg.model.num_classes or 0):
        raise UserError(f"the classes of {root} ({', '.join(classes)}) differ from the run's "
                        f"({', '.join(loaded.classes[: (loaded.cfg.model.num_classes or 1) - 1])})")
    batch = cfg.data.eval_batch_size or cfg.data.batch_size
    loader = BatchLoader(DetectionSource(DetectionDataset(images)), batch, training=False, workers=cfg.data.workers)
    model_device = next(loaded.model.parameters()).device
    meter = DetectionMeter(classes)
    try:
        for batch_ in loader:
            x, y = task.to_device(batch_, model_device)
            outputs, _ = task.eval_outputs(loaded.model, x, y)
            meter.update(outputs, y)
    finally:
        loader.close()
    records = meter.gathered()
    dets, gts = [r[1] for r in records], [r[2] for r in records]
    voc = evaluate_voc(dets, gts, classes)
    voc11 = evaluate_voc(dets, gts, classes, eleven_point=True)
    try:
        coco = evaluate_coco(dets, gts, classes)
    except ImportError:
        coco = {}
    # the report of other data never replaces the run's own, nor one of another split: both name the folder
    name = split if data is None else str(data) if str(data) not in ROLES else f"./{data}"  # a folder named test
    default = "-".join(["detection", *([] if data is None else [slug(name)]), slug(split), loaded.checkpoint.stem])
    out_dir = Path(out) if out else report_folder(loaded.run, default, name, split)
    scored = {"run": str(loaded.run.path), **({"run_id": loaded.run.run_id} if loaded.run.run_id else {}),
              "checkpoint": str(loaded.checkpoint), "epoch": loaded.epoch}
    result = DetectionEvaluation(split, name, len(records), int(sum(len(g["labels"]) for g in gts)), voc, voc11, coco,
                                 out_dir, scored, notes)
    with written_whole(out_dir, last="metrics.json") as tmp:  # the report lands whole or not at all
        atomic_write_text(tmp / "metrics.json", json.dumps(_jsonable(result.metrics()), indent=2) + "\n")
        _write_csv(tmp / "per_class_ap.csv", voc, voc11)
        plot_pr_curves(voc, tmp / "pr_curves.png")
    return result


def _training_images_in(cfg: Any, pre: Any, images: list[Any]) -> int:
    """How many of `images` the run trained on (by file, a folder reached through a link included): the run's
    training split is read again from its config, carved parts included; 0 when it cannot be read."""
    try:
        trained = {os.path.realpath(im.file) for im in load_detection_data(cfg.data, ("train",), pre).splits["train"]}
    except (UserError, OSError):  # the training data moved or changed: nothing to compare
        return 0
    return sum(os.path.realpath(im.file) in trained for im in images)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def _write_csv(path: Path, voc: VOCResult, voc11: VOCResult) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["class", "positives", "detections", "true_positives", "ap_all_point", "ap_11_point"])
    for c, c11 in zip(voc.per_class, voc11.per_class):
        w.writerow([spreadsheet_cell(c.name), c.positives, c.detections, c.true_positives,
                    "" if math.isnan(c.ap) else f"{c.ap:.6f}", "" if math.isnan(c11.ap) else f"{c11.ap:.6f}"])
    w.writerow(["mean", sum(c.positives for c in voc.per_class), "", "", f"{voc.map:.6f}", f"{voc11.map:.6f}"])
    atomic_write_text(path, buf.getvalue())


def plot_pr_curves(voc: VOCResult, path: Path) -> Path:
    """Precision against recall per class (thin) with its precision envelope (thick), AP in the legend."""
    from deepvision.runs.plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(7, 5))
    for c in voc.per_class:
        if not len(c.recall):
            continue
        env = np.maximum.accumulate(c.precision[::-1])[::-1]
        line, = ax.plot(c.recall, c.precision, linewidth=0.8, alpha=0.5)
        ax.step(c.recall, env, where="post", color=line.get_color(), linewidth=2, label=f"{c.name} (AP {_f(c.ap)})")
    ax.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
           title=f"Precision-recall at IoU {voc.iou_threshold:g}, mAP {_f(voc.map)}")
    ax.grid(alpha=0.3)
    if voc.per_class:
        ax.legend(fontsize=8, loc="lower left")
    return save_figure(fig, path)
