"""`deepvision detection build`: any supported annotation format -> the built index (docs/detection.md).

The checks every format shares happen here, each reported on one line:

- boxes with zero or negative width/height, a NaN or infinite coordinate, or reaching more than
  1 px outside the image: an error naming the file and box, unless `fix` is "clip" (clip to the
  image, drop what is then empty or not finite) or "drop"; coordinates at most 1 px outside
  (annotation tools round) are clipped silently; a YOLO class id outside the names is refused the
  same way, and dropped by either `fix` (no repair applies);
- class names not in the class list: skipped and counted (an error with `strict`); class names
  that are empty or hold control characters (a newline would split classes.txt): an error;
- images without boxes: kept as negatives and counted;
- missing or unreadable image files: skipped and counted (an error with `strict`); a path that is
  a FIFO, device or folder instead of a file: an error (never opened, so it cannot block);
- the output folder: never an input folder, nor one holding an input file it would write over.
"""

from __future__ import annotations

import json
import math
import os
import re
import textwrap
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepvision.data.detection.index import FORMAT, VERSION
from deepvision.data.imageio import image_size
from deepvision.datasets.detection.readers import file_problem
from deepvision.datasets.detection.schema import Annotations, Box, ImageRecord
from deepvision.errors import UserError
from deepvision.fileio import atomic_write_text
from deepvision.safeload import input_file, printable

TOLERANCE = 1.0  # px beyond the border that annotation tools produce by rounding; clipped silently
FIXES = ("clip", "drop")
OUTPUT_FILES = ("dataset.json", "label_map.pbtxt", "classes.txt")  # plus SPLIT.json per split


@dataclass
class SplitCounts:
    images: int = 0
    boxes: int = 0
    negatives: int = 0
    difficult: int = 0
    per_class: Counter = field(default_factory=Counter)


@dataclass
class BuildReport:
    out: Path
    classes: list[str]
    counts: dict[str, SplitCounts]
    notes: list[str]

    def lines(self) -> list[str]:
        """The summary printed by the CLI (fits 80 columns)."""
        out = [line for note in self.notes
               for line in textwrap.wrap(printable(note), 80, subsequent_indent="  ", break_long_words=False,
                                         break_on_hyphens=False)]
        width = max(len(s) for s in self.counts) if self.counts else 5
        for split, c in self.counts.items():
            out.append(f"{split:<{width}}  {c.images:>7,} images  {c.boxes:>8,} boxes  {c.negatives:>6,} negatives"
                       + (f"  {c.difficult:,} difficult" if c.difficult else ""))
            per_class = ", ".join(f"{k} {c.per_class.get(k, 0):,}" for k in self.classes)
            out += textwrap.wrap(per_class, 80, initial_indent=" " * (width + 2), subsequent_indent=" " * (width + 2))
        out.append(f"{len(self.classes)} classes; wrote the label map and "
                   f"{', '.join(f'{s}.json' for s in self.counts)} to")
        out.append(f"  {printable(self.out)}/")
        return out


def _problem(box: Box, width: int, height: int) -> str | None:
    if not all(map(math.isfinite, box.coords)):
        return "has a coordinate that is not a finite number"
    if box.xmax <= box.xmin or box.ymax <= box.ymin:
        return "has zero or negative width/height"
    t = TOLERANCE
    if box.xmin < -t or box.ymin < -t or box.xmax > width + t or box.ymax > height + t:
        return f"extends outside the {width}x{height} image"
    return None


def _clip(box: Box, width: int, height: int) -> Box:
    return Box(min(max(box.xmin, 0.0), width), min(max(box.ymin, 0.0), height),
               min(max(box.xmax, 0.0), width), min(max(box.ymax, 0.0), height), box.label, box.difficult)


