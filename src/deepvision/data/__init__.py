"""Data: reading datasets for training: sources, list and record files, decoding, loaders and transforms.
Building those files (packing, mean files, detection indexes) is `deepvision.datasets`.

The record-file API (imported lazily, so `import deepvision.data` stays light)::

    from deepvision.data import RecordDataset, RecordLoader, ImageRecordIter
    from deepvision.data import RecordReader, RecordFile, pack_header, unpack_header, unpack_img
    from deepvision.data import HDF5Dataset
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ListEntry": "deepvision.data.lst", "read_lst": "deepvision.data.lst",  # list files
    **dict.fromkeys(("IRHeader", "pack_header", "unpack_header", "unpack_img", "RecordReader", "RecordFile",  # records
                     "RecordError", "IndexMismatchError", "read_index", "scan_records"), "deepvision.data.records"),
    # loading
    "RecordDataset": "deepvision.data.records.loader", "RecordLoader": "deepvision.data.records.loader",
    "ImageRecordIter": "deepvision.data.records.mxnet_iter", "EpochBatchSampler": "deepvision.data.sampling",
    "HDF5Dataset": "deepvision.data.hdf5", "Preprocess": "deepvision.data.preprocess",
    "SampleTransform": "deepvision.data.transforms", "load_data": "deepvision.data.sources",
    "register_source": "deepvision.data.source_registry", "build_loaders": "deepvision.data.loaders",
    "BatchLoader": "deepvision.data.loader", "BatchSource": "deepvision.data.loader"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'deepvision.data' has no attribute {name!r}")
