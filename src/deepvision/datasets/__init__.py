"""Datasets: turning photos and annotations as they come into the files training reads.

Packing image folders and `.lst` files into record files (`im2rec`, `listing`), the per-channel mean
file (`mean`), record and HDF5 writers (`records`, `hdf5`), and object-detection indexes built from
published annotation formats (`detection`). Reading those files for training is `deepvision.data`.

    from deepvision.datasets import make_list, pack_list, PackOptions, compute_mean, HDF5DatasetWriter
    from deepvision.datasets import RecordWriter, pack_img, rebuild_index, MXRecordIO, MXIndexedRecordIO
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "make_list": "deepvision.datasets.im2rec", "pack_list": "deepvision.datasets.im2rec",
    "PackOptions": "deepvision.datasets.im2rec", "compute_mean": "deepvision.datasets.mean",
    "write_mean_json": "deepvision.datasets.mean", "read_mean_json": "deepvision.datasets.mean",
    "HDF5DatasetWriter": "deepvision.datasets.hdf5", "RecordWriter": "deepvision.datasets.records",
    "pack_img": "deepvision.datasets.records", "rebuild_index": "deepvision.datasets.records",
    "write_index": "deepvision.datasets.records", "frame_record": "deepvision.datasets.records",
    "MXRecordIO": "deepvision.datasets.records", "MXIndexedRecordIO": "deepvision.datasets.records",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'deepvision.datasets' has no attribute {name!r}")
