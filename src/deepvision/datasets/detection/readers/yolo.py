"""YOLO datasets as Ultralytics reads them: a data YAML (path, train, val, test, names) or a folder
with classes.txt, and one `class cx cy w h` text file of normalised boxes per image."""

from __future__ import annotations

import math
import os
import unicodedata
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from deepvision.data.imageio import image_size
from deepvision.datasets.detection.readers.common import IMAGE_EXTENSIONS, file_problem, inside, parse_number
from deepvision.datasets.detection.schema import Annotations, Box, ImageRecord
from deepvision.errors import UserError
from deepvision.fileio import same_file
from deepvision.safeload import (
    any_case,
    by_name_any_case,
    check_class_names,
    is_image_file,
    name_lines,
    printable,
    read_text_file,
    tree_entries,
)


def _yolo_names(value: Any, where: str) -> list[str]:
    if isinstance(value, dict):
        index: dict[int, Any] = {}
        for key, name in value.items():  # int() would also read '١', '+1' and ' 2' as class numbers
            plain = isinstance(key, str) and key.isascii() and key.isdigit() and str(int(key)) == key
            if not plain and (isinstance(key, bool) or not isinstance(key, int)):
                raise UserError(f"{where}: names key {printable(repr(key))[:40]} is not a class index; names must "
                                f"map class indices 0, 1, ... to names")
            if int(key) in index:
                raise UserError(f"{where}: names gives class {int(key)} twice; give each index once")
            index[int(key)] = name
        keys = sorted(index)
        if keys != list(range(len(keys))):
            raise UserError(f"{where}: names must be numbered 0..{len(keys) - 1}")
        names = [index[k] for k in keys]
    elif isinstance(value, list):
        names = list(value)
    else:
        raise UserError(f"{where}: names must be a list or a mapping of class index to name")
    for i, name in enumerate(names):  # a nested list or mapping would become its Python text
        if isinstance(name, bool) or not isinstance(name, (str, int)):
            raise UserError(f"{where}: names entry {i} is {name!r}; each class name must be text")
    return [str(n) for n in names]  # control characters: refused by the build with the other class names


def _class_lines(path: Path) -> list[str]:
    """A classes.txt as YOLO tools write it: one class name a line ('traffic light' is one class)."""
    names = name_lines(read_text_file(path, "YOLO class list"))
    check_class_names(names, str(path))
    return names


def _check_beside(names: list[str], yaml_path: Path, classes_txt: Path) -> None:
    """A classes.txt beside the data YAML must list its names in its order: tools that read the one file
    would otherwise name every box differently from the other."""
    listed = _class_lines(classes_txt)
    if listed == names:
        return
    i = next((i for i, (a, b) in enumerate(zip(names, listed)) if a != b), min(len(names), len(listed)))
    what = (f"class {i} is {printable(repr(names[i]))[:40]} in {yaml_path.name} and {printable(repr(listed[i]))[:40]} "
            f"in classes.txt") if i < min(len(names), len(listed)) else \
        f"{yaml_path.name} names {len(names)} classes and classes.txt {len(listed)}"
    raise UserError(f"{yaml_path} and {classes_txt} beside it disagree ({what}); make them list the same classes in "
                    f"the same order, or remove classes.txt")


def _check_nc(nc: Any, count: int, where: str) -> None:
    """`nc`, when given, must be the number of names (Ultralytics refuses a mismatch too)."""
    if nc is None:
        return
    if isinstance(nc, bool) or not isinstance(nc, int):
        raise UserError(f"{where}: nc must be the number of classes, got {str(nc)[:20]!r}")
    if nc != count:
        raise UserError(f"{where}: nc is {nc} but names lists {count} class(es); they must match")


def _yolo_class(value: str, where: str) -> int:
    """A class index as Ultralytics writes it ("3"; "3.0" is accepted); 1.5, nan or inf are refused."""
    number = parse_number(value, where, "class")
    if not math.isfinite(number) or not number.is_integer():
        raise UserError(f"{where}: class {value!r} is not an integer class index")
    return int(number)


def _yolo_split_path(base: Path, name: str, where: str) -> Path:
    """A path data.yaml or a split list names: an absolute path as written (Ultralytics' habit: the user's
    own layout), a relative one inside `base` ('..' may not climb out of it)."""
    if PurePosixPath(name).is_absolute() and not any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in name):
        return Path(name)
    return inside(base, name, where)


