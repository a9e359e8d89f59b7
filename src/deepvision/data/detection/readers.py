"""Readers for LISA CSV, dlib imglab XML, Pascal VOC XML, COCO JSON and YOLO txt annotations.

Each returns `Annotations` (schema.py): absolute image paths, boxes in continuous pixel coordinates,
and a note for everything it skipped or repaired. Checks common to all formats (bad boxes, unknown
classes, missing images) happen when the dataset is built (build.py).

Why one module of ~430 lines: five small readers that share the path and box helpers; each is
~60 lines and they are read side by side when a format's conventions are compared.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from deepvision.data.detection.schema import Annotations, Box, ImageRecord
from deepvision.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def image_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) as displayed (EXIF rotation applied) from the file header; None if unreadable."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _float(value: Any, where: str, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: {what} {value!r} is not a number") from None


def _parse_xml(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise UserError(f"{path} is not valid XML ({exc})") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None


def _count_line(counter: Counter, limit: int = 6) -> str:
    items = [f"{name} ({n:,})" for name, n in counter.most_common(limit)]
    return ", ".join(items) + (f", ... ({len(counter)} in all)" if len(counter) > limit else "")


# -- LISA ------------------------------------------------------------------------------------------
def read_lisa(csv_path: str | Path, classes: list[str] | None) -> Annotations:
    """LISA `allAnnotations.csv` (SPEC §1.9): skip the header, keep the text before the first comma,
    split it on ';' into path, tag, x1, y1, x2, y2. Only rows whose tag is in `classes` are kept (None
    keeps all), and images enter the dataset only through kept rows, as in the reference builder.
    """
    path = Path(csv_path)
    if path.is_dir():
        path = path / "allAnnotations.csv"
    if not path.is_file():
        raise UserError(f"LISA annotations not found: {path} (give the allAnnotations.csv file)")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text; is it the LISA allAnnotations.csv?") from None
    if not lines or not lines[0].startswith("Filename;"):
        raise UserError(f"{path} does not start with the LISA header 'Filename;Annotation tag;...'")
    wanted = set(classes) if classes is not None else None
    images: dict[str, ImageRecord] = {}
    skipped: Counter = Counter()
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        fields = line.split(",")[0].split(";")
        where = f"{path.name} line {number}"
        if len(fields) < 6:
            raise UserError(f"{where}: expected 'path;tag;x1;y1;x2;y2;...', got {line[:80]!r}")
        rel, tag = fields[0], fields[1]
        if wanted is not None and tag not in wanted:
            skipped[tag] += 1
            continue
        x1, y1, x2, y2 = (_float(v, where, name) for v, name in zip(fields[2:6], ("x1", "y1", "x2", "y2")))
        file = str((path.parent / rel).resolve())
        images.setdefault(file, ImageRecord(file)).boxes.append(Box(x1, y1, x2, y2, tag))
    notes = []
    if skipped:
        notes.append(f"skipped {sum(skipped.values()):,} LISA rows of {len(skipped)} tag(s) outside the classes: "
                     f"{_count_line(skipped)}")
    return Annotations({"all": list(images.values())}, list(classes) if classes else None, notes, "lisa")


# -- dlib imglab -----------------------------------------------------------------------------------
def read_imglab(files: dict[str, Path], reference_clip: bool = False) -> Annotations:
    """dlib imglab XML files (one per split). Boxes marked ignore are skipped; boxes are clipped to the
    image as in SPEC §10.4: start = max(0, left), end = min(W, left + width), or with `reference_clip`
    min(W, start + width) (the reference's rule, erratum #34). Boxes with end <= start are dropped.
    """
    splits: dict[str, list[ImageRecord]] = {}
    ignored = clipped = dropped = 0
    for split, xml_path in files.items():
        root = _parse_xml(xml_path)
        if root.tag != "dataset" or root.find("images") is None:
            raise UserError(f"{xml_path} is not an imglab file (expected <dataset><images>...)")
        records = []
        for image in root.iter("image"):
            rel = image.get("file")
            if not rel:
                raise UserError(f"{xml_path}: an <image> element has no file attribute")
            file = str((xml_path.parent / rel).resolve())
            size = image_size(file)
            record = ImageRecord(file, width=size[0] if size else None, height=size[1] if size else None)
            for box in image.iter("box"):
                if box.get("ignore", "0") not in ("0", ""):
                    ignored += 1
                    continue
                where = f"{xml_path.name}, image {rel}"
                left, top, width, height = (_float(box.get(k), where, k) for k in ("left", "top", "width", "height"))
                label_el = box.find("label")
                label = (label_el.text or "").strip() if label_el is not None else ""
                if size is None:  # missing image: keep the raw box; the build step reports the file
                    record.boxes.append(Box(left, top, left + width, top + height, label))
                    continue
                coords = []
                for start, length, limit in ((left, width, size[0]), (top, height, size[1])):
                    lo = max(0.0, start)
                    hi = min(float(limit), (lo if reference_clip else start) + length)
                    coords.append((lo, hi))
                (x1, x2), (y1, y2) = coords
                if x2 <= x1 or y2 <= y1:
                    dropped += 1
                    continue
                if (x1, y1, x2, y2) != (left, top, left + width, top + height):
                    clipped += 1
                record.boxes.append(Box(x1, y1, x2, y2, label))
            records.append(record)
        splits[split] = records
    notes = []
    if ignored:
        notes.append(f"skipped {ignored:,} boxes marked ignore")
    if clipped or dropped:
        rule = "reference rule, end from the clipped start" if reference_clip else "end from the unclipped start"
        notes.append(f"clipped {clipped:,} boxes extending past the image ({rule}); dropped {dropped:,} lying "
                     f"outside it")
    return Annotations(splits, None, notes, "imglab")


# -- Pascal VOC ------------------------------------------------------------------------------------
def read_voc_xml(xml_path: Path, image_dirs: list[Path]) -> ImageRecord:
    """One VOC/LabelImg XML file. VOC corners are 1-based and inclusive: (xmin - 1, ymin - 1, xmax, ymax)."""
    root = _parse_xml(xml_path)
    if root.tag != "annotation":
        raise UserError(f"{xml_path} is not a Pascal VOC annotation (root element <{root.tag}>)")
    filename = (root.findtext("filename") or "").strip()
    candidates = [d / filename for d in image_dirs if filename]
    if root.findtext("path"):
        candidates.append(Path(root.findtext("path").strip()))
    if not filename:
        candidates += [xml_path.with_suffix(ext) for ext in IMAGE_EXTENSIONS]
    file = next((c for c in candidates if c.is_file()), candidates[0] if candidates else xml_path.with_suffix(".jpg"))
    size = root.find("size")
    width = height = None
    if size is not None:
        width = int(_float(size.findtext("width") or 0, str(xml_path), "width")) or None
        height = int(_float(size.findtext("height") or 0, str(xml_path), "height")) or None
    record = ImageRecord(str(file.resolve()), width=width, height=height)
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        bnd = obj.find("bndbox")
        if bnd is None:
            raise UserError(f"{xml_path}: object '{name}' has no <bndbox>")
        x1, y1, x2, y2 = (_float(bnd.findtext(k), str(xml_path), k) for k in ("xmin", "ymin", "xmax", "ymax"))
        difficult = (obj.findtext("difficult") or "0").strip() not in ("0", "", "false", "False")
        record.boxes.append(Box(x1 - 1, y1 - 1, x2, y2, name, difficult))
    return record


def read_voc(root: str | Path, splits: list[str] | None = None) -> Annotations:
    """A VOC year folder (Annotations/, JPEGImages/, ImageSets/Main/SPLIT.txt) or a folder of XML files
    as LabelImg writes them (next to the images). Splits come from ImageSets/Main (train, val, test;
    trainval when there is no train); without ImageSets every XML file is in the split 'all'.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"VOC folder not found: {root}")
    ann_dir = root / "Annotations" if (root / "Annotations").is_dir() else root
    image_dirs = [root / "JPEGImages", ann_dir, root]
    sets = root / "ImageSets" / "Main"
    ids: dict[str, list[str]] = {}
    if sets.is_dir():
        available = {p.stem: p for p in sets.glob("*.txt") if "_" not in p.stem}
        names = splits or [s for s in ("train", "val", "test") if s in available]
        if not splits and "train" not in available and "trainval" in available:
            names = ["trainval"] + [s for s in ("test",) if s in available]
        for name in names:
            if name not in available:
                raise UserError(f"{sets} has no {name}.txt; available: {', '.join(sorted(available)) or 'none'}")
            ids["train" if name == "trainval" and not splits else name] = available[name].read_text().split()
    if not ids:
        xmls = sorted(ann_dir.glob("*.xml"))
        if not xmls:
            raise UserError(f"no VOC annotations in {root}: expected Annotations/*.xml or *.xml files")
        ids["all"] = [p.stem for p in xmls]
    out: dict[str, list[ImageRecord]] = {}
    for split, stems in ids.items():
        records = []
        for stem in stems:
            xml = ann_dir / f"{stem}.xml"
            if not xml.is_file():
                raise UserError(f"{sets / (split + '.txt')} lists '{stem}' but {xml} does not exist")
            records.append(read_voc_xml(xml, image_dirs))
        out[split] = records
    return Annotations(out, None, [], "voc")


