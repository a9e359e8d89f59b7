"""`deepvision detection fake`: synthetic images with known objects, written in each tool's own format.

Every object's class is its shape (disc, square, triangle, ...) drawn in a random saturated colour on a
textured background (gradient, stripes, blotches, noise); sizes range from small (10 px) to about half
the image, so detectors can learn the task in minutes on a CPU. The same seed gives the same scenes
in every format, and `FakeResult.truth` holds the boxes a correct reader must recover.

Format quirks are reproduced on purpose: VOC's 1-based corners and `difficult` flags (objects under
14 px), COCO's sparse category ids and `iscrowd`, LISA's `;`/`,` CSV with tags outside the 3 classes,
imglab's `ignore` boxes and boxes past the border (one wholly outside), YOLO's missing and empty
label files for negatives.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from deepvision.datasets.detection.schema import FORMATS, LISA_CLASSES
from deepvision.errors import UserError
from deepvision.placement import new_output_folder
from deepvision.safeload import MAX_FAKE_IMAGES, MAX_FAKE_SIDE, check_range

SHAPES = ("disc", "square", "triangle", "diamond", "cross")
CLASSES = {"voc": ["disc", "square", "triangle"], "coco": ["disc", "square", "triangle"],
           "yolo": ["disc", "square", "triangle"], "lisa": list(LISA_CLASSES), "imglab": ["rear", "front"]}
LISA_DISTRACTOR = "speedLimit35"  # a 4th LISA tag, filtered out by the 3-class build
COCO_IDS = (1, 3, 7)  # sparse, like COCO's 1..90
DIFFICULT_BELOW = 14  # VOC: objects smaller than this are marked difficult


@dataclass
class FakeObject:
    box: tuple[int, int, int, int]  # continuous pixel corners x1, y1, x2, y2 (may pass the border for imglab)
    cls: int  # index into the format's classes; -1 for the LISA distractor
    difficult: bool = False
    ignore: bool = False  # imglab ignore boxes: not part of the truth


@dataclass
class FakeImage:
    file: Path
    width: int
    height: int
    objects: list[FakeObject] = field(default_factory=list)


@dataclass
class FakeResult:
    out: Path
    format: str
    classes: list[str]
    splits: dict[str, list[FakeImage]]
    build_args: list[str]  # the `deepvision detection build` arguments that read it

    def truth(self, split: str) -> dict[str, list[tuple[float, float, float, float, str, bool]]]:
        """{absolute image path: [(x1, y1, x2, y2, class, difficult)]} as a correct reader sees them."""
        out = {}
        for img in self.splits[split]:
            boxes = []
            for o in img.objects:
                if o.ignore or o.cls < 0:
                    continue
                x1, y1 = max(0, o.box[0]), max(0, o.box[1])
                x2, y2 = min(img.width, o.box[2]), min(img.height, o.box[3])
                if x2 > x1 and y2 > y1:
                    boxes.append((float(x1), float(y1), float(x2), float(y2), self.classes[o.cls], o.difficult))
            out[str(img.file.resolve())] = boxes
        return out


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(60, 170, 3).astype(np.float32)
    grad = rng.uniform(-0.4, 0.4, 2)
    img = base[None, None, :] + (x[..., None] * grad[0] + y[..., None] * grad[1]) * 64 / max(w, h)
    angle, period = rng.uniform(0, math.pi), rng.uniform(6, 24)
    stripes = np.sin((x * math.cos(angle) + y * math.sin(angle)) * 2 * math.pi / period)
    img += stripes[..., None] * rng.uniform(4, 14)
    small = rng.normal(0, 18, (max(2, h // 16), max(2, w // 16), 3)).astype(np.float32)
    blotches = np.asarray(Image.fromarray(np.clip(small + 128, 0, 255).astype(np.uint8)).resize((w, h),
                                                                                                 Image.BILINEAR))
    img += blotches.astype(np.float32) - 128
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255)


def _draw(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> None:
    x1, y1, x2, y2 = box
    r, b = x2 - 1, y2 - 1  # PIL corners are inclusive pixels
    if shape == "disc":
        draw.ellipse((x1, y1, r, b), fill=colour)
    elif shape == "square":
        draw.rectangle((x1, y1, r, b), fill=colour)
    elif shape == "triangle":
        draw.polygon([(x1, b), (r, b), ((x1 + r) / 2, y1)], fill=colour)
    elif shape == "diamond":
        draw.polygon([((x1 + r) / 2, y1), (r, (y1 + b) / 2), ((x1 + r) / 2, b), (x1, (y1 + b) / 2)], fill=colour)
    else:  # cross
        tw, th = max(2, (x2 - x1) // 3), max(2, (y2 - y1) // 3)
        draw.rectangle((x1, y1 + th, r, b - th), fill=colour)
        draw.rectangle((x1 + tw, y1, r - tw, b), fill=colour)


def _iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def fake_scene(rng: np.random.Generator, width: int, height: int, num_classes: int, *, max_objects: int = 4,
               distractor: bool = False, past_border: bool = False) -> tuple[Image.Image, list[FakeObject]]:
    """One textured image with 0..max_objects shapes (no two overlapping by IoU > 0.1)."""
    img = _background(rng, width, height)
    pil = Image.fromarray(img.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(pil)
    objects: list[FakeObject] = []
    count = int(rng.integers(1, max_objects + 1)) if rng.random() > 0.1 else 0
    small, large = 10, max(12, int(min(width, height) * 0.5))
    for _ in range(count * 4):
        if len(objects) == count:
            break
        side = int(rng.integers(small, large + 1)) if rng.random() > 0.25 else int(rng.integers(small, small + 6))
        aspect = rng.uniform(0.75, 1.33)
        w, h = max(small, int(side * aspect)), side
        lo_x, lo_y = (-w // 3, -h // 3) if past_border else (0, 0)
        x1 = int(rng.integers(lo_x, width - w - lo_x + 1))
        y1 = int(rng.integers(lo_y, height - h - lo_y + 1))
        box = (x1, y1, x1 + w, y1 + h)
        if any(_iou(box, o.box) > 0.1 for o in objects):
            continue
        cls = int(rng.integers(0, num_classes + (1 if distractor else 0)))
        shape = SHAPES[cls] if cls < num_classes else SHAPES[num_classes]
        hue = rng.uniform(0, 1)
        colour = tuple(int(255 * v) for v in _hsv(hue, rng.uniform(0.7, 1.0), rng.uniform(0.75, 1.0)))
        _draw(draw, shape, box, colour)
        objects.append(FakeObject(box, cls if cls < num_classes else -1, difficult=min(w, h) < DIFFICULT_BELOW))
    return pil, objects


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    import colorsys

    return colorsys.hsv_to_rgb(h, s, v)


def make_fake(out: str | Path, fmt: str, images: int = 40, size: int = 128, seed: int = 0,
              test_fraction: float = 0.25) -> FakeResult:
    """Write `images` synthetic images (about size x size) with annotations in format `fmt` under `out`."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format '{fmt}'; valid: {', '.join(FORMATS)}")
    check_range("--images", images, 2, MAX_FAKE_IMAGES)
    check_range("--size", size, 48, MAX_FAKE_SIDE)
    if not 0 < test_fraction < 1:
        raise UserError(f"--test-fraction must be in (0, 1), got {test_fraction}")
    out = Path(out)
    with new_output_folder(out):  # a stopped run leaves nothing its next run would refuse
        rng = np.random.default_rng(seed)
        classes = CLASSES[fmt]
        n_test = max(1, int(round(images * test_fraction)))
        names = {"train": images - n_test, "test": n_test}
        if fmt in ("coco", "yolo"):
            names = {"train": names["train"], "val": names["test"]}
        splits: dict[str, list[FakeImage]] = {}
        counter = 0
        for split, n in names.items():
            records = []
            for _ in range(n):
                w, h = (size, size * 3 // 4) if counter % 2 else (size, size)
                pil, objects = fake_scene(rng, w, h, len(classes), distractor=fmt == "lisa",
                                          past_border=fmt == "imglab")
                rel = _relative_name(fmt, split, counter)
                path = out / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                if path.suffix == ".png":
                    pil.save(path)
                else:
                    pil.save(path, quality=95)
                for o in objects:
                    if fmt == "imglab":  # dense/tiny vehicles: marked ignore
                        o.ignore = min(o.box[2] - o.box[0], o.box[3] - o.box[1]) < 13
                    o.difficult = o.difficult and fmt in ("voc", "coco")  # the other formats have no such flag
                records.append(FakeImage(path, w, h, objects))
                counter += 1
            splits[split] = records
        writer = {"voc": _write_voc, "coco": _write_coco, "lisa": _write_lisa, "imglab": _write_imglab,
                  "yolo": _write_yolo}[fmt]
        build_args = writer(out, classes, splits)
    return FakeResult(out, fmt, classes, splits, build_args)


def _relative_name(fmt: str, split: str, i: int) -> str:
    if fmt == "voc":
        return f"JPEGImages/{2008 + i // 1000}_{i % 1000:06d}.jpg"
    if fmt == "coco":
        return f"{split}2017/{i:012d}.jpg"
    if fmt == "lisa":  # LISA frames: a sequence folder, an annotation folder, PNG frames
        seq = f"aiua1202{14 + i % 2:02d}-{i % 3}"
        return f"{seq}/frameAnnotations-DataLog02142012_external_camera.avi_annotations/sign_{i:04d}.avi_image{i}.png"
    if fmt == "imglab":
        return f"images/{split}/image{i:04d}.jpg"
    return f"images/{split}/img_{i:05d}.jpg"


def _write_voc(out: Path, classes: list[str], splits: dict[str, list[FakeImage]]) -> list[str]:
    (out / "Annotations").mkdir(exist_ok=True)
    (out / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for split, images in splits.items():
        for img in images:
            objects = "".join(
                f"\t<object>\n\t\t<name>{classes[o.cls]}</name>\n\t\t<pose>Unspecified</pose>\n"
                f"\t\t<truncated>0</truncated>\n\t\t<difficult>{int(o.difficult)}</difficult>\n\t\t<bndbox>\n"
                f"\t\t\t<xmin>{o.box[0] + 1}</xmin>\n\t\t\t<ymin>{o.box[1] + 1}</ymin>\n"
                f"\t\t\t<xmax>{o.box[2]}</xmax>\n\t\t\t<ymax>{o.box[3]}</ymax>\n\t\t</bndbox>\n\t</object>\n"
                for o in img.objects)
            xml = (f"<annotation>\n\t<folder>JPEGImages</folder>\n\t<filename>{img.file.name}</filename>\n"
                   f"\t<path>{img.file.resolve()}</path>\n\t<source>\n\t\t<database>Unknown</database>\n"
                   f"\t</source>\n\t<size>\n\t\t<width>{img.width}</width>\n\t\t<height>{img.height}</height>\n"
                   f"\t\t<depth>3</depth>\n\t</size>\n\t<segmented>0</segmented>\n{objects}</annotation>\n")
            (out / "Annotations" / f"{img.file.stem}.xml").write_text(xml)
        (out / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i.file.stem}\n" for i in images))
    return ["voc", str(out)]


def _rle(box: tuple[int, int, int, int], width: int, height: int) -> dict[str, Any]:
    """Uncompressed COCO RLE (column-major runs, starting with background) of a box mask."""
    mask = np.zeros((height, width), np.uint8)
    x1, y1, x2, y2 = (max(0, box[0]), max(0, box[1]), min(width, box[2]), min(height, box[3]))
    mask[y1:y2, x1:x2] = 1
    flat = mask.flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(edges).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return {"counts": counts, "size": [height, width]}


def _write_coco(out: Path, classes: list[str], splits: dict[str, list[FakeImage]]) -> list[str]:
    (out / "annotations").mkdir(exist_ok=True)
    args = ["coco"]
    ann_id = 1
    for split, images in splits.items():
        doc: dict[str, Any] = {
            "info": {"description": "deepvision synthetic shapes", "version": "1.0", "year": 2024},
            "licenses": [{"id": 1, "name": "CC0", "url": ""}], "images": [], "annotations": [],
            "categories": [{"id": COCO_IDS[k], "name": c, "supercategory": "shape"} for k, c in enumerate(classes)],
        }
        for image_id, img in enumerate(images, 1):
            doc["images"].append({"id": image_id, "file_name": img.file.name, "width": img.width,
                                  "height": img.height, "license": 1})
            for o in img.objects:
                x1, y1, x2, y2 = o.box
                crowd = o.difficult  # small objects stand in for crowd regions
                seg = _rle(o.box, img.width, img.height) if crowd else [[x1, y1, x2, y1, x2, y2, x1, y2]]
                doc["annotations"].append({"id": ann_id, "image_id": image_id, "category_id": COCO_IDS[o.cls],
                                           "bbox": [x1, y1, x2 - x1, y2 - y1], "area": float((x2 - x1) * (y2 - y1)),
                                           "iscrowd": int(crowd), "segmentation": seg})
                ann_id += 1
        path = out / "annotations" / f"instances_{split}2017.json"
        path.write_text(json.dumps(doc))
        args.append(f"{split}={path}")
    return args


def _write_lisa(out: Path, classes: list[str], splits: dict[str, list[FakeImage]]) -> list[str]:
    header = ("Filename;Annotation tag;Upper left corner X;Upper left corner Y;Lower right corner X;"
              "Lower right corner Y;Occluded,On another road;Origin file;Origin frame number;Origin track;"
              "Origin track frame number\n")
    rows = []
    for images in splits.values():
        for i, img in enumerate(images):
            rel = img.file.relative_to(out).as_posix()
            for o in img.objects:
                tag = classes[o.cls] if o.cls >= 0 else LISA_DISTRACTOR
                x1, y1, x2, y2 = o.box
                rows.append(f"{rel};{tag};{x1};{y1};{x2};{y2};0,0;{rel.split('/')[0]}/DataLog.avi;{i};"
                            f"{tag}_{i}.avi;0\n")
    (out / "allAnnotations.csv").write_text(header + "".join(rows))
    return ["lisa", str(out / "allAnnotations.csv")]


def _write_imglab(out: Path, classes: list[str], splits: dict[str, list[FakeImage]]) -> list[str]:
    """dlib's save_image_dataset_metadata output; one extra box wholly outside the first image."""
    args = ["imglab"]
    for split, images in splits.items():
        parts = ["<?xml version='1.0' encoding='ISO-8859-1'?>\n",
                 "<?xml-stylesheet type='text/xsl' href='image_metadata_stylesheet.xsl'?>\n",
                 "<dataset>\n<name>imglab dataset</name>\n<comment>Created by imglab tool.</comment>\n<images>\n"]
        for n, img in enumerate(images):
            parts.append(f"  <image file='{img.file.relative_to(out).as_posix()}'>\n")
            boxes = [(o.box, classes[o.cls], o.ignore) for o in img.objects]
            if n == 0:  # past the right border: dropped by the clipping rule (end <= start)
                boxes.append(((img.width + 5, 4, img.width + 25, 24), classes[0], False))
            for (x1, y1, x2, y2), label, ignore in boxes:
                flag = " ignore='1'" if ignore else ""
                parts.append(f"    <box top='{y1}' left='{x1}' width='{x2 - x1}' height='{y2 - y1}'{flag}>\n"
                             f"      <label>{label}</label>\n    </box>\n")
            parts.append("  </image>\n")
        parts.append("</images>\n</dataset>\n")
        name = {"train": "training.xml", "test": "testing.xml"}.get(split, f"{split}.xml")
        (out / name).write_text("".join(parts), encoding="iso-8859-1")
        args.append(str(out / name))
    return args


def _write_yolo(out: Path, classes: list[str], splits: dict[str, list[FakeImage]]) -> list[str]:
    for split, images in splits.items():
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for n, img in enumerate(images):
            label = out / "labels" / split / f"{img.file.stem}.txt"
            if not img.objects and n % 2:
                continue  # a negative without a label file (the other negatives get an empty one)
            lines = []
            for o in img.objects:
                x1, y1, x2, y2 = o.box
                lines.append(f"{o.cls} {(x1 + x2) / 2 / img.width:.6f} {(y1 + y2) / 2 / img.height:.6f} "
                             f"{(x2 - x1) / img.width:.6f} {(y2 - y1) / img.height:.6f}\n")
            label.write_text("".join(lines))
    names = "".join(f"  {k}: {c}\n" for k, c in enumerate(classes))
    split_lines = "".join(f"{s}: images/{s}\n" for s in splits)
    (out / "data.yaml").write_text(f"path: {out.resolve()}\n{split_lines}names:\n{names}")
    return ["yolo", str(out / "data.yaml")]
