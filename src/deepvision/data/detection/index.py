"""The built dataset on disk (docs/detection.md): a label map, and one JSON index per split.

    DIR/dataset.json        format, source format, classes, image root, per-split counts, notes
    DIR/label_map.pbtxt     item { id: 1 name: 'stop' } ... (ids from 1; 0 is the background)
    DIR/classes.txt         one class name per line, in id order
    DIR/SPLIT.json          per image: file (relative to the image root), width, height,
                            boxes normalised to [0, 1] as [xmin, ymin, xmax, ymax], class ids from 1,
                            class names, difficult flags

`load_index` reads it back, checking what a hand edit could break.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepvision.errors import UserError
from deepvision.fileio import atomic_write_text
from deepvision.safeload import ParseError, input_file, load_json

FORMAT = "deepvision-detection"
VERSION = 1


@dataclass
class IndexImage:
    file: Path  # absolute
    width: int
    height: int
    boxes: np.ndarray  # (N, 4) float32, normalised xmin, ymin, xmax, ymax
    labels: np.ndarray  # (N,) int64, class ids from 1
    difficult: np.ndarray  # (N,) bool

    def pixel_boxes(self) -> np.ndarray:
        return self.boxes * np.array([self.width, self.height, self.width, self.height], np.float32)


@dataclass
class DetectionIndex:
    root: Path  # the index folder
    classes: list[str]  # id k is classes[k - 1]
    splits: dict[str, list[IndexImage]]
    info: dict[str, Any] = field(default_factory=dict)


def label_map_text(classes: list[str]) -> str:
    return "".join(f"item {{\n  id: {i}\n  name: '{name}'\n}}\n" for i, name in enumerate(classes, 1))


def read_class_list(value: str) -> list[str]:
    """Classes from a comma list, a classes.txt (one per line) or a TFOD label_map.pbtxt (ordered by id)."""
    path = Path(value)
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        if path.suffix in (".pbtxt", ".pbtx") or re.search(r"item\s*\{", text):
            items = re.findall(r"item\s*\{([^}]*)\}", text)
            pairs = []
            for item in items:
                ident = re.search(r"\bid\s*:\s*(\d+)", item)
                name = re.search(r"\b(?:display_)?name\s*:\s*['\"]([^'\"]*)['\"]", item)
                if not ident or not name:
                    raise UserError(f"{path}: every label map item needs an id and a name, got {item.strip()!r}")
                pairs.append((int(ident.group(1)), name.group(1)))
            pairs.sort()
            if [i for i, _ in pairs] != list(range(1, len(pairs) + 1)):
                raise UserError(f"{path}: label map ids must be 1..{len(pairs)} (0 is the background)")
            return [n for _, n in pairs]
        names = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        if path.suffix in (".txt", ".pbtxt") or "/" in value:
            input_file(path, "class list file")  # a FIFO or folder is named as such, not "not found"
        names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise UserError(f"no class names in {value!r}")
    if len(set(names)) != len(names):
        raise UserError(f"class names repeat in {value!r}")
    return names


def write_index(out: Path, classes: list[str], image_root: Path, splits: dict[str, list[dict[str, Any]]],
                info: dict[str, Any]) -> None:
    """Write the dataset files (each through a temporary file, so a failed build leaves old files intact)."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        root_ref = str(Path(_relpath(image_root, out)))
    except ValueError:
        root_ref = str(image_root)
    for split, images in splits.items():
        doc = {"format": FORMAT, "version": VERSION, "split": split, "classes": classes, "images": images}
        atomic_write_text(out / f"{split}.json", json.dumps(doc, separators=(",", ":")) + "\n")
    atomic_write_text(out / "label_map.pbtxt", label_map_text(classes))
    atomic_write_text(out / "classes.txt", "".join(f"{c}\n" for c in classes))
    meta = {"format": FORMAT, "version": VERSION, "classes": classes, "image_root": root_ref,
            "splits": list(splits), **info}
    atomic_write_text(out / "dataset.json", json.dumps(meta, indent=2) + "\n")


def _relpath(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path.resolve(), start.resolve())


def load_index(root: str | Path, splits: list[str] | None = None) -> DetectionIndex:
    """Read a built dataset (all splits, or the named ones)."""
    root = Path(root)
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        raise UserError(f"{root} is not a built detection dataset (no dataset.json); build one with "
                        f"`deepvision detection build FORMAT ... --out {root}`")
    meta = _read_json(meta_path)
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise UserError(f"{meta_path} is not a deepvision detection dataset of version {VERSION}")
    classes = [str(c) for c in meta["classes"]]
    image_root = Path(meta["image_root"])
    image_root = image_root if image_root.is_absolute() else (root / image_root)
    wanted = splits if splits is not None else list(meta.get("splits", []))
    out: dict[str, list[IndexImage]] = {}
    for split in wanted:
        path = root / f"{split}.json"
        if not path.is_file():
            have = ", ".join(meta.get("splits", [])) or "none"
            raise UserError(f"split '{split}' not found in {root}; available: {have}")
        doc = _read_json(path)
        out[split] = [_image(entry, image_root, len(classes), path) for entry in doc.get("images", [])]
    return DetectionIndex(root, classes, out, meta)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = load_json(path.read_bytes(), str(path))
    except ParseError as exc:
        raise UserError(f"{exc}; rebuild the dataset") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path} is not a dataset index (not a JSON object); rebuild the dataset")
    return doc


def _image(entry: dict[str, Any], image_root: Path, num_classes: int, path: Path) -> IndexImage:
    try:
        boxes = np.asarray(entry["boxes"], np.float32).reshape(-1, 4)
        labels = np.asarray(entry["labels"], np.int64).reshape(-1)
        difficult = np.asarray(entry.get("difficult", [0] * len(labels)), bool).reshape(-1)
        width, height = int(entry["width"]), int(entry["height"])
        file = image_root / entry["file"]
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: malformed image entry {str(entry)[:80]} ({exc}); rebuild the dataset") from None
    if not (len(boxes) == len(labels) == len(difficult)):
        raise UserError(f"{path}: {entry['file']} has {len(boxes)} boxes but {len(labels)} labels")
    if len(labels) and (labels.min() < 1 or labels.max() > num_classes):
        raise UserError(f"{path}: {entry['file']} has class ids outside 1..{num_classes}")
    if len(boxes) and ((boxes < 0).any() or (boxes > 1).any() or (boxes[:, 2:] <= boxes[:, :2]).any()):
        raise UserError(f"{path}: {entry['file']} has boxes outside [0, 1] or of zero size; rebuild the dataset")
    return IndexImage(file, width, height, boxes, labels, difficult)
