"""The built dataset on disk (docs/detection.md): a label map, and one JSON index per split.

    DIR/dataset.json        format, source format, classes, image root, per-split counts, notes
    DIR/label_map.pbtxt     item { id: 1 name: 'stop' } ... (ids from 1; 0 is the background)
    DIR/classes.txt         one class name per line, in id order
    DIR/SPLIT.json          per image: file (relative to the image root), width, height,
                            boxes normalised to [0, 1] as [xmin, ymin, xmax, ymax], class ids from 1,
                            class names, difficult flags

`load_index` reads it back, checking what a hand edit could break; `deepvision.datasets.detection.build`
writes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from deepvision.config.schema import check_file_name
from deepvision.errors import UserError
from deepvision.safeload import ParseError, check_class_names, first_not_whole, max_image_side, printable, read_json
from deepvision.safeload.text import refuse_listed_twice

_ITEM = re.compile(r"""\bid:\s*(\d+)\s+name:\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")""")  # label map items
FORMAT = "deepvision-detection"
VERSION = 1
OWN_FILES = ("dataset.json", "label_map.pbtxt", "classes.txt")  # beside them, SPLIT.json for each split


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


def load_index(root: str | Path, splits: list[str] | None = None) -> DetectionIndex:
    """Read a built dataset (all splits, or the named ones)."""
    root = Path(root)
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        from deepvision.safeload import shell_word
        raise UserError(f"{root} is not a built detection dataset (no dataset.json); build one with "
                        f"`deepvision detection build FORMAT ... --out {shell_word(root)}`")
    meta = _read_json(meta_path)
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise UserError(f"{meta_path} is not a deepvision detection dataset of version {VERSION}")
    classes = meta.get("classes")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise UserError(f"{meta_path} 'classes' must be a list of class names (text); rebuild the dataset")
    check_class_names(classes, f"{meta_path} 'classes'")
    _check_companions(root, classes)
    image_root = root / meta["image_root"]  # an absolute image root stays as it is
    listed = meta.get("splits")
    if not isinstance(listed, list):
        raise UserError(f"{meta_path} 'splits' must be a list of split names; rebuild the dataset")
    for split in listed:  # a hand edit
        check_split_name(split, f"{meta_path} 'splits'")
    out: dict[str, list[IndexImage]] = {}
    for split in listed if splits is None else splits:
        path = root / f"{split}.json"
        if split not in listed or not path.is_file():  # never dataset.json read as a split, nor ../x.json
            raise UserError(f"split {split!r} not found in {root}; available: {', '.join(listed) or 'none'}")
        doc = _read_json(path)
        out[split] = [_image(entry, image_root, classes, path) for entry in doc.get("images", [])]
    named = ((root / f"{s}.json", [im.file for im in out[s]] if s in out else _files_named(root, s, image_root))
             for s in (listed if splits != [] else []))  # the splits not asked for too: one image in train and test
    refuse_listed_twice(named, image_root, "an image belongs to one split, once: keep one entry or rebuild the dataset")
    return DetectionIndex(root, classes, out, meta)


def _files_named(root: Path, split: str, image_root: Path) -> list[Path | None]:
    """The image files of a split not read (None for an entry without a file name: its readers refuse it)."""
    entries = _read_json(root / f"{split}.json").get("images") if (root / f"{split}.json").is_file() else None
    return [image_root / e["file"] if isinstance(e, dict) and isinstance(e.get("file"), str) else None
            for e in (entries if isinstance(entries, list) else [])]


def check_split_name(name: str, where: str) -> None:
    """A split's name names its file SPLIT.json beside OWN_FILES: a plain file name, none of theirs in any case."""
    check_file_name(name, f"{where}: split name", "file", taken=tuple(Path(own).stem for own in OWN_FILES))


