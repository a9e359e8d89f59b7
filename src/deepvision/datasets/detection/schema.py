"""The one internal representation of detection annotations, whatever format they came from.

Boxes are in continuous pixel coordinates (xmin, ymin, xmax, ymax): a box covering pixel columns
0..9 of an image is (0, 10). Readers convert each tool's convention to it (VOC's 1-based inclusive
corners, COCO's [x, y, w, h], YOLO's normalised centres, imglab's top/left/width/height).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Box:
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    label: str
    difficult: bool = False  # VOC `difficult`, COCO `iscrowd`: ignored by evaluation, not trained on
    problem: str | None = None  # a defect the reader found that no repair fixes (a class id not in the names)

    @property
    def coords(self) -> tuple[float, float, float, float]:
        return (self.xmin, self.ymin, self.xmax, self.ymax)

    def normalised(self, width: int, height: int) -> list[float]:
        """The box as the built index stores it: [xmin, ymin, xmax, ymax] as fractions of the image's size."""
        return [self.xmin / width, self.ymin / height, self.xmax / width, self.ymax / height]

    def describe(self) -> str:
        return f"box [{self.xmin:g}, {self.ymin:g}, {self.xmax:g}, {self.ymax:g}] '{self.label}'"


@dataclass
class ImageRecord:
    """One image and its boxes; readers give `file` as an absolute path."""

    file: str
    boxes: list[Box] = field(default_factory=list)
    width: int | None = None  # None: read from the image file when the dataset is built
    height: int | None = None
    looked_in: tuple[str, ...] = ()  # where a reader searched for a missing image (for the report)
    source: str = ""  # where the record was read (an annotation file, a split list), for messages


@dataclass
class Annotations:
    """What a reader returns: records per split, the format's class order if any, and what it noticed."""

    splits: dict[str, list[ImageRecord]]
    classes: list[str] | None = None  # the format's own class order (COCO categories, YOLO names), if any
    notes: list[str] = field(default_factory=list)  # things the reader skipped or repaired, one line each
    source_format: str = ""
    inputs: list[str] = field(default_factory=list)  # files and folders read: the build never writes over them
    read_from: str = ""  # what was read, for messages ("12 XML files in DIR")


FORMATS = ("lisa", "imglab", "voc", "coco", "yolo")
LISA_CLASSES = ("pedestrianCrossing", "signalAhead", "stop")  # ids 1..3, 0 is background