def _list_entry(base: Path, listing: Path, line: str, line_no: int) -> Path:
    """The image a list's line names: absolute as written, else inside `base`, else inside the list's folder;
    a relative line that names a file in both (and not one file) is refused, not read from the first."""
    q = _yolo_split_path(base, line, str(listing))
    if PurePosixPath(line).is_absolute() or same_file(listing.parent, base):
        return q
    beside = inside(listing.parent, line, str(listing))
    if not q.exists():
        return beside
    if beside.exists() and not same_file(q, beside):
        raise UserError(f"{listing} line {line_no}: {line!r} names both {q} and {beside} (the list is read from "
                        f"{base} and from its own folder); give the path absolute, or remove the wrong file")
    return q


def _yolo_images(entry: Any, base: Path, where: str) -> tuple[list[tuple[Path, str]], list[Path]]:
    """The images of one split, each with where it was named (its folder, or a list's file and line), and
    the split's image folders: folders and .txt lists, absolute or inside the dataset folder `base`, whose
    lines name images the same way (relative to `base`, or to the list's folder)."""
    entries = entry if isinstance(entry, list) else [entry]
    out: list[tuple[Path, str]] = []
    folders: list[Path] = []
    for e in entries:
        if not isinstance(e, str) or not e or "\0" in e:
            raise UserError(f"YOLO split {e!r}: give a folder of images or a .txt list of images")
        p = _yolo_split_path(base, e, where)
        if p.is_dir():
            folders.append(p)
            out += [(q, f"the folder {p}") for q in _tree(p, base) if q.suffix.lower() in IMAGE_EXTENSIONS]
        elif p.suffix == ".txt" and p.is_file():  # a list of image paths, relative to the dataset path
            listed: dict[str, tuple[int, str]] = {}
            for line_no, text in enumerate(read_text_file(p, "YOLO image list").splitlines(), 1):
                for line in text.split():
                    q = _list_entry(base, p, line, line_no)
                    first, spelt = listed.setdefault(os.path.normcase(os.path.realpath(q)), (line_no, line))
                    if first != line_no or spelt != line:
                        also = f" (as {spelt!r} and {line!r})" if spelt != line else ""
                        raise UserError(f"{p} lines {first} and {line_no} both name {q}{also}; list each image "
                                        f"once")
                    out.append((q, f"{p} line {line_no}"))
        else:
            raise UserError(f"YOLO split {e}: {p} is neither a folder of images nor a .txt list of images")
    return out, folders


def _tree(folder: Path, base: Path) -> list[Path]:
    """The files under a split's folder, linked folders followed (as Ultralytics' glob does) inside the dataset
    folder `base` (or inside the split's folder, where it lies outside `base`)."""
    return tree_entries(folder, base if folder.resolve().is_relative_to(base.resolve()) else folder)


def _orphan_labels(folders: list[Path], claimed: dict[Path, Path], base: Path) -> list[ImageRecord]:
    """A record, its image missing, for each label file of a split's image folder that no image takes (its
    image deleted or renamed): the build counts it with the other missing images, so its boxes are never left
    out without a word. In the labels/ folder every .txt is a label file; beside the images, only a .txt whose
    every line reads as a box (classes.txt, split lists and notes live there too). The folders of .txt image
    lists are not searched (two lists may share a folder)."""
    out = []
    for folder in folders:
        labels = yolo_label_path(folder / "_").parent
        if not labels.is_dir():
            continue
        for label in (q for q in _tree(labels, base) if q.suffix.lower() == ".txt"):
            if label.resolve() not in claimed and label.is_file() and (labels != folder or _reads_as_boxes(label)):
                image = claimed[label.resolve()] = folder / label.relative_to(labels).with_suffix(".*")
                out.append(ImageRecord(str(image.resolve()), looked_in=(f"{image.name} (the image of {label})",
                                                                          str(image.parent)), source=str(label)))
    return out


def _reads_as_boxes(path: Path) -> bool:
    """Whether `path` has lines and every one is a YOLO box or polygon: `class x y ...`, 5 or an odd count of
    numbers (a class list, a split list or a README has words)."""
    try:
        rows = [[float(x) for x in line.split()] for line in read_text_file(path, "YOLO label file").splitlines()
                if line.strip()]
    except (UserError, ValueError):
        return False
    return bool(rows) and all(len(r) == 5 or len(r) > 5 and len(r) % 2 for r in rows)


def _label_beside(image: Path, label: Path) -> Path | None:
    """The label file LabelImg leaves beside `image` (an empty .txt, or one whose every line is a box) when
    Ultralytics reads `label` in labels/ instead; None when there is none (or the two are one file)."""
    beside = image.with_suffix(".txt")
    if beside == label or file_problem(beside) is not None or same_file(beside, label):
        return None
    return beside if beside.stat().st_size == 0 or _reads_as_boxes(beside) else None


