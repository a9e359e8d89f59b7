"""Object-detection datasets as they are published: readers for LISA, imglab, VOC, COCO and YOLO
annotations, the builder that turns them into the index training reads (docs/detection.md), synthetic
data and a preview.

    from deepvision.datasets.detection import read_voc, build_dataset, make_fake
"""

from deepvision.datasets.detection.build import BuildReport, build_dataset
from deepvision.datasets.detection.fake import FakeResult, make_fake
from deepvision.datasets.detection.readers import read_coco, read_imglab, read_lisa, read_voc, read_yolo
from deepvision.datasets.detection.schema import FORMATS, LISA_CLASSES, Annotations, Box, ImageRecord

__all__ = [
    "FORMATS", "LISA_CLASSES", "Annotations", "Box", "BuildReport", "FakeResult", "ImageRecord", "build_dataset",
    "make_fake", "read_coco", "read_imglab", "read_lisa", "read_voc", "read_yolo",
]
