"""dlib imglab XML (the `imglab` tool's `<dataset><images><image file=...><box .../>` files)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

from deepvision.data.imageio import image_size
from deepvision.datasets.detection.readers.common import (
    inside,
    only_child,
    only_text,
    parse_flag,
    parse_number,
    parse_xml,
)
from deepvision.datasets.detection.schema import Annotations, Box, ImageRecord
from deepvision.errors import UserError


def _check_nesting(root: ET.Element, images: ET.Element, xml_path: Path) -> None:
    """Refuse an <image> anywhere but directly under <dataset><images>, and a <box> anywhere but directly
    under its <image>: read recursively, an <image> left open gave the next photo's boxes to both."""
    for parent in root.iter():
        for child in parent:
            if child.tag == "image" and parent is not images or child.tag == "box" and parent.tag != "image":
                attr = f" file={parent.get('file')!r}" if parent.get("file") is not None else ""
                what = f"<image file={child.get('file')!r}>" if child.tag == "image" else "a <box>"
                home = "directly under <dataset><images>" if child.tag == "image" else "directly under its <image>"
                raise UserError(f"{xml_path}: {what} lies inside <{parent.tag}{attr}>; each <{child.tag}> belongs "
                                f"{home} (is an element left open?)")


def read_imglab(files: dict[str, Path], reference_clip: bool = False) -> Annotations:
    """dlib imglab XML files (one per split). Boxes marked ignore are skipped, boxes marked difficult kept as
    difficult (VOC's rule), a turned box (a non-zero angle) refused; boxes are clipped to the
    image: start = max(0, left), end = min(W, left + width), or with `reference_clip`
    min(W, start + width) (the reference's rule). Boxes with end <= start after clipping (outside the
    image) are dropped; a box whose own width or height is zero or negative is kept as it is, for the
    build's checks to refuse (or repair with --fix) as in every other format.
    """
    splits: dict[str, list[ImageRecord]] = {}
    ignored = clipped = dropped = 0
    for split, xml_path in files.items():
        root = parse_xml(xml_path)
        images = only_child(root, "images", str(xml_path), "one <dataset>") if root.tag == "dataset" else None
        if images is None:
            raise UserError(f"{xml_path} is not an imglab file (expected <dataset><images>...)")
        _check_nesting(root, images, xml_path)
        records = []
        named: dict[str, str] = {}  # image file -> the `file` attribute naming it first
        for image in images.findall("image"):
            rel = image.get("file")
            if not rel:
                raise UserError(f"{xml_path}: an <image> element has no file attribute")
            file = str(inside(xml_path.parent, rel, f"{xml_path}, <image file>").resolve())
            if file in named:
                raise UserError(f"{xml_path}: <image file={named[file]!r}> and <image file={rel!r}> name one photo; "
                                f"give each image one <image> element holding all its boxes")
            named[file] = rel
            size = image_size(file)
            record = ImageRecord(file, width=size[0] if size else None, height=size[1] if size else None,
                                 source=str(xml_path))
            for box in image.findall("box"):
                if parse_flag(box.get("ignore", "0"), f"{xml_path}, <box ignore>"):
                    ignored += 1
                    continue
                where = f"{xml_path.name}, image {rel}"
                left, top, width, height = (parse_number(box.get(k), where, k)
                                            for k in ("left", "top", "width", "height"))
                label = only_text(box, "label", where)
                difficult = parse_flag(box.get("difficult", "0"), f"{xml_path}, <box difficult>")  # as VOC's
                if (angle := parse_number(box.get("angle", "0"), where, "angle")) != 0:
                    raise UserError(f"{where}: a <box> turned by angle {angle:g} cannot be read as an upright box; "
                                    f"give upright boxes (angle 0)")
                if size is None or not all(map(math.isfinite, (left, top, width, height))) or min(width, height) <= 0:
                    # missing image, NaN/inf or a zero or negative size: keep the raw box; the build step reports it
                    record.boxes.append(Box(left, top, left + width, top + height, label, difficult))
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
                record.boxes.append(Box(x1, y1, x2, y2, label, difficult))
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
