"""Object-detection datasets: readers for LISA, imglab, VOC, COCO and YOLO annotations, the built index
(docs/detection.md), synthetic data, box-aware augmentation and the loader.

    from deepvision.data.detection import read_voc, build_dataset, load_index, make_fake
"""

from deepvision.data.detection.build import BuildReport, build_dataset
from deepvision.data.detection.fake import FakeResult, make_fake
from deepvision.data.detection.index import DetectionIndex, IndexImage, load_index, read_class_list
from deepvision.data.detection.readers import read_coco, read_imglab, read_lisa, read_voc, read_yolo
from deepvision.data.detection.schema import FORMATS, LISA_CLASSES, Annotations, Box, ImageRecord

__all__ = [
    "FORMATS", "LISA_CLASSES", "Annotations", "Box", "BuildReport", "DetectionIndex", "FakeResult", "ImageRecord",
    "IndexImage", "build_dataset", "load_index", "make_fake", "read_class_list", "read_coco", "read_imglab",
    "read_lisa", "read_voc", "read_yolo",
]