def check_records(records: list[ImageRecord], classes: list[str], fix: str | None, counters: dict[str, Any]
                  ) -> list[ImageRecord]:
    """Resolve sizes, drop missing images and unknown classes, repair or refuse bad boxes (see module doc)."""
    known = set(classes)
    kept = []
    for rec in records:
        problem = file_problem(rec.file)
        if problem == "missing":
            counters["missing"].append(rec)
            continue
        if problem is not None:
            raise UserError(f"{rec.file} is {problem}, not an image file")
        size = image_size(rec.file)  # the header proves it is an image, whatever size the annotation says
        if size is None:
            counters["unreadable"].append(rec.file)
            continue
        if rec.width is None or rec.height is None:
            rec.width, rec.height = size
        elif (rec.width, rec.height) != tuple(size):  # boxes are checked against the image, not the claim
            claim = f"{rec.file}: the annotations give its size as {rec.width}x{rec.height} but the image is " \
                    f"{size[0]}x{size[1]}"
            if fix is None:
                raise UserError(f"{claim}; correct the annotation, or use --fix clip or --fix drop (the "
                                f"image's own size is used then)")
            counters["resized"].append(claim)
            rec.width, rec.height = size
        boxes = []
        for box in rec.boxes:
            if box.problem is not None:  # refused without --fix; no repair applies, so any --fix drops it
                counters["bad"].append(box.problem)
                counters["emptied"] += fix == "clip"
                continue
            if box.label not in known:
                counters["unknown"][box.label] += 1
                continue
            problem = _problem(box, rec.width, rec.height)
            if problem is not None:
                counters["bad"].append(f"{rec.file}: {box.describe()} {problem}")
                if fix == "drop" or fix is None:
                    continue
            finite = all(map(math.isfinite, box.coords))
            box = _clip(box, rec.width, rec.height)
            if not finite or box.xmax <= box.xmin or box.ymax <= box.ymin:
                if problem is None:  # a sliver within the tolerance band: nothing left to keep
                    counters["bad"].append(f"{rec.file}: {box.describe()} is empty inside the image")
                counters["emptied"] += 1
                continue
            boxes.append(box)
        rec.boxes = boxes
        kept.append(rec)
    return kept


def check_class_names(classes: list[str], ann: Annotations) -> None:
    """Refuse empty class names, names with control characters (a newline splits classes.txt) and a name
    given twice (two class ids, one name: a detection could not say which)."""
    seen: set[str] = set()
    for name in classes:
        if name in seen:
            raise UserError(f"the annotations give the class name {name!r} twice; class names must be unique")
        seen.add(name)
    for name in classes:
        if name and not any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
            continue
        first = next((r.file for rs in ann.splits.values() for r in rs for b in r.boxes if b.label == name), None)
        what = "an empty class name" if not name else f"the class name {name!r}, which holds a control character"
        raise UserError(f"the annotations give {what}" + (f" (first in the boxes of {first})" if first else "")
                        + "; class names must be printable text")


def check_output(out: Path, ann: Annotations, split_names: list[str], extra_inputs: list[str]) -> None:
    """Refuse an output folder that would write into or over an input, before anything is written."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for the built dataset")
    target = out.resolve()
    hint = f"write the dataset to another folder, e.g. --out {out / 'built'}"
    for item in [*ann.inputs, *extra_inputs]:
        path = Path(item).resolve()
        if path == target:
            raise UserError(f"--out {out} is an input folder ({item}); {hint}")
        if path.is_file() and path.parent == target:
            raise UserError(f"--out {out} holds the input {item}, which the build could write over; {hint}")
    outputs = [target / name for name in (*OUTPUT_FILES, *(f"{s}.json" for s in split_names))]
    images = {str(Path(r.file)) for rs in ann.splits.values() for r in rs}
    for path in outputs:
        if str(path) in images or (path.exists() and any(_same_file(path, Path(i)) for i in ann.inputs)):
            raise UserError(f"--out {out}: the build would write over the input {path}; {hint}")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def _missing_line(missing: list[ImageRecord], ann: Annotations) -> str:
    first = missing[0]
    where = f"first: {first.file}"
    if first.looked_in:
        name, *dirs = first.looked_in
        shown = ", ".join(dirs[:6]) + (f" ({len(dirs)} folders)" if len(dirs) > 6 else "")
        where = f"looked for {name} in {shown}"
    return where


def _split_all(records: list[ImageRecord], test_fraction: float, seed: int) -> dict[str, list[ImageRecord]]:
    """Split by image as the reference does: sklearn's train_test_split of the image list (75/25, seed 42)."""
    if test_fraction <= 0:
        return {"train": records}
    if len(records) < 2:
        raise UserError(f"{len(records)} image(s) cannot be split into train and test; add images or set "
                        f"--test-fraction 0")
    import numpy as np

    # scikit-learn's train_test_split(records, test_size=f, random_state=seed), without importing it
    n_test = int(np.ceil(test_fraction * len(records)))
    order = np.random.RandomState(seed).permutation(len(records))
    return {"train": [records[i] for i in order[n_test:]], "test": [records[i] for i in order[:n_test]]}