def yolo_label_path(image: Path, listings: dict[Path, dict[str, Path]] | None = None) -> Path:
    """Ultralytics' rule: the last /images/ in the path becomes /labels/, and the suffix .txt. As on the
    case-insensitive systems Ultralytics also runs on, the folders (Images/, Labels/) and the suffix (a.TXT) are
    matched in any case; two spellings (labels/ and Labels/, a.txt and a.TXT) are refused naming both, as
    reading one would build the other's photos as negatives. `listings` keeps the folders' listings across calls."""
    listings = {} if listings is None else listings

    def spelled(folder: Path, name: str, key: Callable[[Path], str | None], what: str) -> Path:
        if folder not in listings:
            listings[folder] = by_name_any_case(folder.iterdir(), key, what) if folder.is_dir() else {}
        return listings[folder].get(key(folder / name) or name, folder / name)

    parts = list(image.parts)
    label = image.with_suffix(".txt")
    for i in range(len(parts) - 1, -1, -1):
        if parts[i].casefold() == "images":
            labels = spelled(Path(*parts[:i]), "labels", lambda p: "labels" if p.name.casefold() == "labels" else None,
                             "labels folder")
            label = labels.joinpath(*parts[i + 1:]).with_suffix(".txt")
            break
    return spelled(label.parent, label.name, lambda p: p.stem + p.suffix.lower() if p.suffix.lower() == ".txt"
                   else None, "label file")


def _check_split_folders(images: Path, split_dirs: list[str]) -> None:
    """Beside classes.txt only images/train, val and test are read: refuse what would be left out without a word
    (another split folder, photos lying in images/ beside the split folders)."""
    if other := [d for d in split_dirs if d not in ("train", "val", "test")]:
        raise UserError(f"{images} holds split folders {', '.join(other)} that would be left out: beside classes.txt "
                        f"only images/train, images/val and images/test are read; rename them, or give a data YAML "
                        f"naming each split's folder (e.g. val: images/{other[0]})")
    loose = sorted(p.name for p in images.iterdir()  # a FIFO or a broken link named like a photo: named as such
                   if p.suffix.lower() in IMAGE_EXTENSIONS and is_image_file(p, images)) if split_dirs else []
    if loose:
        raise UserError(f"{images} holds {len(loose)} photos beside its split folders that would be in no split "
                        f"({', '.join(loose[:3])}{', ...' if len(loose) > 3 else ''}); move them into a split folder "
                        f"(e.g. images/{split_dirs[0]}/, their labels into labels/{split_dirs[0]}/)")


