"""HDF5 containers for the Keras-side pipelines (FER2013 images, extracted features), as training reads them.

`HDF5Dataset` reads a file written by `deepvision.datasets.hdf5.HDF5DatasetWriter` (or the reference's writer: a data
dataset named "images", "features" or "data", int64 `labels`, optional UTF-8 `label_names`) as a PyTorch dataset of
(tensor, label) pairs, opening the file lazily in each worker process. `open_object` and `open_dataset` open members of
any HDF5 file the project reads (Keras weights too) with links and external storage refused.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from deepvision.errors import UserError
from deepvision.safeload import check_class_names, check_declared_bytes, check_written_chunks, input_file

DATA_KEYS = ("images", "features", "data")


def _h5py():
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py is part of deepvision[records]
        raise UserError("HDF5 files need h5py: pip install 'deepvision[records]'") from None
    return h5py


MAX_UNNAMED_CLASSES = 100_000  # classes an HDF5 file may number without naming them in 'label_names'


class HDF5Dataset(Dataset):
    """(row tensor, label) pairs from an HDF5 file written by HDF5DatasetWriter (or the reference).

    data_key: the data dataset (default: the one of images/features/data present). Rows come back as tensors of the
    stored dtype (float64 files: float32 unless `dtype` says otherwise); `transform` receives the numpy row.
    `in_memory=True` reads everything once (FER2013 is 80 MB as uint8)."""

    def __init__(self, path: str | Path, data_key: str | None = None, *, transform: Any = None,
                 dtype: torch.dtype | None = None, in_memory: bool = False) -> None:
        h5py = _h5py()
        self.path = Path(path)
        input_file(self.path, "HDF5 file")  # a FIFO is named as one, never opened
        try:
            with h5py.File(self.path, "r") as db:
                keys = list(db.keys())
                found = [k for k in DATA_KEYS if k in db] if data_key is None else [data_key]
                if len(found) > 1:  # which one the writer meant, the file does not say
                    raise UserError(f"{self.path} holds {' and '.join(found)}; keep one or set data.options.data_key")
                data_key = found[0] if found else None
                data = open_dataset(self.path, db, data_key, check=in_memory) if data_key is not None else None
                if data is None:
                    raise UserError(f"{self.path} has no data dataset {data_key or '/'.join(DATA_KEYS)} "
                                    f"(datasets: {', '.join(keys)})")
                labels = open_dataset(self.path, db, "labels")
                if labels is None:
                    raise UserError(f"{self.path} has no 'labels' dataset (datasets: {', '.join(keys)})")
                label_names = open_dataset(self.path, db, "label_names")
                self.shape, self.stored_dtype = tuple(data.shape), data.dtype
                if labels.dtype.kind not in "iu" or labels.ndim != 1:
                    raise UserError(f"{self.path}: 'labels' must be a 1-D integer dataset, got "
                                    f"{labels.dtype} {labels.shape}")
                raw = labels[:]  # uint64 ids from 2**63 up would wrap to negative int64 ones
                if raw.dtype.kind == "u" and raw.size and int(raw.max()) >= 2**63:
                    raise UserError(f"{self.path}: 'labels' holds class {int(raw.max())}; class ids are below 2**63")
                self.targets = raw.astype(np.int64)
                names = label_names[:] if label_names is not None else None
                self.data = np.asarray(data[:]) if in_memory else None
        except (OSError, TypeError, ValueError, AttributeError) as exc:
            raise UserError(f"cannot read {self.path} as HDF5 ({' '.join(str(exc).split())[:160]})") from None
        if not self.shape:
            raise UserError(f"{self.path}: '{data_key}' is a scalar, not rows")
        if not self.shape[0]:  # an empty split (sized by its rows, it would fail later with a traceback)
            raise UserError(f"{self.path} holds no rows ('{data_key}' is {'x'.join(map(str, self.shape))}); give a "
                            f"file with at least one sample")
        if len(self.targets) != self.shape[0]:
            raise UserError(f"{self.path}: {self.shape[0]} rows but {len(self.targets)} labels")
        if len(self.targets) and self.targets.min() < 0:
            raise UserError(f"{self.path}: 'labels' holds the negative class {int(self.targets.min())}; class ids "
                            f"start at 0")
        self.named = names is not None  # else the classes are the label numbers
        if names is None:  # classes 0..max; a stray huge id must not become a list of a trillion names
            top = int(self.targets.max()) + 1 if len(self.targets) else 0
            if top > MAX_UNNAMED_CLASSES:
                raise UserError(f"{self.path}: 'labels' holds class {top - 1} and the file has no 'label_names'; "
                                f"more than {MAX_UNNAMED_CLASSES:,} classes needs their names in 'label_names'")
            self.classes = [str(i) for i in range(top)]
        else:
            kinds = sorted({type(n).__name__ for n in names if not isinstance(n, (bytes, str))})
            if kinds:  # a number is no class name: [0, 1, 2] would pass as "0", "1", "2"
                raise UserError(f"{self.path}: 'label_names' must be text (one class name each), got "
                                f"{', '.join(kinds)} values")
            try:
                self.classes = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]
            except UnicodeDecodeError:
                raise UserError(f"{self.path}: 'label_names' are not UTF-8 text") from None
            check_class_names(self.classes, f"{self.path} 'label_names'")
            if len(self.targets) and self.targets.max() >= len(self.classes):
                raise UserError(f"{self.path}: 'labels' holds class {int(self.targets.max())} but 'label_names' names "
                                f"{len(self.classes)} classes (0..{len(self.classes) - 1})")
        self.data_key, self.transform = data_key, transform
        self.dtype = dtype or (torch.float32 if self.stored_dtype.kind == "f" else None)
        self._file: Any = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def _dataset(self) -> Any:
        if self._file is None or self._pid != os.getpid():  # h5py handles must not cross a fork
            self._file, self._pid = _h5py().File(self.path, "r"), os.getpid()
        return self._file[self.data_key]

    def row(self, i: int) -> np.ndarray:
        return self.data[i] if self.data is not None else self._dataset()[i]

    def __getitem__(self, i: int) -> tuple[Any, int]:
        row = self.row(int(i))
        if self.transform is not None:
            return self.transform(row), int(self.targets[i])
        t = torch.from_numpy(np.array(row))
        return (t.to(self.dtype) if self.dtype is not None else t), int(self.targets[i])

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_file": None, "_pid": None}

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(Exception):
                self._file.close()
            self._file = None


HDF5_MAX_RATIO = 1000.0  # gzip on real features or images stays far below; a few MB of zeros declaring GBs does not


def open_object(path: Path, db: Any, key: str, what: str | None = None) -> Any:
    """Member `key` (a group or dataset) of the open HDF5 file or group `db`, or None when absent.
    Only what is stored in the file itself is opened: an external link (another file) is refused, and
    so is a soft link that leads nowhere or loops, and a dataset whose data lives in an external file or
    that is virtual (`external_storage`). `what` names the member in messages (default: 'key')."""
    h5py, what = _h5py(), what or repr(key)
    try:
        link = db.get(key, getlink=True)
    except (KeyError, RuntimeError, OSError, ValueError):  # a bad path component
        link = None
    if link is None:
        return None
    if isinstance(link, h5py.ExternalLink):
        raise UserError(f"{path}: {what} is an external link to {link.filename}:{link.path}; deepvision reads "
                        f"only data stored in the file itself")
    try:
        obj = db[key]
    except (KeyError, RuntimeError, OSError) as exc:
        raise UserError(f"{path}: {what} is a link that leads nowhere or loops "
                        f"({' '.join(str(exc).split())[:80]})") from None
    if isinstance(obj, h5py.Dataset):
        external_storage(path, obj, what)
    return obj


def external_storage(path: Path, ds: Any, what: str) -> None:
    """UserError when dataset `ds` keeps its data outside its own storage (HDF5 EXTERNAL storage, a virtual dataset):
    reading it would read (or block on) whatever file it names, or fill values where that file is missing."""
    try:
        virtual, count = bool(ds.is_virtual), ds.id.get_create_plist().get_external_count()
    except (AttributeError, RuntimeError, OSError):
        virtual, count = False, 0
    if virtual:
        names = sorted({f"{'this file' if s.file_name == '.' else s.file_name}:{s.dset_name}"
                        for s in ds.virtual_sources()})
        raise UserError(f"{path}: {what} is a virtual dataset reading {', '.join(names)[:300]}; refused")
    if count > 0:
        raise UserError(f"{path}: {what} is stored in an external file; refused")


def open_dataset(path: Path, db: Any, key: str, check: bool = True) -> Any:
    """Dataset `key` of the open file `db`, or None when absent, opened through `open_object` (links and external
    storage refused), its declared size checked (`check_dataset`; against one read's ceiling too with `check`)."""
    if (ds := open_object(path, db, key)) is not None:
        check_dataset(path, key, ds, whole=check)
    return ds


def check_dataset(path: Path, key: str, ds: Any, what: str | None = None, whole: bool = True) -> None:
    """UserError when dataset `key` (named `what` in messages) declares more bytes than the file stores for it
    (times HDF5_MAX_RATIO when compressed; a dataset never written stores none) or, read `whole`, than one read
    may take."""
    if not hasattr(ds, "shape") or not hasattr(ds, "dtype"):
        raise UserError(f"{path}: '{key}' is not a dataset")
    declared, stored = math.prod(ds.shape or ()) * ds.dtype.itemsize, ds.id.get_storage_size()
    ratio = HDF5_MAX_RATIO if ds.id.get_create_plist().get_nfilters() > 0 else 1.0
    field = f"{path}: {what}" if what else f"{path} dataset '{key}'"
    check_declared_bytes(field := f"{field} ({'x'.join(map(str, ds.shape))} {ds.dtype})", declared, stored, ratio,
                         whole)
    check_written_chunks(field, ds)


def read_hdf5_arrays(path: str | Path, data_key: str | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(data, labels, class names) of a whole HDF5 file, read at once."""
    ds = HDF5Dataset(path, data_key, in_memory=True)
    assert ds.data is not None
    return ds.data, ds.targets, ds.classes