def build_dataset(
    ann: Annotations,
    out: str | Path,
    *,
    classes: list[str] | None = None,
    fix: str | None = None,
    test_fraction: float = 0.25,
    seed: int = 42,
    strict: bool = False,
    command: str = "",
    extra_inputs: list[str] | None = None,
) -> BuildReport:
    """Check the annotations, split by image when they come as one set, and write the index to `out`
    (`extra_inputs`: other files read, such as the class list, which `out` may not write over)."""
    if fix is not None and fix not in FIXES:
        raise UserError(f"--fix must be clip or drop, got {fix!r}")
    if not 0 <= test_fraction < 1:
        raise UserError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    classes = list(classes or ann.classes or sorted({b.label for rs in ann.splits.values() for r in rs
                                                      for b in r.boxes}))
    if not classes:
        raise UserError("the annotations name no class; give the class names with --classes")
    check_class_names(classes, ann)
    out = Path(out)
    split_names = ["train", "test"] if list(ann.splits) == ["all"] else list(ann.splits)
    check_output(out, ann, split_names, extra_inputs or [])
    counters: dict[str, Any] = {"missing": [], "unreadable": [], "unknown": Counter(), "bad": [], "emptied": 0,
                                "resized": []}
    splits = {name: check_records(records, classes, fix, counters) for name, records in ann.splits.items()}
    notes = list(ann.notes)
    if counters["resized"]:
        resized = counters["resized"]
        notes.append(f"used the image's own size for {len(resized):,} image(s) whose annotation gives "
                     f"another (--fix {fix}), first: {resized[0]}")
    if counters["bad"]:
        bad = counters["bad"]
        if fix is None:
            raise UserError(f"{len(bad):,} bad box(es), first: {bad[0]}; repair with --fix clip (clip to the "
                            f"image, drop what is left empty) or --fix drop")
        verb = "clipped" if fix == "clip" else "dropped"
        notes.append(f"{verb} {len(bad):,} bad box(es) (--fix {fix}), first: {bad[0]}"
                     + (f"; {counters['emptied']:,} left empty or not finite were dropped" if fix == "clip" and
                        counters["emptied"] else ""))
    missing = counters["missing"]
    total = sum(len(rs) for rs in ann.splits.values())
    if missing and not any(splits.values()) and not counters["unreadable"]:
        read = f"read {ann.read_from}" if ann.read_from else f"read {total:,} annotated image(s)"
        raise UserError(f"{read} but found none of their {len(missing):,} image(s); {_missing_line(missing, ann)}"
                        f"; give the image folder with --images DIR")
    problems = []
    if missing:
        problems.append(f"skipped {len(missing):,} of {total:,} image(s) whose image file is missing; "
                        f"{_missing_line(missing, ann)}")
    if counters["unreadable"]:
        files = counters["unreadable"]
        problems.append(f"skipped {len(files):,} image(s) whose image file is unreadable, first: {files[0]}")
    if counters["unknown"]:
        unknown = counters["unknown"]
        top = ", ".join(f"{k if k.isprintable() else repr(k)} ({n:,})" for k, n in unknown.most_common(5))
        problems.append(f"skipped {sum(unknown.values()):,} box(es) of {len(unknown)} class(es) not in the class "
                        f"list: {top}" + (" ..." if len(unknown) > 5 else ""))
    if strict and problems:
        raise UserError(problems[0] + " (--strict)")
    notes += problems
    if not any(splits.values()):  # nothing was printed yet: the refusal itself names what was skipped
        why = "; ".join(problems) if problems else f"the annotations list {total:,} image(s)"
        raise UserError(f"no image is left to write: {why}")
    if "all" in splits and len(splits) == 1:
        splits = _split_all(splits["all"], test_fraction, seed)
    files = [Path(r.file) for rs in splits.values() for r in rs]
    image_root = Path(os.path.commonpath([str(f.parent) for f in files]))
    index: dict[str, list[dict[str, Any]]] = {}
    counts: dict[str, SplitCounts] = {}
    ids = {name: i for i, name in enumerate(classes, 1)}
    for split, records in splits.items():
        c = counts[split] = SplitCounts(images=len(records))
        entries = []
        for rec in records:
            w, h = rec.width, rec.height
            entries.append({
                "file": os.path.relpath(rec.file, image_root), "width": w, "height": h,
                "boxes": [[b.xmin / w, b.ymin / h, b.xmax / w, b.ymax / h] for b in rec.boxes],
                "labels": [ids[b.label] for b in rec.boxes], "names": [b.label for b in rec.boxes],
                "difficult": [int(b.difficult) for b in rec.boxes],
            })
            c.boxes += len(rec.boxes)
            c.negatives += not rec.boxes
            c.difficult += sum(b.difficult for b in rec.boxes)
            c.per_class.update(b.label for b in rec.boxes)
        index[split] = entries
    info = {"source_format": ann.source_format, "command": command, "notes": notes,
            "counts": {s: {"images": c.images, "boxes": c.boxes, "negatives": c.negatives,
                           "difficult": c.difficult} for s, c in counts.items()}}
    write_index(out, classes, image_root, index, info)
    return BuildReport(out, classes, counts, notes)


