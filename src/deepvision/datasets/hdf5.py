"""Writing HDF5 containers for the Keras-side pipelines (FER2013 images, extracted features).

`HDF5DatasetWriter` mirrors the reference writer: a data dataset (named per use: "images" or
"features"), int64 `labels` and optional UTF-8 `label_names`; rows are buffered and flushed every
`buf_size` rows, the rest on `close()`. It refuses to overwrite an existing file, writes a temporary
file renamed into place on close (an interrupted run leaves no half-written file), stores the data
chunked, and trims the datasets to the rows actually written. `deepvision.data.hdf5.HDF5Dataset`
reads such a file for training.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepvision.data.hdf5 import _h5py
from deepvision.errors import UserError
from deepvision.fileio import CommitOnExit, PendingFile


class HDF5DatasetWriter(CommitOnExit):
    """Buffered writer of (rows, labels) to an HDF5 file.

    dims: (N, ...) the expected number of rows and the shape of one row (N may be None: unknown).
    dtype: float64 by default (the reference's files); uint8 keeps images compact.
    """

    def __init__(
        self,
        path: str | Path,
        dims: Sequence[int | None],
        data_key: str = "images",
        buf_size: int = 1000,
        *,
        dtype: str | np.dtype = "float64",
        compression: str | None = None,
    ) -> None:
        h5py = _h5py()
        self.path = Path(path)
        if self.path.exists():
            raise UserError(f"{self.path} already exists; delete it or choose another output path "
                            f"(the writer never overwrites)")
        if len(dims) < 2:
            raise UserError(f"dims must be (rows, ...row shape), got {tuple(dims)}")
        if buf_size <= 0:
            raise UserError(f"buf_size must be positive, got {buf_size}")
        self.data_key, self.buf_size = data_key, int(buf_size)
        self.row_shape = tuple(int(d) for d in dims[1:])
        expected = int(dims[0]) if dims[0] else 0
        self._pending = PendingFile(self.path, ".partial", parents=True)  # an abort removes the folders it made
        self.db = None
        try:  # a stop or a failure while the file is set up leaves no temporary file
            self.db = h5py.File(self._pending.tmp, "w")
            row_bytes = max(1, int(np.prod(self.row_shape)) * np.dtype(dtype).itemsize)
            chunk_rows = max(1, min(self.buf_size, (1 << 20) // row_bytes))
            self.data = self.db.create_dataset(data_key, (expected, *self.row_shape),
                                               maxshape=(None, *self.row_shape), dtype=dtype,
                                               chunks=(chunk_rows, *self.row_shape), compression=compression)
            self.labels = self.db.create_dataset("labels", (expected,), maxshape=(None,), dtype="int64",
                                                 chunks=(max(1, min(self.buf_size, 1 << 16)),))
        except BaseException:
            if self.db is not None:
                with contextlib.suppress(Exception):
                    self.db.close()
            self._pending.discard()
            raise
        self._rows: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._buffered = 0
        self.idx = 0  # rows written to the file so far
        self.closed = False

    def add(self, rows: Any, labels: Any) -> None:
        """Append rows (N x row shape) and their labels (N); flushes when the buffer holds buf_size rows."""
        rows = np.asarray(rows)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        per_row = int(np.prod(self.row_shape))
        if rows.ndim >= 1 and rows.shape[1:] != self.row_shape and rows.size == len(rows) * per_row:
            rows = rows.reshape(len(rows), *self.row_shape)  # e.g. flattened features
        if rows.ndim < 1 or rows.shape[1:] != self.row_shape or len(rows) != len(labels):
            raise UserError(f"add() got rows {rows.shape} and {len(labels)} labels; expected N x {self.row_shape} "
                            f"rows and N labels")
        self._rows.append(rows)
        self._labels.append(labels)
        self._buffered += len(rows)
        if self._buffered >= self.buf_size:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows to the file."""
        if not self._buffered:
            return
        rows = np.concatenate(self._rows)
        labels = np.concatenate(self._labels)
        end = self.idx + len(rows)
        if end > self.data.shape[0]:
            self.data.resize(end, axis=0)
            self.labels.resize(end, axis=0)
        self.data[self.idx : end] = rows
        self.labels[self.idx : end] = labels
        self.idx = end
        self._rows, self._labels, self._buffered = [], [], 0

    def store_class_labels(self, names: Sequence[str]) -> None:
        """Store the class names as the `label_names` dataset (variable-length UTF-8 strings)."""
        h5py = _h5py()
        dt = h5py.string_dtype(encoding="utf-8")
        if "label_names" in self.db:
            del self.db["label_names"]
        ds = self.db.create_dataset("label_names", (len(names),), dtype=dt)
        ds[:] = [str(n) for n in names]

    def close(self) -> None:
        """Flush, trim the datasets to the rows written, close and rename the file into place."""
        if self.closed:
            return
        self.flush()
        if self.data.shape[0] != self.idx:
            self.data.resize(self.idx, axis=0)
            self.labels.resize(self.idx, axis=0)
        self.db.close()
        self.closed = True
        if self.path.exists():
            self._pending.discard()
            raise UserError(f"{self.path} appeared while writing; the new data was discarded")
        self._pending.commit()

    def abort(self) -> None:
        """Discard the file being written."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            self.db.close()
        self._pending.discard()

