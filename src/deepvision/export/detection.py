"""Detection's export hooks: a trained detector as one self-contained file (TorchScript or ONNX),
written and checked by the one exporter, `export.export.export_run`.

The artefact takes one uint8 RGB image (3, H, W) of any size and returns `boxes` (N, 4) xyxy in
that image's pixels, `scores` (N,) and `labels` (N,) (class ids from 1); the detector's own
normalisation, resizing and NMS are inside. The class names travel with the file (TorchScript extra
file `classes.json`, ONNX metadata `classes`) with the JSON description every deepvision export carries
(`deepvision.json` / metadata `deepvision`, "task": "detection"). ONNX goes through the TorchScript-based
exporter (`torch.onnx.export(..., dynamo=False)`): the dynamo exporter fails on torchvision's
data-dependent NMS.

The parity check runs both on sample images (the run's own test/val images when its dataset is at
hand, else seeded noise) and requires, for every PyTorch detection scoring at least `min_score`, an
exported one with the same label, a score within `score_tol` and an IoU of at least `iou_min`, and
the same number of such detections.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepvision.data.preprocess import open_image, pil_to_tensor
from deepvision.engine.detection_metrics import box_iou
from deepvision.errors import UserError
from deepvision.export.hooks import ExportHooks, Parity, register_export
from deepvision.export.onnx_export import METADATA_KEY
from deepvision.fileio import zip_damage
from deepvision.models.detection import detection_family
from deepvision.onnxrt import (
    check_external_data,
    check_graph_ops,
    check_same_records,
    check_weights_finite,
    load_model,
    model_metadata,
    ort_session,
    require,
    run_session,
)
from deepvision.runs.loading import LoadedRun
from deepvision.safeload import check_class_names, load_json
from deepvision.version import __version__

FORMATS = ("torchscript", "onnx")
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript"}  # as `deepvision export` names classification files


class SingleImageDetector(nn.Module):
    """uint8 RGB (3, H, W) -> (boxes, scores, labels): the exportable form of a torchvision detector."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.eval()  # the exporters run the module in its own mode; a detector in train mode wants targets

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model([image.float() / 255.0])
        if torch.jit.is_scripting():  # scripted torchvision detectors return (losses, detections)
            det = out[1][0]
        else:
            det = out[0]
        return det["boxes"], det["scores"], det["labels"]


@dataclass
class ParityReport:
    images: int
    compared: int  # PyTorch detections at or above min_score
    matched: int
    max_box_diff: float
    max_score_diff: float
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        status = "ok" if self.ok else "FAILED: " + "; ".join(self.problems[:3])
        return (f"parity on {self.images} image(s): {self.matched}/{self.compared} detections matched, max box "
                f"difference {self.max_box_diff:.2g} px, max score difference {self.max_score_diff:.2g}: {status}")


def compare_detections(ref: list[tuple[np.ndarray, ...]], got: list[tuple[np.ndarray, ...]], min_score: float = 0.05,
                       score_tol: float = 1e-3, iou_min: float = 0.99, cap: int | None = None) -> ParityReport:
    """Match per image (boxes, scores, labels) of the exported model to PyTorch's (see the module doc).

    `cap`: the detector's detections per image. When PyTorch's list is full, the detections tied (within
    `score_tol`) with its lowest score are the arbitrary survivors of the cut among equal scores: the
    exported model may keep other ones, so they are not required to match.
    """
    compared = matched = 0
    box_diff = score_diff = 0.0
    problems: list[str] = []
    for i, ((rb, rs, rl), (gb, gs, gl)) in enumerate(zip(ref, got)):
        cut = float(rs.min()) + score_tol if cap is not None and len(rs) >= cap else -np.inf
        keep_r, keep_g = rs >= min_score, gs >= min_score
        rb, rs, rl, gb, gs, gl = rb[keep_r], rs[keep_r], rl[keep_r], gb[keep_g], gs[keep_g], gl[keep_g]
        compared += len(rs)
        if abs(len(rs) - len(gs)) > 0 and not _borderline(rs, gs, min_score, score_tol):
            problems.append(f"image {i}: {len(rs)} detections in PyTorch, {len(gs)} exported")
        used = np.zeros(len(gs), bool)
        iou = box_iou(rb, gb) if len(rb) and len(gb) else np.zeros((len(rb), len(gb)))
        for j in range(len(rs)):
            candidates = [k for k in range(len(gs)) if not used[k] and gl[k] == rl[j]
                          and abs(gs[k] - rs[j]) <= score_tol and iou[j, k] >= iou_min]
            if not candidates:
                if rs[j] >= min_score + score_tol and rs[j] > cut:
                    problems.append(f"image {i}: no exported match for label {int(rl[j])} score {rs[j]:.4f}")
                continue
            k = max(candidates, key=lambda c: iou[j, c])
            used[k] = True
            matched += 1
            box_diff = max(box_diff, float(np.abs(rb[j] - gb[k]).max()))
            score_diff = max(score_diff, float(abs(rs[j] - gs[k])))
    return ParityReport(len(ref), compared, matched, box_diff, score_diff, problems)


