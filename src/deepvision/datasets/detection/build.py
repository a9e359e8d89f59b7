"""`deepvision detection build`: any supported annotation format -> the built index (docs/detection.md).

It reads the annotations (readers/), runs the checks every format shares (checks.py), splits by
image when they come as one set, and writes the index, the label map and classes.txt.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepvision.data.detection.index import FORMAT, VERSION
from deepvision.datasets.detection.checks import check_class_names, check_output, check_records, missing_line
from deepvision.datasets.detection.labelmap import label_map_text, read_class_list
from deepvision.datasets.detection.schema import Annotations, ImageRecord
from deepvision.errors import UserError
from deepvision.fileio import atomic_write_text, written_whole
from deepvision.placement import begins_with
from deepvision.safeload import first_repeat, image_identity, printable, read_json

FIXES = ("clip", "drop")


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


def _split_all(records: list[ImageRecord], test_fraction: float | None, seed: int | None
               ) -> dict[str, list[ImageRecord]]:
    """Split by image as the reference does: sklearn's train_test_split of the image list (75/25, seed 42)."""
    test_fraction, seed = 0.25 if test_fraction is None else test_fraction, 42 if seed is None else seed
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


def check_one_record_per_image(ann: Annotations) -> None:
    """Refuse an image file named by two records (an id in two VOC split lists, two XML files naming one
    photo, a symbolic or hard link to another record's image): its boxes would disagree, and it could land in
    train and test alike. Files are compared by identity (device, inode), paths where the file is absent."""
    entries = ((image_identity(rec.file), (split, i, rec)) for split, records in ann.splits.items()
               for i, rec in enumerate(records))
    repeat = first_repeat(entries, {})
    if repeat is not None:
        (first_split, _, first), (split, _, rec) = repeat
        link = f" (one file with {first.file}: a link)" if str(first.file) != str(rec.file) else ""
        raise UserError(f"{rec.file}{link} is named by two records, {first.source or 'a record'} ({first_split}) "
                        f"and {rec.source or 'a record'} ({split}); give each image one record in one split")


def check_split_options(ann: Annotations, test_fraction: float | None, seed: int | None) -> None:
    """Refuse --test-fraction or --seed where the annotations hold their own splits: they would be ignored."""
    given = [opt for opt, value in (("--test-fraction", test_fraction), ("--seed", seed)) if value is not None]
    if not given or list(ann.splits) == ["all"]:
        return
    names = ", ".join(ann.splits)
    where = f"{ann.inputs[0]} has ImageSets/Main lists ({names})" if ann.source_format == "voc" and ann.inputs \
        else f"the {ann.source_format} annotations come in splits ({names})"
    raise UserError(f"{' and '.join(given)} appl{'y' if len(given) > 1 else 'ies'} when the annotations come as one "
                    f"set; {where}: leave {' and '.join(given)} out")


