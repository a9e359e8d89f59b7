"""The record-loading API in one import (the modules live in `deepvision.data.records`).

    from deepvision.data.record_loader import RecordDataset, RecordLoader, ImageRecordIter
"""

from deepvision.data.records.loader import MEMORY_FORMATS, RecordDataset, RecordLoader
from deepvision.data.records.mxnet_iter import ImageRecordIter
from deepvision.data.records.pipeline import resize_short_side_array
from deepvision.data.sampling import EpochBatchSampler, default_workers

__all__ = ["MEMORY_FORMATS", "EpochBatchSampler", "ImageRecordIter", "RecordDataset", "RecordLoader", "default_workers",
           "resize_short_side_array"]
