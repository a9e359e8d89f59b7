"""COCO instances JSON (`instances_train2017.json`: images, annotations, categories)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from deepvision.datasets.detection.readers.common import count_line, inside, parse_number
from deepvision.datasets.detection.schema import Annotations, Box, ImageRecord
from deepvision.errors import UserError
from deepvision.fileio import same_file
from deepvision.safeload import MAX_JSON_FILE_BYTES, load_json, printable, read_bytes


def _coco_image_dir(json_path: Path, images: list[dict[str, Any]], images_dir: Path | None) -> Path:
    """The folder holding most of the split's `file_name`s (a spread sample of them), the standard layout
    ANNOTATIONS/../SPLIT2017/ searched first: one missing image (or a case slip in its name) must not send
    every other image of the split to a folder that holds none of them. Two folders holding as many are
    refused, as the first searched would be a guess; with none, the first folder that exists is named."""
    if images_dir is not None:
        return images_dir
    stem = json_path.stem  # instances_val2017 -> val2017, the standard COCO layout
    split_dir = stem.split("_", 1)[1] if "_" in stem else stem
    candidates = [json_path.parent.parent / split_dir, json_path.parent, json_path.parent / split_dir,
                  json_path.parent / "images", json_path.parent.parent / "images" / split_dir,
                  json_path.parent.parent / "images"]
    names = [img["file_name"] for img in images if isinstance(img.get("file_name"), str) and img["file_name"]]
    names = names[::max(1, len(names) // 1000)]  # a few stats per image of a 118k-image split would be slow
    found: list[tuple[int, Path, str]] = []  # (images held, folder, one of them)
    for c in candidates:
        if not c.is_dir() or any(same_file(c, f) for _, f, _ in found):
            continue
        held = []
        for name in names:
            try:
                if inside(c, name, str(json_path)).is_file():
                    held.append(name)
            except UserError:
                continue  # reported with the image it belongs to
        found.append((len(held), c, held[0] if held else ""))
    best = sorted((f for f in found if f[0]), key=lambda f: -f[0])  # stable: the search order breaks no tie
    if len(best) > 1 and best[0][0] == best[1][0]:
        raise UserError(f"{json_path}: its images (e.g. {printable(best[0][2])[:60]}) are both in {best[0][1]} "
                        f"and in {best[1][1]}; give the folder to read with --images")
    return best[0][1] if best else found[0][1] if found else json_path.parent


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
    category_ids: dict[str, int] = {}  # class name -> its id, across the files
    unknown_cats: Counter = Counter()
    crowd = 0
    for split, json_path in files.items():
        data = _coco_json(json_path)
        names: dict[int, str] = {}
        ids: dict[str, int] = {}  # class name -> id, in this file
        for cat in data["categories"]:
            ident = _coco_int(cat, "id", f"{json_path}, category {str(cat)[:40]}")
            name = cat.get("name")
            if "name" not in cat:
                raise UserError(f"{json_path}: category {ident} has no 'name'; give each category its class name")
            if not isinstance(name, str) or not name.strip() or name != name.strip():
                raise UserError(f"{json_path}: category {ident}: 'name' must be a class name without surrounding "
                                f"spaces, got {printable(json.dumps(name))[:40]}")
            if ident in names:
                raise UserError(f"{json_path}: category id {ident} is given twice in 'categories' "
                                f"({names[ident][:40]!r} and {name[:40]!r}); give each category its own id")
            if name in ids:
                raise UserError(f"{json_path}: category name {name[:40]!r} is given twice in 'categories' (ids "
                                f"{ids[name]} and {ident}); give each class one category")
            if categories.get(ident, name) != name:
                raise UserError(f"{json_path}: category id {ident} is '{name}' here but "
                                f"'{categories[ident]}' in another file")
            if category_ids.get(name, ident) != ident:
                raise UserError(f"{json_path}: category '{name}' has id {ident} here but {category_ids[name]} in "
                                f"another file; give a class one id in every file")
            categories[ident] = names[ident] = name
            category_ids[name] = ids[name] = ident
        folder = _coco_image_dir(json_path, data["images"], Path(images_dir) if images_dir else None)
        records: dict[int, ImageRecord] = {}
        file_names: dict[str, int] = {}  # file_name -> the id of its image
        for img in data["images"]:
            where = f"{json_path}, image {str(img.get('id'))[:20]}"
            file_name = img.get("file_name")
            if not isinstance(file_name, str) or not file_name:
                raise UserError(f"{where}: 'file_name' must be a path, got {printable(json.dumps(file_name))[:40]}")
            width, height = img.get("width"), img.get("height")
            ok = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height))
            ident = _coco_int(img, "id", where)
            if ident in records:
                raise UserError(f"{json_path}: image id {ident} is given twice in 'images' "
                                f"({records[ident].looked_in[0][:40]!r} and {file_name[:40]!r}); each image needs its "
                                f"own id (annotations name their image by it)")
            if file_name in file_names:
                raise UserError(f"{json_path}: file_name {file_name[:40]!r} is given twice in "
                                f"'images' (ids {file_names[file_name]} and {ident}); give each image one entry")
            file_names[file_name] = ident
            records[ident] = ImageRecord(
                str(inside(folder, file_name, where).resolve()), width=width if ok else None,
                height=height if ok else None, looked_in=(file_name, str(folder)))
        ann_ids: dict[int | float | str, str] = {}  # id -> the annotation it names, for messages
        for ann in data["annotations"]:
            where = f"{json_path.name}, annotation {str(ann.get('id'))[:20]}"
            ann_id = ann.get("id")
            if isinstance(ann_id, (int, float, str)) and not isinstance(ann_id, bool):
                shown = f"image {str(ann.get('image_id'))[:20]} bbox {str(ann.get('bbox'))[:40]}"
                if ann_id in ann_ids:  # pycocotools indexes annotations by id: the first would vanish
                    raise UserError(f"{json_path}: annotation id {str(ann_id)[:20]} is given twice in "
                                    f"'annotations' ({ann_ids[ann_id]} and {shown}); each annotation needs its own id")
                ann_ids[ann_id] = shown
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
            x, y, w, h = (parse_number(v, where, "bbox value") for v in bbox)
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
                     f"'categories': ids {count_line(unknown_cats)}")
    if crowd:
        notes.append(f"kept {crowd:,} iscrowd boxes as difficult (ignored by evaluation, not trained on)")
    return Annotations(splits, [categories[k] for k in sorted(categories)], notes, "coco",
                       inputs=[str(f) for f in files.values()],
                       read_from=" and ".join(str(f) for f in files.values()))
