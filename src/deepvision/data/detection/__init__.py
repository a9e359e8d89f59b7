"""Object-detection data as training reads it: the built index (docs/detection.md), box-aware augmentation
and the loader. Building an index from LISA, imglab, VOC, COCO or YOLO annotations is
`deepvision.datasets.detection`.

    from deepvision.data.detection import load_index
"""

from deepvision.data.detection.index import DetectionIndex, IndexImage, load_index

__all__ = ["DetectionIndex", "IndexImage", "load_index"]