def build_dataset(
    ann: Annotations,
    out: str | Path,
    *,
    classes: list[str] | None = None,
    fix: str | None = None,
    test_fraction: float | None = None,
    seed: int | None = None,
    strict: bool = False,
    command: str = "",
    extra_inputs: list[str] | None = None,
) -> BuildReport:
    """Check the annotations, split by image when they come as one set (`test_fraction`, default 0.25, and
    `seed`, default 42; refused when they come split), and write the index to `out` (`extra_inputs`: other
    files read, such as the class list, which `out` may not write over)."""
    if fix is not None and fix not in FIXES:
        raise UserError(f"--fix must be clip or drop, got {fix!r}")
    if test_fraction is not None and not 0 <= test_fraction < 1:
        raise UserError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    check_split_options(ann, test_fraction, seed)
    classes = list(classes or ann.classes or sorted({b.label for rs in ann.splits.values() for r in rs
                                                      for b in r.boxes}))
    if not classes:
        raise UserError("the annotations name no class; give the class names with --classes")
    check_class_names(classes, ann)
    out = Path(out)
    split_names = ["train", "test"] if list(ann.splits) == ["all"] else list(ann.splits)
    check_output(out, ann, split_names, extra_inputs or [])
    check_one_record_per_image(ann)
    counters: dict[str, Any] = {"missing": [], "unreadable": [], "unknown": Counter(), "bad": [], "emptied": 0,
                                "resized": [], "twice": []}
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
    if counters["twice"]:
        twice = counters["twice"]
        notes.append(f"dropped {len(twice):,} box(es) given twice in one image (one class and coordinates), "
                     f"first: {twice[0]}")
    missing = counters["missing"]
    total = sum(len(rs) for rs in ann.splits.values())
    if missing and not any(splits.values()) and not counters["unreadable"]:
        read = f"read {ann.read_from}" if ann.read_from else f"read {total:,} annotated image(s)"
        hint = "give the image folder with --images DIR" if ann.source_format in ("voc", "coco") else \
            "put the images where the annotations name them"  # only voc and coco take --images
        raise UserError(f"{read} but found none of their {len(missing):,} image(s); {missing_line(missing, ann)}"
                        f"; {hint}")
    problems = []
    if missing:
        problems.append(f"skipped {len(missing):,} of {total:,} image(s) whose image file is missing; "
                        f"{missing_line(missing, ann)}")
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
    emptied = [name for name, records in ann.splits.items() if records and not splits[name]]
    if emptied:  # a split built empty would train or evaluate on nothing, and the build would still pass
        raise UserError(f"no image of split {emptied[0]} is left to write ({len(ann.splits[emptied[0]]):,} "
                        f"annotated): {'; '.join(problems)}")
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
                "boxes": [b.normalised(w, h) for b in rec.boxes],
                "labels": [ids[b.label] for b in rec.boxes], "names": [b.label for b in rec.boxes],
                "difficult": [int(b.difficult) for b in rec.boxes],
            })
            c.boxes += len(rec.boxes)
            c.negatives += not rec.boxes
            c.difficult += sum(b.difficult for b in rec.boxes)
            c.per_class.update(b.label for b in rec.boxes)
        index[split] = entries
    stale = [s for s in previous_splits(out) if s not in index]
    if stale:  # an earlier build's split files would stay beside this build's, two data sets in one index
        notes.append(f"replaced the earlier build in {out}, its split(s) {', '.join(stale)} removed")
    info = {"source_format": ann.source_format, "command": command, "notes": notes,
            "counts": {s: {"images": c.images, "boxes": c.boxes, "negatives": c.negatives,
                           "difficult": c.difficult} for s, c in counts.items()}}
    write_index(out, classes, image_root, index, info, stale)
    return BuildReport(out, classes, counts, notes)


def previous_splits(out: Path) -> list[str]:
    """The split names an earlier build in `out` lists (plain file names only: a name is a file to delete)."""
    try:
        old = read_json(out / "dataset.json", "dataset.json")
    except (FileNotFoundError, UserError):
        return []
    named = old.get("splits") if isinstance(old, dict) else None
    return [s for s in named if isinstance(s, str) and s and Path(s).name == s and not s.startswith(".")
            and begins_with(out / f"{s}.json", f'{{"format":"{FORMAT}"')] if isinstance(named, list) else []


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
    if images_dir is not None and fmt not in ("voc", "coco"):  # an option a reader would ignore is refused
        raise UserError(f"--images applies to voc and coco; {fmt} finds each image where its annotation names it")
    if reference_clip and fmt != "imglab":
        raise UserError(f"--reference-clip applies to imglab boxes; {fmt} has no such rule")
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
                     fix: str | None = None, test_fraction: float | None = None, seed: int | None = None,
                     images_dir: str | None = None,
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



def write_index(out: Path, classes: list[str], image_root: Path, splits: dict[str, list[dict[str, Any]]],
                info: dict[str, Any], stale: Iterable[str] = ()) -> None:
    """Write the dataset files together at the end (`written_whole`, dataset.json last): a build that fails
    or is stopped leaves an earlier build in `out` whole and no file, nor folder, in a new one. `stale`: the
    splits of an earlier build that this one lacks, whose files go."""
    try:
        root_ref = str(Path(_relpath(image_root, out)))
    except ValueError:
        root_ref = str(image_root)
    with written_whole(out, last="dataset.json", stale=[f"{split}.json" for split in stale]) as folder:
        for split, images in splits.items():
            doc = {"format": FORMAT, "version": VERSION, "split": split, "classes": classes, "images": images}
            atomic_write_text(folder / f"{split}.json", json.dumps(doc, separators=(",", ":")) + "\n")
        atomic_write_text(folder / "label_map.pbtxt", label_map_text(classes))
        atomic_write_text(folder / "classes.txt", "".join(f"{c}\n" for c in classes))
        meta = {"format": FORMAT, "version": VERSION, "classes": classes, "image_root": root_ref,
                "splits": list(splits), **info}
        atomic_write_text(folder / "dataset.json", json.dumps(meta, indent=2) + "\n")


def _relpath(path: Path, start: Path) -> str:
    return os.path.relpath(path.resolve(), start.resolve())