def _borderline(a: np.ndarray, b: np.ndarray, threshold: float, tol: float) -> bool:
    """Counts differ only by detections scoring within `tol` of the threshold."""
    return int((a >= threshold + tol).sum()) == int((b >= threshold + tol).sum())


def sample_images(loaded: LoadedRun, count: int = 3, seed: int = 0) -> tuple[list[torch.Tensor], str]:
    """Up to `count` images of the run's test/val split (uint8 3 x H x W), else seeded noise of two sizes;
    and where they came from."""
    images: list[torch.Tensor] = []
    why = "the run's dataset is not at hand"
    root = loaded.cfg.data.root
    if root and (Path(root) / "dataset.json").is_file():
        from deepvision.data.detection.index import load_index

        try:
            index = load_index(root, [])
            split = next((s for s in ("test", "val", "train") if s in index.info.get("splits", [])), None)
            if split:
                files = [im.file for im in load_index(root, [split]).splits[split][:count]]
                images = [pil_to_tensor(open_image(f, 3)) for f in files if Path(f).is_file()]
                source = f"{len(images)} {split} image(s) of {root}"
        except UserError as exc:  # said in the report: a refused dataset is not an absent one
            images, why = [], f"the run's dataset was refused: {exc}"
    if not images:
        g = torch.Generator().manual_seed(seed)
        images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g) for h, w in ((240, 320), (300, 200))]
        source = f"2 noise images ({why})"
    return images, source


def _run_torch(module: nn.Module, images: list[torch.Tensor]) -> list[tuple[np.ndarray, ...]]:
    with torch.inference_mode():
        return [tuple(t.float().numpy() if t.is_floating_point() else t.numpy() for t in module(im)) for im in images]


@register_export("detection")
class DetectionExport(ExportHooks):
    """One uint8 RGB image of any size in; boxes, scores and labels out; parity by matched detections."""

    formats = FORMATS
    dynamic_batch = False
    check_optional = True
    min_score = 0.05

    def __init__(self, loaded: LoadedRun) -> None:
        super().__init__(loaded)
        if detection_family(loaded.cfg.model.name) is None:
            raise UserError(f"{loaded.run.path} trains '{loaded.cfg.model.name}', not a detector")
        self.classes = list(loaded.classes[: (loaded.cfg.model.num_classes or len(loaded.classes) + 1) - 1])

    def module(self) -> nn.Module:
        return SingleImageDetector(self.loaded.model.cpu())

    def describe(self, fmt: str, dynamic_batch: bool) -> dict[str, Any]:
        return describe_detector(self.loaded, self.classes, fmt)

    def samples(self, images: list[str | Path] | None) -> tuple[list[torch.Tensor], str]:
        if images:
            return [pil_to_tensor(open_image(p, 3)) for p in images], f"{len(images)} given image(s)"
        return sample_images(self.loaded)

    def write(self, fmt: str, module: nn.Module, samples: Any, path: Path, final_name: str, meta: dict[str, Any],
              dynamic_batch: bool, opset: int | None) -> Path | None:
        if fmt == "torchscript":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit's deprecation notice; torchvision's scripting notes
                torch.jit.save(torch.jit.script(module), str(path),
                               _extra_files={"classes.json": json.dumps(self.classes),
                                             "deepvision.json": json.dumps(meta)})
        else:
            _export_onnx(module, path, samples, self.classes, opset or 17, meta)
        return None

    def run_file(self, fmt: str, path: Path, samples: Any, dynamic_batch: bool) -> list[tuple[np.ndarray, ...]]:
        run, _ = load_exported(path, fmt)
        return [run(im) for im in samples]

    def parity(self, module: nn.Module, samples: Any, got: Any, tolerance: float, source: str) -> Parity:
        report = compare_detections(_run_torch(module, samples), got, min_score=self.min_score,
                                    cap=_detections_cap(self.loaded.model))
        return Parity(report.ok, report.line(), report.line(), {"parity": report})


