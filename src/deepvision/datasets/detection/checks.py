"""The checks every annotation format shares before a dataset is built, each reported on one line:

- boxes with zero or negative width/height, a NaN or infinite coordinate, or reaching more than
  1 px outside the image: an error naming the file and box, unless `fix` is "clip" (clip to the
  image, drop what is then empty or not finite) or "drop"; coordinates at most 1 px outside
  (annotation tools round) are clipped silently; a YOLO class id outside the names is refused the
  same way, and dropped by either `fix` (no repair applies);
- class names not in the class list: skipped and counted (an error with `strict`); class names
  that are empty or hold control characters (a newline would split classes.txt): an error;
- a box given twice in one image (one class and coordinates): the first kept, the others dropped and counted;
- images without boxes: kept as negatives and counted;
- missing or unreadable image files: skipped and counted (an error with `strict`); a path that is
  a FIFO, device or folder instead of a file: an error (never opened, so it cannot block);
- the output folder: never an input folder or a folder inside one (a folder read, or one holding
  images), nor one holding an input file it would write over.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from deepvision.data.detection.index import FORMAT, OWN_FILES, bad_boxes, check_split_name
from deepvision.data.imageio import image_size
from deepvision.datasets.detection.readers.common import file_problem
from deepvision.datasets.detection.schema import Annotations, Box, ImageRecord
from deepvision.errors import UserError
from deepvision.placement import enclosing, require_own_folder
from deepvision.safeload import check_class_names as safe_class_names
from deepvision.safeload import printable

TOLERANCE = 1.0  # px beyond the border that annotation tools produce by rounding; clipped silently


def _problem(box: Box, width: int, height: int) -> str | None:
    if not all(map(math.isfinite, box.coords)):
        return "has a coordinate that is not a finite number"
    if box.xmax <= box.xmin or box.ymax <= box.ymin:
        return "has zero or negative width/height"
    t = TOLERANCE
    if box.xmin < -t or box.ymin < -t or box.xmax > width + t or box.ymax > height + t:
        return f"extends outside the {width}x{height} image"
    if _too_thin(_clip(box, width, height), width, height):
        return "has a width or height too small to store (zero once normalised to [0, 1] in 32-bit floats)"
    return None


def _too_thin(box: Box, width: int, height: int) -> bool:
    """A box inside the image whose side is positive in pixels but zero as the index holds it (1e-7 px at x = 10):
    the index reader would refuse what the build wrote, so the build applies the reader's own rule."""
    coords = box.normalised(width, height)
    # float32 moves a value in [0, 1] by at most 2**-25: a wider side stays positive (no array per box)
    return min(coords[2] - coords[0], coords[3] - coords[1]) <= 2**-23 and bool(bad_boxes(coords)[0])


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
            if not finite or box.xmax <= box.xmin or box.ymax <= box.ymin or _too_thin(box, rec.width, rec.height):
                if problem is None:  # a sliver within the tolerance band: nothing left to keep
                    counters["bad"].append(f"{rec.file}: {box.describe()} is empty inside the image")
                counters["emptied"] += 1
                continue
            boxes.append(box)
        rec.boxes = _drop_repeats(rec, boxes, counters)
        kept.append(rec)
    return kept


def _drop_repeats(rec: ImageRecord, boxes: list[Box], counters: dict[str, Any]) -> list[Box]:
    """Keep the first of the boxes of one class and coordinates (as kept, after clipping), as Ultralytics does:
    a box given twice would be two targets in training and an extra false negative in evaluation."""
    kept: list[Box] = []
    seen: set[tuple[str, tuple[float, float, float, float]]] = set()
    for box in boxes:
        if (box.label, box.coords) in seen:
            counters["twice"].append(rec.file)
            continue
        seen.add((box.label, box.coords))
        kept.append(box)
    return kept


def check_class_names(classes: list[str], ann: Annotations) -> None:
    """The common class-name rule (`safeload.check_class_names`: printable, no surrounding spaces, each name
    once), naming the first image whose boxes carry a name it refuses."""
    for name in classes:
        try:
            safe_class_names([name], "the annotations")
            continue
        except UserError:
            first = next((r.file for rs in ann.splits.values() for r in rs for b in r.boxes if b.label == name), None)
            if first is None:
                raise
        safe_class_names([name], f"the annotations (first in the boxes of {printable(first)})")  # outside `except`
    safe_class_names(classes, "the annotations")


def check_output(out: Path, ann: Annotations, split_names: list[str], extra_inputs: list[str]) -> None:
    """Refuse an output folder that is an input folder or lies inside one (a folder read, or one holding
    images: the index would land among the photos, and YOLO reads image folders recursively), or that
    would write over an input, or a split name its file SPLIT.json cannot take, before anything is written."""
    for split in split_names:  # the readers' names (a SPLIT=PATH argument is refused before it is read)
        check_split_name(split, f"the {ann.source_format} annotations")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for the built dataset")
    target = out.resolve()
    inputs = [Path(item) for item in [*ann.inputs, *extra_inputs]]
    image_dirs = {Path(r.file).parent for rs in ann.splits.values() for r in rs}
    outer = enclosing(target, [*(p for p in inputs if p.is_dir()), *sorted(image_dirs)])
    if outer is not None:
        where = "is an input folder" if outer.resolve() == target else "is inside the input folder"
        raise UserError(f"--out {out} {where} ({outer}); write the dataset beside it, e.g. "
                        f"--out {outer.parent / (outer.name + '-built')}")
    hint = f"write the dataset to another folder, e.g. --out {out / 'built'}"
    for path in inputs:
        if path.is_file() and path.resolve().parent == target:
            raise UserError(f"--out {out} holds the input {path}, which the build could write over; {hint}")
    outputs = [target / name for name in (*OWN_FILES, *(f"{s}.json" for s in split_names))]
    for path in outputs:
        if path.exists() and any(_same_file(path, Path(i)) for i in ann.inputs):
            raise UserError(f"--out {out}: the build would write over the input {path}; {hint}")
    # another folder's files (a train.json of the user's) are never replaced; an earlier build is, whole
    require_own_folder(out, "dataset.json", f'{{"format": "{FORMAT}"', "detection build")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def missing_line(missing: list[ImageRecord], ann: Annotations) -> str:
    """Where the first missing image was looked for (or its path), for the build's one-line report."""
    first = missing[0]
    where = f"first: {first.file}"
    if first.looked_in:
        name, *dirs = first.looked_in
        shown = ", ".join(dirs[:6]) + (f" ({len(dirs)} folders)" if len(dirs) > 6 else "")
        where = f"looked for {name} in {shown}"
    return where

