"""Readers for LISA CSV, dlib imglab XML, Pascal VOC XML, COCO JSON and YOLO txt annotations.

Each returns `Annotations` (schema.py): absolute image paths, boxes in continuous pixel coordinates,
and a note for everything it skipped or repaired. Checks common to all formats (bad boxes, unknown
classes, missing images) happen when the dataset is built (build.py).

Why one module of ~430 lines: five small readers that share the path and box helpers; each is
~60 lines and they are read side by side when a format's conventions are compared.
"""

from __future__ import annotations

import math
import os
import unicodedata
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from deepvision.data.imageio import image_size
from deepvision.datasets.detection.schema import Annotations, Box, ImageRecord
from deepvision.errors import UserError
from deepvision.fileio import special_kind
from deepvision.safeload import MAX_JSON_FILE_BYTES, MAX_TEXT_BYTES, input_file, load_json, printable, read_bytes

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def file_problem(path: str | Path) -> str | None:
    """None for an existing regular file; else "missing" or what the path is ("a FIFO", "a directory")."""
    try:
        return special_kind(os.stat(path).st_mode)
    except (OSError, ValueError):
        return "missing"


def inside(base: Path, name: str, where: str, roots: tuple[Path, ...] = ()) -> Path:
    """`base / name` for a path named by an annotation; refused when it would leave `base` (an absolute
    path, a drive, or '..' reaching above it), so an annotation can only name files of its dataset. A
    file that is there must also lie in one of the dataset's folders `roots` (default: `base`) once links
    are followed, so a symbolic link planted in the dataset cannot lead to a file outside it."""
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise UserError(f"{where}: image path {name!r} holds a control character")
    rel = PurePosixPath(name.replace("\\", "/"))
    if not name or rel.is_absolute() or PureWindowsPath(name).drive \
            or os.path.normpath(str(rel)).split("/")[0] == "..":
        raise UserError(f"{where}: image path {name!r} is outside the dataset folder {base}; paths in "
                        f"annotations must be relative to it")
    path = base / rel
    if os.path.lexists(path):
        target = path.resolve()
        if not any(target.is_relative_to(top.resolve()) for top in roots or (base,)):
            raise UserError(f"{where}: {path} is a link to {target}, outside the dataset folder "
                            f"{(roots or (base,))[0]}; copy the file into the dataset (or give the folder "
                            f"holding it with --images)")
    return path


def read_text(path: Path) -> str:
    """A UTF-8 text file named by the dataset (regular files only), or a one-line UserError."""
    try:
        return read_bytes(path, "annotation file", MAX_TEXT_BYTES).decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None