def read_yolo(source: str | Path) -> Annotations:
    """A YOLO dataset: an Ultralytics data YAML (path, train, val, test, names), or a folder holding one,
    or a folder with images/SPLIT/ and labels/SPLIT/ plus classes.txt. Label lines are
    `class cx cy w h` normalised; polygon lines (segments) become their bounding box.
    """
    from deepvision.config.io import load_yaml_text  # the project's one YAML loader (plain data only)

    source = Path(source)
    spec: dict[str, Any]
    yamls = sorted(p for p in source.iterdir() if p.suffix.lower() in (".yaml", ".yml")) if source.is_dir() else []
    if len(yamls) > 1:  # Ultralytics is given its data YAML; taking the first by name would be a guess
        pick = next((p for p in yamls if p.name == "data.yaml"), yamls[0])
        raise UserError(f"{source} holds {len(yamls)} YAML files ({', '.join(p.name for p in yamls)}); give the data "
                        f"YAML itself, e.g. deepvision detection build yolo {pick}")
    if source.is_dir() and not yamls:
        classes_txt = source / "classes.txt"
        if not classes_txt.is_file():
            raise UserError(f"{source}: a YOLO folder needs data.yaml or classes.txt with the class names")
        images = any_case(source, "images", "images folder")  # Images/ is images/, as labels/ is found
        split_dirs = [d.name for d in sorted(images.iterdir()) if d.is_dir()] if images.is_dir() else []
        _check_split_folders(images, split_dirs)
        spec = {"path": ".", "names": _class_lines(classes_txt)}
        spec.update({s: f"{images.name}/{s}" for s in split_dirs} or {"all": images.name if images.is_dir() else "."})
        yaml_path = source / "classes.txt"
    else:
        if source.is_dir():
            yaml_path = yamls[0]
        elif source.exists() and not source.is_file():
            raise UserError(f"{source} is not a regular file (a FIFO or device); give the YOLO data.yaml")
        elif not source.exists():
            raise UserError(f"YOLO data file not found: {source}")
        else:
            yaml_path = source
        # bounded: depth and alias expansion
        spec = load_yaml_text(read_text_file(yaml_path, "YOLO data file"), str(yaml_path)) or {}
        if not isinstance(spec, dict) or "names" not in spec:
            raise UserError(f"{yaml_path} has no 'names' (the class names)")
    names = _yolo_names(spec["names"], str(yaml_path))
    _check_nc(spec.get("nc"), len(names), str(yaml_path))
    if yaml_path.name != "classes.txt" and (yaml_path.parent / "classes.txt").is_file():
        _check_beside(names, yaml_path, yaml_path.parent / "classes.txt")
    if not isinstance(spec.get("path") or "", str):
        raise UserError(f"{yaml_path}: path must be a folder, got {spec['path']!r}")
    base = Path(spec["path"]) if spec.get("path") else Path(".")
    if not base.is_absolute():
        base = yaml_path.parent / base  # a relative path: from the folder holding data.yaml, as Ultralytics reads it
    splits: dict[str, list[ImageRecord]] = {}
    claimed: dict[Path, Path] = {}  # label file -> the image that takes it
    folders: dict[str, list[Path]] = {}
    listings: dict[Path, dict[str, Path]] = {}  # the folders searched for label files, listed once
    for split in ("train", "val", "test", "all"):
        if not spec.get(split):
            continue
        records = []
        beside: list[tuple[Path, Path]] = []  # (label file beside a photo, where YOLO reads that photo's labels)
        images, folders[split] = _yolo_images(spec[split], base, f"{yaml_path}, {split}")
        for image, named_in in images:
            record = ImageRecord(str(image.resolve()), source=named_in)
            label = yolo_label_path(image, listings)
            kind = file_problem(label)
            if kind not in (None, "missing"):
                raise UserError(f"YOLO label file {label} is {kind}, not a text file")
            if (other_label := _label_beside(image, label)) is not None:
                if kind is None:  # two files of boxes for one photo: taking labels/ would drop the other silently
                    raise UserError(f"{image} has two label files, {label} and {other_label} beside it; YOLO reads "
                                    f"only {label}: remove the other")
                beside.append((other_label, label))
            if kind is None:
                other = claimed.setdefault(label.resolve(), image)
                if other.resolve() != image.resolve():  # img.jpg and img.png: one file of boxes for two photos
                    raise UserError(f"{other} and {image} share the label file {label}; give each image its own "
                                    f"file name stem (rename or remove one)")
                size = image_size(image)
                if size is not None:
                    record.width, record.height = size
                for line_no, line in enumerate(read_text_file(label, "YOLO label file").splitlines(), 1):
                    values = line.split()
                    if not values:
                        continue
                    where = f"{label} line {line_no}"
                    if len(values) < 5 or (len(values) > 5 and len(values) % 2 == 0):
                        raise UserError(f"{where}: expected 'class cx cy w h' (or a polygon), got {line!r}")
                    cls = _yolo_class(values[0], where)
                    if not 0 <= cls < len(names):  # refused by the build, or dropped by --fix, like a NaN box
                        record.boxes.append(Box(*(math.nan,) * 4, str(cls), problem=f"{where}: class index "
                                                f"{cls} is not in names (0..{len(names) - 1})"))
                        continue
                    nums = [parse_number(v, where, "coordinate") for v in values[1:]]
                    if len(nums) == 4:
                        cx, cy, w, h = nums
                        box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
                    else:
                        xs, ys = nums[0::2], nums[1::2]
                        box = (min(xs), min(ys), max(xs), max(ys))
                    if not all(math.isfinite(v) for v in nums):  # min/max would skip a NaN vertex silently
                        box = (math.nan,) * 4  # refused by the build, or dropped by --fix, like any NaN box
                    if size is None:  # missing/unreadable image: reported at build time
                        record.boxes.append(Box(*box, names[cls]))
                    else:
                        sx, sy = size
                        record.boxes.append(Box(box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy, names[cls]))
            records.append(record)
        if beside:  # LabelImg's layout: read as negatives, the set would train on no boxes at all
            (first, label), more = beside[0], len(beside) - 1
            raise UserError(f"{len(beside)} label file(s) lie beside the {split} photos ({first}"
                            f"{f' and {more} more' if more else ''}); YOLO reads a photo's labels from the labels/ "
                            f"folder that mirrors images/ ({label.parent}): move them there")
        splits[split] = records
    for split, split_folders in folders.items():
        splits[split] += _orphan_labels(split_folders, claimed, base)
    if not splits:
        raise UserError(f"{yaml_path} names no split (train, val or test)")
    return Annotations(splits, names, [], "yolo", inputs=[str(source), str(yaml_path)],
                       read_from=str(yaml_path))
