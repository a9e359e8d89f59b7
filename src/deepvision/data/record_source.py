"""Data sources for packed files: `rec` (MXNet record files) and `hdf5` (the Keras-side containers).

    data:
      source: rec
      train: data/imagenet_train.rec     # PREFIX.idx beside it, or rebuilt by scanning
      val: data/imagenet_val.rec
      test: data/imagenet_test.rec
      resize: 256
      image_size: 224
      mean: data/imagenet_mean.json
      options: {labels: data/labels.txt}  # class names; default: the PREFIX.labels.txt im2rec wrote, else numbers

Split names are file paths (relative to `data.root` when it is set). Each split is a `RecordDataset`
whose `make_loader` builds the fast `RecordLoader`. Record options (`data.options`): `labels` (class
names file), `idx` (a mapping of split name to .idx path), `decoder` (auto | simplejpeg | cv2 | nvjpeg:
batches decoded and augmented on the GPU),
`memory_format` (channels_last | contiguous), `prefetch` (batches per worker).

`hdf5` reads files written by `datasets.hdf5.HDF5DatasetWriter` (images N x H x W [x C], labels, label_names) into
memory as uint8 tensors; `data.options.data_key` names the image dataset (default: images).
"""

from __future__ import annotations

import numpy as np

from deepvision.config.schema import DataConfig
from deepvision.data.builtin_sources import class_labels, class_limit, class_names_for, read_class_names
from deepvision.data.paths import resolve_path
from deepvision.data.source_registry import RawData, register_source
from deepvision.data.tensors import to_tensor_split
from deepvision.errors import UserError


@register_source("rec")
def rec_source(cfg: DataConfig, wanted: list[str]) -> RawData:
    """MXNet record files; split names are .rec paths (an .idx path is accepted too)."""
    try:
        from deepvision.data.records.loader import RecordDataset
    except ImportError as exc:
        raise UserError(f"record files need OpenCV: pip install 'deepvision[records]' ({exc})") from None
    channels = cfg.channels or 3
    idx_paths = cfg.options.get("idx") or {}
    names, limit = class_limit(cfg)
    splits, top, files = {}, -1, []
    for name in wanted:
        path = resolve_path(cfg.root, name)
        if path.suffix == ".idx":
            path = path.with_suffix(".rec")
        if not path.is_file():
            if name == "test":
                continue
            raise UserError(f"record file not found: {path} (data.source: rec expects .rec paths in "
                            f"data.train/val/test; pack images with `deepvision im2rec`)")
        ds = RecordDataset(path, idx_paths.get(name), channels=channels, skip_corrupt=cfg.skip_corrupt,
                           decoder=cfg.options.get("decoder", "auto"))
        if len(ds) == 0:
            raise UserError(f"record file {path} holds no record")
        # check the float labels before `targets` truncates them to integers
        labels = class_labels(ds.labels[:, 0], path, "record", None, limit, names is not None)
        top = max(top, int(labels.max()))
        splits[name] = ds
        files.append(path)
    return RawData(splits, names if names is not None else class_names_for(cfg, files, top + 1), channels, None)


@register_source("hdf5")
def hdf5_source(cfg: DataConfig, wanted: list[str]) -> RawData:
    """HDF5 image files (e.g. FER2013 as the reference stores it); split names are file paths."""
    from deepvision.data.hdf5 import read_hdf5_arrays

    key = cfg.options.get("data_key")
    file_names, limit = class_limit(cfg)
    splits, classes, size, channels = {}, None, None, 1
    for name in wanted:
        path = resolve_path(cfg.root, name)
        if not path.is_file():
            if name == "test":
                continue
            raise UserError(f"HDF5 file not found: {path}")
        data, labels, names = read_hdf5_arrays(path, key)
        if data.ndim not in (3, 4) or (data.ndim == 4 and data.shape[3] not in (1, 3)):
            raise UserError(f"{path}: the data is {data.shape}; an image source needs N x H x W or N x H x W x C "
                            f"(C = 1 or 3) images (feature files are for the classifier tools)")
        if data.dtype != np.uint8:
            data = np.clip(np.rint(data), 0, 255).astype(np.uint8)
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        channels = 1 if data.ndim == 3 else 3
        size = tuple(data.shape[1:3])
        classes = classes or names
        if len(labels):
            class_labels(labels, path, "row", None, limit if file_names else max(limit, len(classes or [])),
                         file_names is not None)
        splits[name] = to_tensor_split(data, labels)
    if classes is None:
        classes = []
    top = max((int(s.labels.max()) for s in splits.values() if len(s)), default=-1)
    if len(classes) <= top:
        classes = file_names if file_names is not None else read_class_names(None, top + 1)
    return RawData(splits, list(classes), channels, size)