def _check_companions(root: Path, classes: list[str]) -> None:
    """classes.txt and label_map.pbtxt repeat dataset.json's classes for other tools: one edited by hand
    would be ignored here and believed there, so they must agree."""
    from deepvision.safeload import name_lines, read_text_file

    for name in ("classes.txt", "label_map.pbtxt"):
        if (root / name).is_file():
            text = read_text_file(root / name, name)
            found = list(enumerate(name_lines(text), 1)) if name == "classes.txt" else \
                [(int(i), re.sub(r"\\(.)", r"\1", one or two)) for i, one, two in _ITEM.findall(text)]
            if found != list(enumerate(classes, 1)):
                raise UserError(f"{root / name} disagrees with the classes of {root / 'dataset.json'}; rebuild the "
                                f"dataset or remove the edited file")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = read_json(path, "dataset index")  # bounded, regular files only
    except ParseError as exc:
        raise UserError(f"{exc}; rebuild the dataset") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path} is not a dataset index (not a JSON object); rebuild the dataset")
    return doc


def _image(entry: dict[str, Any], image_root: Path, classes: list[str], path: Path) -> IndexImage:
    if not isinstance(entry, dict):
        raise UserError(f"{path}: malformed image entry {printable(str(entry)[:80])} (not an object); rebuild "
                        f"the dataset")
    try:
        for key, allowed, what in (("labels", None, "class id"), ("difficult", (0, 1), "difficult flag")):
            bad = first_not_whole(entry.get(key, []), allowed)
            if bad is not None:
                rule = "class ids are whole numbers" if allowed is None else "difficult flags are 0 or 1"
                raise UserError(f"{path}: {printable(entry.get('file'))} has {what} {printable(repr(bad))[:40]}; "
                                f"{rule}; rebuild the dataset")
        boxes = np.asarray(entry["boxes"], np.float32).reshape(-1, 4)
        labels = np.asarray(entry["labels"], np.int64).reshape(-1)
        difficult = np.asarray(entry.get("difficult", [0] * len(labels)), bool).reshape(-1)
        width, height = int(entry["width"]), int(entry["height"])
        name = entry["file"]
        if not isinstance(name, str):
            raise TypeError(f"file {name!r} is not a string")
        file = image_root / name
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise UserError(f"{path}: malformed image entry {printable(str(entry)[:80])} ({exc}); rebuild the "
                        f"dataset") from None
    relative = PurePosixPath(name.replace("\\", "/"))
    if not name or relative.is_absolute() or ".." in relative.parts or PureWindowsPath(name).drive:
        raise UserError(f"{path}: file {printable(name)!r} leaves the image folder {image_root}; the index names "
                        f"files inside it; rebuild the dataset")
    ceiling = max_image_side()
    if not (1 <= width <= ceiling and 1 <= height <= ceiling):
        raise UserError(f"{path}: {printable(name)} is {width} x {height}; sides must be 1 to {ceiling:,} "
                        f"(DEEPVISION_MAX_IMAGE_SIDE); rebuild the dataset")
    if not np.isfinite(boxes).all():
        raise UserError(f"{path}: {printable(name)} has a box that is not a finite number (NaN or infinity); "
                        f"rebuild the dataset")
    if not (len(boxes) == len(labels) == len(difficult)):
        count, what = (len(labels), "label(s)") if len(labels) != len(boxes) else (len(difficult), "difficult flag(s)")
        raise UserError(f"{path}: {printable(name)} has {len(boxes)} box(es) but {count} {what}; rebuild the dataset")
    if len(labels) and (labels.min() < 1 or labels.max() > len(classes)):
        raise UserError(f"{path}: {printable(name)} has class ids outside 1..{len(classes)}")
    names = entry.get("names")  # each box's class name beside its id, for readers of the file
    if names is not None and names != [classes[i - 1] for i in labels]:
        raise UserError(f"{path}: {printable(name)} names classes {printable(str(names))[:60]} that its class ids "
                        f"do not give; rebuild the dataset")
    if bad_boxes(boxes).any():
        raise UserError(f"{path}: {printable(name)} has boxes outside [0, 1] or of zero size; rebuild the dataset")
    return IndexImage(file, width, height, boxes, labels, difficult)


def bad_boxes(boxes: np.ndarray) -> np.ndarray:
    """Per box: outside [0, 1] or of zero size as the index holds it (normalised, float32); the build checks it too."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return (boxes < 0).any(1) | (boxes > 1).any(1) | (boxes[:, 2:] <= boxes[:, :2]).any(1)