def _float(value: Any, where: str, what: str) -> float:
    """A number from annotation text; Python's digit separators ('3_8' is 38) are refused, not read."""
    try:
        if isinstance(value, str) and "_" in value:
            raise ValueError(value)
        return float(value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: {what} {value!r} is not a number") from None


def _flag(value: str, where: str) -> bool:
    """An annotation's yes/no field: 1/0, true/false (any case) or empty (no); anything else is refused
    rather than guessed."""
    text = value.strip().lower()
    if text in ("", "0", "false"):
        return False
    if text in ("1", "true"):
        return True
    raise UserError(f"{where}: {value.strip()[:20]!r} is not 0, 1, true or false")


def _parse_xml(path: Path) -> ET.Element:
    try:
        return ET.fromstring(read_bytes(path, "annotation file", MAX_JSON_FILE_BYTES))  # a 2 GB XML at most
    except ET.ParseError as exc:
        raise UserError(f"{path} is not valid XML ({exc})") from None
    except RecursionError:
        raise UserError(f"{path} is nested too deeply to be an annotation file") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None


def _count_line(counter: Counter, limit: int = 6) -> str:
    items = [f"{printable(name)} ({n:,})" for name, n in counter.most_common(limit)]  # tags are the file's text
    return ", ".join(items) + (f", ... ({len(counter)} in all)" if len(counter) > limit else "")


# -- LISA ------------------------------------------------------------------------------------------
def read_lisa(csv_path: str | Path, classes: list[str] | None) -> Annotations:
    """LISA `allAnnotations.csv`: skip the header, keep the text before the first comma,
    split it on ';' into path, tag, x1, y1, x2, y2. Only rows whose tag is in `classes` are kept (None
    keeps all), and images enter the dataset only through kept rows, as in the reference builder.
    """
    path = Path(csv_path)
    if path.is_dir():
        path = path / "allAnnotations.csv"
    input_file(path, "LISA annotations", " (give the allAnnotations.csv file)")
    lines = read_text(path).splitlines()
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
        file = str(inside(path.parent, rel, where).resolve())
        images.setdefault(file, ImageRecord(file)).boxes.append(Box(x1, y1, x2, y2, tag))
    notes = []
    if skipped:
        notes.append(f"skipped {sum(skipped.values()):,} LISA rows of {len(skipped)} tag(s) outside the classes: "
                     f"{_count_line(skipped)}")
    return Annotations({"all": list(images.values())}, list(classes) if classes else None, notes, "lisa",
                       inputs=[str(path)], read_from=f"{len(lines) - 1:,} rows of {path}")


# -- dlib imglab -----------------------------------------------------------------------------------
def read_imglab(files: dict[str, Path], reference_clip: bool = False) -> Annotations:
    """dlib imglab XML files (one per split). Boxes marked ignore are skipped; boxes are clipped to the
    image: start = max(0, left), end = min(W, left + width), or with `reference_clip`
    min(W, start + width) (the reference's rule). Boxes with end <= start are dropped.
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
            file = str(inside(xml_path.parent, rel, f"{xml_path}, <image file>").resolve())
            size = image_size(file)
            record = ImageRecord(file, width=size[0] if size else None, height=size[1] if size else None)
            for box in image.iter("box"):
                if _flag(box.get("ignore", "0"), f"{xml_path}, <box ignore>"):
                    ignored += 1
                    continue
                where = f"{xml_path.name}, image {rel}"
                left, top, width, height = (_float(box.get(k), where, k) for k in ("left", "top", "width", "height"))
                label_el = box.find("label")
                label = (label_el.text or "").strip() if label_el is not None else ""
                if size is None or not all(map(math.isfinite, (left, top, width, height))):
                    # missing image or NaN/inf: keep the raw box; the build step reports it
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
    return Annotations(splits, None, notes, "imglab", inputs=[str(f) for f in files.values()],
                       read_from=" and ".join(str(f) for f in files.values()))


# -- Pascal VOC ------------------------------------------------------------------------------------
ANNOTATION_DIRS = ("Annotations", "annotations", "xml", "xmls", "labels")  # where tools put the XML files


def _path_name(value: str) -> str:
    """The file name of a `<path>` written on any machine (C:\\data\\a.jpg or /home/x/a.jpg)."""
    return PureWindowsPath(value).name if "\\" in value else PurePosixPath(value).name


def voc_image_dirs(xml_dir: Path, dataset_root: Path, folder: str) -> list[Path]:
    """Where labelling tools leave the photo of an XML file, in the order searched: beside the XML, VOC's
    JPEGImages/, the XML's `<folder>` under the dataset root (or beside the XML folder), a sibling images/."""
    dirs = [xml_dir, dataset_root / "JPEGImages"]
    folder_rel = PurePosixPath(folder.replace("\\", "/")) if folder else None
    if folder_rel is not None and not folder_rel.is_absolute() and ".." not in folder_rel.parts:
        dirs += [dataset_root / folder_rel, xml_dir.parent / folder_rel]
    dirs += [dataset_root / "images", dataset_root / "JPEGImages", xml_dir.parent / "images", dataset_root]
    out: list[Path] = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


def read_voc_xml(xml_path: Path, image_dirs: list[Path] | None = None, dataset_root: Path | None = None
                 ) -> ImageRecord:
    """One VOC/LabelImg XML file. VOC corners are 1-based and inclusive: (xmin - 1, ymin - 1, xmax, ymax).

    The photo is `<filename>` (else the file name of `<path>`, else the XML's own name with an image
    extension), looked for in `image_dirs` (default: `voc_image_dirs`). The absolute `<path>` of the
    author's machine is never used as such: only its file name, so an annotation names files of its
    dataset alone.
    """
    root = _parse_xml(xml_path)
    if root.tag != "annotation":
        raise UserError(f"{xml_path} is not a Pascal VOC annotation (root element <{root.tag}>)")
    filename = (root.findtext("filename") or "").strip()
    path_name = _path_name((root.findtext("path") or "").strip())
    explicit = image_dirs is not None
    if image_dirs is None:
        image_dirs = voc_image_dirs(xml_path.parent, dataset_root or xml_path.parent,
                                    (root.findtext("folder") or "").strip())
    names = [n for n in dict.fromkeys((filename, path_name)) if n]
    if filename and not PurePosixPath(filename).suffix and path_name.startswith(filename + "."):
        names.reverse()  # some tools write the stem alone in <filename>
    if not names:
        names = [xml_path.stem + ext for ext in (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")]
    # a link may lead anywhere within the folders searched (a folder given with --images is its own root)
    roots = () if explicit else (dataset_root or xml_path.parent, *image_dirs)
    candidates = [inside(d, n, f"{xml_path}, <filename>", roots) for n in names for d in image_dirs]
    file = next((c for c in candidates if file_problem(c) != "missing"), candidates[0])
    size = root.find("size")
    width = height = None
    if size is not None:  # a missing, zero or non-finite size is read from the image instead
        width, height = (_float(size.findtext(k) or 0, str(xml_path), k) for k in ("width", "height"))
        width, height = ((int(v) if math.isfinite(v) and 1 <= v <= 2**31 else None) for v in (width, height))
    record = ImageRecord(str(file.resolve()), width=width, height=height,
                         looked_in=(names[0], *(str(d) for d in image_dirs)))
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        bnd = obj.find("bndbox")
        if bnd is None:
            raise UserError(f"{xml_path}: object '{name}' has no <bndbox>")
        x1, y1, x2, y2 = (_float(bnd.findtext(k), str(xml_path), k) for k in ("xmin", "ymin", "xmax", "ymax"))
        difficult = _flag(obj.findtext("difficult") or "0", f"{xml_path}, <difficult>")
        record.boxes.append(Box(x1 - 1, y1 - 1, x2, y2, name, difficult))
    return record


def _voc_folders(root: Path) -> tuple[Path, Path]:
    """(annotation folder, dataset root) for a VOC year folder, a dataset folder holding annotations/
    beside images/ (or annotations/xmls/), a folder of XML files beside their photos, or the
    annotation folder itself (its parent is then the dataset root)."""
    for name in ANNOTATION_DIRS:
        for d in (root / name, root / name / "xmls"):
            if d.is_dir() and any(d.glob("*.xml")):
                return d, root
    if root.name.lower() in {n.lower() for n in ANNOTATION_DIRS}:
        return root, root.parent
    return root, root


def read_voc(root: str | Path, splits: list[str] | None = None, images_dir: str | Path | None = None
             ) -> Annotations:
    """A VOC year folder (Annotations/, JPEGImages/, ImageSets/Main/SPLIT.txt), a LabelImg-style
    dataset (annotations/*.xml beside images/), or a folder of XML files beside their photos; the
    annotations/ folder itself may be given. Photos are found as in `voc_image_dirs`, or only in
    `images_dir`. Splits come from ImageSets/Main (train, val, test; trainval when there is no train);
    without ImageSets every XML file is in the split 'all'.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"VOC folder not found: {root}")
    ann_dir, dataset_root = _voc_folders(root)
    image_dirs = None
    if images_dir is not None:
        if not Path(images_dir).is_dir():
            raise UserError(f"--images: folder not found: {images_dir}")
        image_dirs = [Path(images_dir)]
    sets = dataset_root / "ImageSets" / "Main"
    ids: dict[str, list[str]] = {}
    if sets.is_dir():
        available = {p.stem: p for p in sets.glob("*.txt") if "_" not in p.stem}
        names = splits or [s for s in ("train", "val", "test") if s in available]
        if not splits and "train" not in available and "trainval" in available:
            names = ["trainval"] + [s for s in ("test",) if s in available]
        for name in names:
            if name not in available:
                raise UserError(f"{sets} has no {name}.txt; available: {', '.join(sorted(available)) or 'none'}")
            ids["train" if name == "trainval" and not splits else name] = read_text(available[name]).split()
    if not ids:
        xmls = sorted(ann_dir.glob("*.xml"))
        if not xmls:
            raise UserError(f"no VOC annotations in {root}: expected Annotations/*.xml, annotations/*.xml or "
                            f"*.xml files")
        ids["all"] = [p.stem for p in xmls]
    out: dict[str, list[ImageRecord]] = {}
    for split, stems in ids.items():
        records = []
        for stem in stems:
            xml = inside(ann_dir, f"{stem}.xml", str(sets / f"{split}.txt"))
            if not xml.is_file():
                raise UserError(f"{sets / (split + '.txt')} lists '{stem}' but {xml} does not exist")
            records.append(read_voc_xml(xml, image_dirs, dataset_root))
        out[split] = records
    count = sum(len(r) for r in out.values())
    return Annotations(out, None, [], "voc", inputs=[str(root), str(ann_dir)],
                       read_from=f"{count:,} XML file(s) in {ann_dir}")


# -- COCO ------------------------------------------------------------------------------------------
def _coco_image_dir(json_path: Path, images: list[dict[str, Any]], images_dir: Path | None) -> Path:
    if images_dir is not None:
        return images_dir
    stem = json_path.stem  # instances_val2017 -> val2017, the standard COCO layout
    split_dir = stem.split("_", 1)[1] if "_" in stem else stem
    candidates = [json_path.parent, json_path.parent.parent / split_dir, json_path.parent / split_dir,
                  json_path.parent / "images", json_path.parent.parent / "images" / split_dir,
                  json_path.parent.parent / "images"]
    probe = next((img.get("file_name") for img in images if isinstance(img.get("file_name"), str)), None)
    if probe:
        for c in candidates:
            try:
                if inside(c, probe, str(json_path)).is_file():
                    return c
            except UserError:
                break  # reported with the image it belongs to
    return json_path.parent


def _coco_json(json_path: Path) -> dict[str, Any]:
    try:
        data = load_json(read_bytes(json_path, "COCO annotation file", MAX_JSON_FILE_BYTES), str(json_path))
    except OSError as exc:
        raise UserError(f"cannot read {json_path}: {exc.strerror or exc}") from None
    if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= set(data):
        raise UserError(f"{json_path} is not a COCO instances file (needs images, annotations, categories)")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data[key], list) or not all(isinstance(e, dict) for e in data[key]):
            raise UserError(f"{json_path}: '{key}' must be a list of objects, got {str(data[key])[:60]}")
    return data


def _coco_int(entry: dict[str, Any], key: str, where: str) -> int:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        raise UserError(f"{where}: '{key}' must be an integer, got {value!r}")
    return int(value)


def read_coco(files: dict[str, Path], images_dir: str | Path | None = None) -> Annotations:
    """COCO instances JSON files (one per split). bbox [x, y, w, h] -> corners; iscrowd boxes are kept as
    difficult (ignored by evaluation, as COCO's own evaluation does). Classes follow the category ids.
    Each `file_name` must lie inside the image folder.
    """
    splits: dict[str, list[ImageRecord]] = {}
    categories: dict[int, str] = {}
    unknown_cats: Counter = Counter()
    crowd = 0
    for split, json_path in files.items():
        data = _coco_json(json_path)
        names: dict[int, str] = {}
        for cat in data["categories"]:
            ident = _coco_int(cat, "id", f"{json_path}, category {str(cat)[:40]}")
            name = str(cat.get("name", ""))
            if categories.get(ident, name) != name:
                raise UserError(f"{json_path}: category id {ident} is '{name}' here but "
                                f"'{categories[ident]}' in another file")
            categories[ident] = names[ident] = name
        folder = _coco_image_dir(json_path, data["images"], Path(images_dir) if images_dir else None)
        records: dict[int, ImageRecord] = {}
        for img in data["images"]:
            where = f"{json_path}, image {str(img.get('id'))[:20]}"
            file_name = img.get("file_name")
            if not isinstance(file_name, str) or not file_name:
                raise UserError(f"{where}: 'file_name' must be a path, got {file_name!r}")
            width, height = img.get("width"), img.get("height")
            ok = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height))
            ident = _coco_int(img, "id", where)
            if ident in records:
                raise UserError(f"{json_path}: image id {ident} is given twice in 'images'; each image needs "
                                f"its own id (annotations name their image by it)")
            records[ident] = ImageRecord(
                str(inside(folder, file_name, where).resolve()), width=width if ok else None,
                height=height if ok else None, looked_in=(file_name, str(folder)))
        for ann in data["annotations"]:
            where = f"{json_path.name}, annotation {str(ann.get('id'))[:20]}"
            image_id = _coco_int(ann, "image_id", where)
            if image_id not in records:
                raise UserError(f"{json_path}: annotation {ann.get('id')} refers to image id {image_id}, "
                                f"which is not in 'images'")
            cat = _coco_int(ann, "category_id", where)
            if cat not in names:
                unknown_cats[str(cat)] += 1
                continue
            bbox = ann.get("bbox")
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise UserError(f"{where}: bbox must be [x, y, width, height], got {str(bbox)[:60]}")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
                raise UserError(f"{where}: bbox values must be JSON numbers, got {str(bbox)[:60]}")
            x, y, w, h = (_float(v, where, "bbox value") for v in bbox)
            crowd_flag = ann.get("iscrowd", 0)
            if isinstance(crowd_flag, bool) or crowd_flag not in (0, 1):
                raise UserError(f"{where}: iscrowd {str(crowd_flag)[:20]!r} is not 0 or 1")
            is_crowd = crowd_flag == 1
            crowd += is_crowd
            records[image_id].boxes.append(Box(x, y, x + w, y + h, names[cat], is_crowd))
        splits[split] = list(records.values())
    notes = []
    if unknown_cats:
        notes.append(f"skipped {sum(unknown_cats.values()):,} annotations whose category_id is not in "
                     f"'categories': ids {_count_line(unknown_cats)}")
    if crowd:
        notes.append(f"kept {crowd:,} iscrowd boxes as difficult (ignored by evaluation, not trained on)")
    return Annotations(splits, [categories[k] for k in sorted(categories)], notes, "coco",
                       inputs=[str(f) for f in files.values()],
                       read_from=" and ".join(str(f) for f in files.values()))


# -- YOLO ------------------------------------------------------------------------------------------
def _yolo_names(value: Any, where: str) -> list[str]:
    if isinstance(value, dict):
        try:
            keys = sorted(int(k) for k in value)
        except (TypeError, ValueError):
            raise UserError(f"{where}: names must map class indices 0, 1, ... to names") from None
        if keys != list(range(len(keys))):
            raise UserError(f"{where}: names must be numbered 0..{len(keys) - 1}")
        names = [value[k] if k in value else value[str(k)] for k in keys]
    elif isinstance(value, list):
        names = list(value)
    else:
        raise UserError(f"{where}: names must be a list or a mapping of class index to name")
    for i, name in enumerate(names):  # a nested list or mapping would become its Python text
        if isinstance(name, bool) or not isinstance(name, (str, int)):
            raise UserError(f"{where}: names entry {i} is {name!r}; each class name must be text")
    return [str(n) for n in names]  # control characters: refused by the build with the other class names


def _yolo_class(value: str, where: str) -> int:
    """A class index as Ultralytics writes it ("3"; "3.0" is accepted); 1.5, nan or inf are refused."""
    number = _float(value, where, "class")
    if not math.isfinite(number) or not number.is_integer():
        raise UserError(f"{where}: class {value!r} is not an integer class index")
    return int(number)


def _yolo_split_path(base: Path, name: str, where: str) -> Path:
    """A path data.yaml or a split list names: an absolute path as written (Ultralytics' habit: the user's
    own layout), a relative one inside `base` ('..' may not climb out of it)."""
    if PurePosixPath(name).is_absolute() and not any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in name):
        return Path(name)
    return inside(base, name, where)


def _yolo_images(entry: Any, base: Path, where: str) -> list[Path]:
    """The images of one split: folders and .txt lists, absolute or inside the dataset folder `base`, whose
    lines name images the same way (relative to `base`, or to the list's folder)."""
    entries = entry if isinstance(entry, list) else [entry]
    out: list[Path] = []
    for e in entries:
        if not isinstance(e, str) or not e or "\0" in e:
            raise UserError(f"YOLO split {e!r}: give a folder of images or a .txt list of images")
        p = _yolo_split_path(base, e, where)
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.suffix == ".txt" and p.is_file():  # a list of image paths, relative to the dataset path
            for line in read_text(p).split():
                q = _yolo_split_path(base, line, str(p))
                out.append(q if q.exists() or q.is_absolute() else inside(p.parent, line, str(p)))
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
    from deepvision.config.io import load_yaml_text  # the project's one YAML loader (plain data only)

    source = Path(source)
    spec: dict[str, Any]
    if source.is_dir() and not any(source.glob("*.yaml")):
        classes_txt = source / "classes.txt"
        if not classes_txt.is_file():
            raise UserError(f"{source}: a YOLO folder needs data.yaml or classes.txt with the class names")
        split_dirs = [d.name for d in sorted((source / "images").iterdir()) if d.is_dir()] \
            if (source / "images").is_dir() else []
        spec = {"path": str(source), "names": read_text(classes_txt).split()}
        spec.update({s: f"images/{s}" for s in split_dirs} or {"all": "images" if (source / "images").is_dir()
                                                                else "."})
        yaml_path = source / "classes.txt"
    else:
        if source.is_dir():
            yaml_path = sorted(source.glob("*.yaml"))[0]
        elif source.exists() and not source.is_file():
            raise UserError(f"{source} is not a regular file (a FIFO or device); give the YOLO data.yaml")
        elif not source.exists():
            raise UserError(f"YOLO data file not found: {source}")
        else:
            yaml_path = source
        spec = load_yaml_text(read_text(yaml_path), str(yaml_path)) or {}  # bounded: depth and alias expansion
        if not isinstance(spec, dict) or "names" not in spec:
            raise UserError(f"{yaml_path} has no 'names' (the class names)")
    names = _yolo_names(spec["names"], str(yaml_path))
    if not isinstance(spec.get("path") or "", str):
        raise UserError(f"{yaml_path}: path must be a folder, got {spec['path']!r}")
    base = Path(spec["path"]) if spec.get("path") else Path(".")
    if not base.is_absolute():
        base = yaml_path.parent / base  # a relative path: from the folder holding data.yaml, as Ultralytics reads it
    splits: dict[str, list[ImageRecord]] = {}
    for split in ("train", "val", "test", "all"):
        if not spec.get(split):
            continue
        records = []
        for image in _yolo_images(spec[split], base, f"{yaml_path}, {split}"):
            record = ImageRecord(str(image.resolve()))
            label = yolo_label_path(image)
            kind = file_problem(label)
            if kind not in (None, "missing"):
                raise UserError(f"YOLO label file {label} is {kind}, not a text file")
            if kind is None:
                size = image_size(image)
                if size is not None:
                    record.width, record.height = size
                for number, line in enumerate(read_text(label).splitlines(), 1):
                    values = line.split()
                    if not values:
                        continue
                    where = f"{label} line {number}"
                    if len(values) < 5 or (len(values) > 5 and len(values) % 2 == 0):
                        raise UserError(f"{where}: expected 'class cx cy w h' (or a polygon), got {line!r}")
                    cls = _yolo_class(values[0], where)
                    if not 0 <= cls < len(names):  # refused by the build, or dropped by --fix, like a NaN box
                        record.boxes.append(Box(*(math.nan,) * 4, str(cls), problem=f"{where}: class index "
                                                f"{cls} is not in names (0..{len(names) - 1})"))
                        continue
                    nums = [_float(v, where, "coordinate") for v in values[1:]]
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
        splits[split] = records
    if not splits:
        raise UserError(f"{yaml_path} names no split (train, val or test)")
    return Annotations(splits, names, [], "yolo", inputs=[str(source), str(yaml_path)],
                       read_from=str(yaml_path))


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
        p = input_file(path, "annotation file")
        if name in out:
            raise UserError(f"two files for split '{name}' ({out[name]} and {p}); name them SPLIT=PATH")
        out[name] = p
    return out