# -- COCO ------------------------------------------------------------------------------------------
def _coco_image_dir(json_path: Path, images: list[dict[str, Any]], images_dir: Path | None) -> Path:
    if images_dir is not None:
        return images_dir
    stem = json_path.stem  # instances_val2017 -> val2017, the standard COCO layout
    split_dir = stem.split("_", 1)[1] if "_" in stem else stem
    candidates = [json_path.parent, json_path.parent.parent / split_dir, json_path.parent / split_dir,
                  json_path.parent / "images", json_path.parent.parent / "images" / split_dir,
                  json_path.parent.parent / "images"]
    probe = next((img.get("file_name") for img in images if img.get("file_name")), None)
    if probe:
        for c in candidates:
            if (c / probe).is_file():
                return c
    return json_path.parent


def read_coco(files: dict[str, Path], images_dir: str | Path | None = None) -> Annotations:
    """COCO instances JSON files (one per split). bbox [x, y, w, h] -> corners; iscrowd boxes are kept as
    difficult (ignored by evaluation, as COCO's own evaluation does). Classes follow the category ids.
    """
    splits: dict[str, list[ImageRecord]] = {}
    categories: dict[int, str] = {}
    unknown_cats: Counter = Counter()
    crowd = 0
    for split, json_path in files.items():
        try:
            data = json.loads(json_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{json_path} is not a JSON file ({exc})") from None
        except OSError as exc:
            raise UserError(f"cannot read {json_path}: {exc.strerror or exc}") from None
        if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= set(data):
            raise UserError(f"{json_path} is not a COCO instances file (needs images, annotations, categories)")
        for cat in data["categories"]:
            name = str(cat["name"])
            if categories.get(int(cat["id"]), name) != name:
                raise UserError(f"{json_path}: category id {cat['id']} is '{name}' here but "
                                f"'{categories[int(cat['id'])]}' in another file")
            categories[int(cat["id"])] = name
        names = {int(c["id"]): str(c["name"]) for c in data["categories"]}
        folder = _coco_image_dir(json_path, data["images"], Path(images_dir) if images_dir else None)
        records: dict[int, ImageRecord] = {}
        for img in data["images"]:
            records[int(img["id"])] = ImageRecord(str((folder / img["file_name"]).resolve()),
                                                  width=img.get("width"), height=img.get("height"))
        for ann in data["annotations"]:
            image_id = int(ann["image_id"])
            if image_id not in records:
                raise UserError(f"{json_path}: annotation {ann.get('id')} refers to image id {image_id}, "
                                f"which is not in 'images'")
            cat = int(ann["category_id"])
            if cat not in names:
                unknown_cats[str(cat)] += 1
                continue
            where = f"{json_path.name}, annotation {ann.get('id')}"
            bbox = ann.get("bbox")
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise UserError(f"{where}: bbox must be [x, y, width, height], got {bbox!r}")
            x, y, w, h = (_float(v, where, "bbox value") for v in bbox)
            is_crowd = bool(ann.get("iscrowd", 0))
            crowd += is_crowd
            records[image_id].boxes.append(Box(x, y, x + w, y + h, names[cat], is_crowd))
        splits[split] = list(records.values())
    notes = []
    if unknown_cats:
        notes.append(f"skipped {sum(unknown_cats.values()):,} annotations whose category_id is not in "
                     f"'categories': ids {_count_line(unknown_cats)}")
    if crowd:
        notes.append(f"kept {crowd:,} iscrowd boxes as difficult (ignored by evaluation, not trained on)")
    return Annotations(splits, [categories[k] for k in sorted(categories)], notes, "coco")


# -- YOLO ------------------------------------------------------------------------------------------
def _yolo_names(value: Any, where: str) -> list[str]:
    if isinstance(value, dict):
        keys = sorted(int(k) for k in value)
        if keys != list(range(len(keys))):
            raise UserError(f"{where}: names must be numbered 0..{len(keys) - 1}")
        return [str(value[k] if k in value else value[str(k)]) for k in keys]
    if isinstance(value, list):
        return [str(v) for v in value]
    raise UserError(f"{where}: names must be a list or a mapping of class index to name")


def _yolo_images(entry: Any, base: Path) -> list[Path]:
    entries = entry if isinstance(entry, list) else [entry]
    out: list[Path] = []
    for e in entries:
        p = Path(e) if Path(e).is_absolute() else base / e
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.suffix == ".txt" and p.is_file():  # a list of image paths, relative to the dataset path
            for line in p.read_text().split():
                q = Path(line)
                out.append(q if q.is_absolute() else (base / q if (base / q).exists() else p.parent / q))
        else:
            raise UserError(f"YOLO split {e}: {p} is neither a folder of images nor a .txt list of images")
    return out


def yolo_label_path(image: Path) -> Path:
    """Ultralytics' rule: the last /images/ in the path becomes /labels/, and the suffix .txt."""
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def read_yolo(source: str | Path) -> Annotations:
    """A YOLO dataset: an Ultralytics data YAML (path, train, val, test, names), or a folder holding one,
    or a folder with images/SPLIT/ and labels/SPLIT/ plus classes.txt. Label lines are
    `class cx cy w h` normalised; polygon lines (segments) become their bounding box.
    """
    import yaml

    source = Path(source)
    spec: dict[str, Any]
    if source.is_dir() and not any(source.glob("*.yaml")):
        classes_txt = source / "classes.txt"
        if not classes_txt.is_file():
            raise UserError(f"{source}: a YOLO folder needs data.yaml or classes.txt with the class names")
        split_dirs = [d.name for d in sorted((source / "images").iterdir()) if d.is_dir()] \
            if (source / "images").is_dir() else []
        spec = {"path": str(source), "names": classes_txt.read_text().split()}
        spec.update({s: f"images/{s}" for s in split_dirs} or {"all": "images" if (source / "images").is_dir()
                                                                else "."})
        yaml_path = source / "classes.txt"
    else:
        yaml_path = source if source.is_file() else sorted(source.glob("*.yaml"))[0]
        try:
            spec = yaml.safe_load(yaml_path.read_text()) or {}
        except (yaml.YAMLError, OSError) as exc:
            raise UserError(f"cannot read {yaml_path} as YAML: {exc}") from None
        if "names" not in spec:
            raise UserError(f"{yaml_path} has no 'names' (the class names)")
    names = _yolo_names(spec["names"], str(yaml_path))
    base = Path(spec.get("path") or yaml_path.parent)
    if not base.is_absolute():
        base = yaml_path.parent / base
    splits: dict[str, list[ImageRecord]] = {}
    bad_class: Counter = Counter()
    for split in ("train", "val", "test", "all"):
        if not spec.get(split):
            continue
        records = []
        for image in _yolo_images(spec[split], base):
            record = ImageRecord(str(image.resolve()))
            label = yolo_label_path(image)
            if label.is_file():
                size = image_size(image)
                if size is not None:
                    record.width, record.height = size
                for number, line in enumerate(label.read_text().splitlines(), 1):
                    values = line.split()
                    if not values:
                        continue
                    where = f"{label} line {number}"
                    if len(values) < 5 or (len(values) > 5 and len(values) % 2 == 0):
                        raise UserError(f"{where}: expected 'class cx cy w h' (or a polygon), got {line!r}")
                    cls = int(_float(values[0], where, "class"))
                    if not 0 <= cls < len(names):
                        bad_class[str(cls)] += 1
                        continue
                    nums = [_float(v, where, "coordinate") for v in values[1:]]
                    if len(nums) == 4:
                        cx, cy, w, h = nums
                        box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
                    else:
                        xs, ys = nums[0::2], nums[1::2]
                        box = (min(xs), min(ys), max(xs), max(ys))
                    if size is None:  # missing/unreadable image: reported at build time
                        record.boxes.append(Box(*box, names[cls]))
                    else:
                        sx, sy = size
                        record.boxes.append(Box(box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy, names[cls]))
            records.append(record)
        splits[split] = records
    if not splits:
        raise UserError(f"{yaml_path} names no split (train, val or test)")
    notes = []
    if bad_class:
        notes.append(f"skipped {sum(bad_class.values()):,} label lines whose class index is not in names "
                     f"(0..{len(names) - 1}): {_count_line(bad_class)}")
    return Annotations(splits, names, notes, "yolo")


def split_files(items: list[str], default_names: dict[str, str] | None = None) -> dict[str, Path]:
    """`SPLIT=PATH` or plain `PATH` arguments -> {split: path}; plain names are mapped by their stem
    (training.xml -> train, testing.xml -> test, instances_val2017.json -> val)."""
    aliases = {"training": "train", "testing": "test", "validation": "val", "valid": "val", **(default_names or {})}
    out: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or os.path.exists(item):
            path, name = item, Path(item).stem
            name = name.split("_", 1)[1] if name.startswith("instances_") else name
            name = aliases.get(name, name.rstrip("0123456789") or name)
            name = aliases.get(name, name)
        p = Path(path)
        if not p.is_file():
            raise UserError(f"annotation file not found: {p}")
        if name in out:
            raise UserError(f"two files for split '{name}' ({out[name]} and {p}); name them SPLIT=PATH")
        out[name] = p
    return out