def read_annotations(fmt: str, inputs: list[str], *, classes: list[str] | None = None,
                     images_dir: str | None = None, reference_clip: bool = False) -> Annotations:
    """Read `inputs` in format `fmt` (lisa: the CSV; imglab/coco: one file per split, `SPLIT=PATH` or
    named by stem; voc: the VOC folder; yolo: the data YAML or folder)."""
    from deepvision.datasets.detection import readers
    from deepvision.datasets.detection.schema import FORMATS

    if fmt not in FORMATS:
        raise UserError(f"unknown annotation format '{fmt}'; valid: {', '.join(FORMATS)}")
    if not inputs:
        raise UserError(f"give the {fmt} annotations to read")
    single = {"lisa": "the allAnnotations.csv file", "voc": "the VOC folder", "yolo": "the data YAML or folder"}
    if fmt in single and len(inputs) != 1:
        raise UserError(f"{fmt}: give one input, {single[fmt]}; got {len(inputs)}")
    if fmt == "lisa":
        return readers.read_lisa(inputs[0], classes)
    if fmt == "imglab":
        return readers.read_imglab(readers.split_files(inputs), reference_clip)
    if fmt == "voc":
        return readers.read_voc(inputs[0], images_dir=images_dir)
    if fmt == "coco":
        return readers.read_coco(readers.split_files(inputs), images_dir)
    return readers.read_yolo(inputs[0])


def build_from_files(fmt: str, inputs: list[str | Path], out: str | Path, *, classes: str | list[str] | None = None,
                     fix: str | None = None, test_fraction: float = 0.25, seed: int = 42, images_dir: str | None = None,
                     reference_clip: bool = False, strict: bool = False, command: str = "") -> BuildReport:
    """`deepvision detection build`: read annotations in format `fmt` and write the dataset index to `out`.

    `classes`: names in id order (a list, a comma list, classes.txt or label_map.pbtxt), "all" (every class
    found), or None (the format's own order, else sorted; LISA: the reference's 3 classes).
    """
    from deepvision.datasets.detection.schema import LISA_CLASSES

    names: list[str] | None = None
    if isinstance(classes, list):
        names = list(classes)
    elif classes and classes != "all":
        names = read_class_list(classes)
    elif fmt == "lisa" and classes is None:
        names = list(LISA_CLASSES)
    ann = read_annotations(fmt, [str(i) for i in inputs], classes=names, images_dir=images_dir,
                           reference_clip=reference_clip)
    extra = [classes] if isinstance(classes, str) and Path(classes).is_file() else []
    return build_dataset(ann, out, classes=names, fix=fix, test_fraction=test_fraction, seed=seed, strict=strict,
                         command=command, extra_inputs=extra)


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
    return os.path.relpath(path.resolve(), start.resolve())
