"""Readers for LISA CSV, dlib imglab XML, Pascal VOC XML, COCO JSON and YOLO txt annotations, one module
a format (`common` holds what they share).

Each returns `Annotations` (schema.py): absolute image paths, boxes in continuous pixel coordinates,
and a note for everything it skipped or repaired. Checks common to all formats (bad boxes, unknown
classes, missing images) happen when the dataset is built (checks.py).
"""

from deepvision.datasets.detection.readers.coco import read_coco
from deepvision.datasets.detection.readers.common import IMAGE_EXTENSIONS, file_problem, inside, split_files
from deepvision.datasets.detection.readers.imglab import read_imglab
from deepvision.datasets.detection.readers.lisa import read_lisa
from deepvision.datasets.detection.readers.voc import read_voc, read_voc_xml, voc_image_dirs
from deepvision.datasets.detection.readers.yolo import read_yolo, yolo_label_path

__all__ = [
    "IMAGE_EXTENSIONS", "file_problem", "inside", "read_coco", "read_imglab", "read_lisa", "read_voc", "read_voc_xml",
    "read_yolo", "split_files", "voc_image_dirs", "yolo_label_path",
]