def _detections_cap(model: nn.Module) -> int | None:
    """The most detections the model returns per image (SSD: detections_per_img; Faster R-CNN: its ROI heads')."""
    heads = getattr(model, "roi_heads", model)
    cap = getattr(heads, "detections_per_img", None)
    return int(cap) if isinstance(cap, int) else None


def describe_detector(loaded: LoadedRun, classes: list[str], fmt: str) -> dict[str, Any]:
    """The file's JSON description (TorchScript extra file `deepvision.json`, ONNX metadata `deepvision`)."""
    return {"format": "deepvision-export", "version": 1, "deepvision": __version__, "export_format": fmt,
            "task": "detection", "model": loaded.cfg.model.name, "run": str(loaded.run.path.resolve()),
            "epoch": loaded.epoch, "classes": classes,
            "input": {"name": "image", "shape": [3, "height", "width"], "dtype": "uint8", "layout": "CHW",
                      "color": "RGB", "note": "one image of any size; the detector normalises and resizes it"},
            "output": {"names": ["boxes", "scores", "labels"],
                       "meaning": "boxes (N, 4) x1 y1 x2 y2 in input pixels, scores (N,), labels (N,) class ids "
                                  "from 1 (classes[label - 1])"}}


def _export_onnx(module: nn.Module, path: Path, samples: list[torch.Tensor], classes: list[str], opset: int,
                 meta: dict[str, Any]) -> None:
    onnx = require("onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about data-dependent shapes (expected for NMS)
        torch.onnx.export(module, (samples[0],), str(path), dynamo=False, opset_version=opset,
                          input_names=["image"], output_names=["boxes", "scores", "labels"],
                          dynamic_axes={"image": {1: "height", 2: "width"}, "boxes": {0: "detections"},
                                        "scores": {0: "detections"}, "labels": {0: "detections"}})
    model = onnx.load(str(path))
    for key, value in (("classes", json.dumps(classes)), (METADATA_KEY, json.dumps(meta))):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def load_exported(path: str | Path, fmt: str | None = None) -> tuple[Any, list[str]]:
    """(callable image -> (boxes, scores, labels) as numpy, class names) for an exported file; `fmt`
    (onnx or torchscript) defaults to the one the suffix names."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"exported model not found: {path}")
    if (fmt or ("onnx" if path.suffix == ".onnx" else "torchscript")) == "onnx":
        require("onnxruntime")  # a missing package is reported before anything is read
        model = load_model(path)
        meta = model_metadata(path, model)
        own = load_json(meta[METADATA_KEY], f"{path} metadata") if METADATA_KEY in meta else None
        check_external_data(path, model, own)  # before onnxruntime reads weights from beside the file
        check_graph_ops(path, model, branches=True)  # torchvision's detectors hold If; scores are probabilities
        session = ort_session(path)
        check_weights_finite(path, model)
        del model
        classes = _classes(load_json(meta.get("classes", "[]"), f"{path} metadata"))
        check_class_names(classes, f"{path} metadata")
        check_same_records(path, meta, own)
        return (lambda im: tuple(run_session(session, path, None, {"image": np.asarray(im)}))), classes
    damage = zip_damage(path)  # a member listed twice: torch reads the first, zip tools the last
    if damage:
        raise UserError(f"{path} is damaged ({damage}); export the detector again")
    files = {"classes.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice
        module = torch.jit.load(str(path), _extra_files=files)

    def run(image: Any) -> tuple[np.ndarray, ...]:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "SSD always returns a (Losses, Detections) tuple in scripting"
            return tuple(t.numpy() for t in module(torch.as_tensor(image)))

    classes = _classes(load_json(files["classes.json"] or "[]", f"{path} classes.json"))
    check_class_names(classes, f"{path} classes.json")
    return run, classes


def _classes(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise UserError("an exported detector's class list must be a JSON list of names")
    return value
