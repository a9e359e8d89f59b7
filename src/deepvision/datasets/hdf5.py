"""Writing HDF5 containers for the Keras-side pipelines (FER2013 images, extracted features).

`HDF5DatasetWriter` mirrors the reference writer: a data dataset (named per use: "images" or
"features"), int64 `labels` and optional UTF-8 `label_names`; rows are buffered and flushed every
`buf_size` rows, the rest on `close()`. It refuses to overwrite an existing file, writes a temporary
file renamed into place on close (an interrupted run leaves no half-written file), stores the data
chunked, and trims the datasets to the rows actually written. `deepvision.data.hdf5.HDF5Dataset`
reads such a file for training.

HDF5 writes through `_GuardedFile` (h5py's file-object driver): a write that fails (a full disk, a file
size limit) is kept, never handed to the HDF5 library, which after one cannot close the file and crashes
the process (a segmentation fault) when asked again. The writer raises it as one line and discards the file.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepvision.data.hdf5 import _h5py
from deepvision.errors import UserError
from deepvision.fileio import CommitOnExit, PendingFile

FULL_DISK_HINT = " — free some space or choose another --out"
_METADATA_BYTES = 64 << 10  # superblock, object headers, chunk indexes, attributes: a few kB, with room to spare


def chunk_rows(row_bytes: int, buf_size: int) -> int:
    """Rows in one chunk of the data dataset: about 1 MiB, at most one buffer."""
    return max(1, min(buf_size, (1 << 20) // max(1, row_bytes)))


def file_bytes(rows: int, row_shape: Sequence[int], dtype: str | np.dtype = "float64", buf_size: int = 1000) -> int:
    """What a file of `rows` rows takes on disk at most: chunks are stored whole (400 rows of 4,000 bytes in
    chunks of 262 rows take 524 rows), plus the labels' chunks and the metadata."""
    row_bytes = int(np.prod(row_shape)) * np.dtype(dtype).itemsize
    per_chunk, label_chunk = chunk_rows(row_bytes, buf_size), _label_chunk_rows(buf_size)
    return (-(-rows // per_chunk) * per_chunk * row_bytes + -(-rows // label_chunk) * label_chunk * 8
            + _METADATA_BYTES)


def _label_chunk_rows(buf_size: int) -> int:
    return max(1, min(buf_size, 1 << 16))


class _GuardedFile(io.RawIOBase):
    """The file HDF5 writes through. The first write that fails is kept in `error` and it and every later
    write are dropped (reported as done), so the HDF5 library never sees a failure; reads past what was
    written give zeros, as its own driver's do."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.f = open(path, "r+b", buffering=0)  # noqa: SIM115 (closed by close)
        self.pos = self.end = 0
        self.error: OSError | None = None

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self.pos = offset + {os.SEEK_SET: 0, os.SEEK_CUR: self.pos, os.SEEK_END: self.end}[whence]
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buffer: Any) -> int:
        view, done = memoryview(buffer).cast("B"), 0
        self.f.seek(self.pos)
        while done < len(view) and (n := self.f.readinto(view[done:])):
            done += n
        view[done:] = bytes(len(view) - done)
        self.pos += len(view)
        return len(view)

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if self.error is None:
            try:
                self.f.seek(self.pos)
                done = 0
                while done < len(view):
                    done += self.f.write(view[done:]) or 0
            except OSError as exc:
                self.error = exc
        self.pos += len(view)
        self.end = max(self.end, self.pos)
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        size = self.pos if size is None else size
        if self.error is None:
            try:
                self.f.truncate(size)
            except OSError as exc:
                self.error = exc
        self.end = size
        return size

    def flush(self) -> None:
        pass  # unbuffered; PendingFile.commit fsyncs the finished file

    def close(self) -> None:
        if hasattr(self, "f"):  # not when the open in __init__ failed
            self.f.close()
        super().close()


class HDF5DatasetWriter(CommitOnExit):
    """Buffered writer of (rows, labels) to an HDF5 file.

    dims: (N, ...) the expected number of rows and the shape of one row (N may be None: unknown).
    dtype: float64 by default (the reference's files); uint8 keeps images compact.
    A failed write is a one-line UserError ("could not write PATH: No space left on device", then `hint`)
    raised by the step that finds it (`flush`, `store_class_labels`, `close`); the file is discarded.
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
        hint: str = FULL_DISK_HINT,
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
        self._pending = PendingFile(self.path, ".partial", hint, parents=True)  # an abort removes the folders it made
        self.db = self._file = None
        self.closed = False
        try:  # a stop or a failure while the file is set up leaves no temporary file
            self._file = _GuardedFile(self._pending.tmp)
            self.db = h5py.File(self._file, "w")
            row_bytes = int(np.prod(self.row_shape)) * np.dtype(dtype).itemsize
            self.data = self.db.create_dataset(data_key, (expected, *self.row_shape),
                                               maxshape=(None, *self.row_shape), dtype=dtype,
                                               chunks=(chunk_rows(row_bytes, self.buf_size), *self.row_shape),
                                               compression=compression)
            self.labels = self.db.create_dataset("labels", (expected,), maxshape=(None,), dtype="int64",
                                                 chunks=(_label_chunk_rows(self.buf_size),))
        except BaseException:
            self.abort()
            raise
        self._rows: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._buffered = 0
        self.idx = 0  # rows written to the file so far
        self._check()

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
        self._check()

    def store_class_labels(self, names: Sequence[str]) -> None:
        """Store the class names as the `label_names` dataset (variable-length UTF-8 strings)."""
        h5py = _h5py()
        dt = h5py.string_dtype(encoding="utf-8")
        if "label_names" in self.db:
            del self.db["label_names"]
        ds = self.db.create_dataset("label_names", (len(names),), dtype=dt)
        ds[:] = [str(n) for n in names]
        self._check()

    def _check(self) -> None:
        """Raise a write that failed (the file is discarded)."""
        if self._file is not None and self._file.error is not None:
            error = self._file.error
            self.abort()
            self._pending.failed(error)

    def close(self) -> None:
        """Flush, trim the datasets to the rows written, close and rename the file into place."""
        if self.closed:
            return
        try:  # any failure discards the file
            self.flush()
            if self.data.shape[0] != self.idx:
                self.data.resize(self.idx, axis=0)
                self.labels.resize(self.idx, axis=0)
            self.db.close()  # HDF5 writes what it still holds: the chunks in its cache, the metadata
            self._check()
            self._file.close()
        except BaseException:
            self.abort()
            raise
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
        for handle in (self.db, self._file):
            if handle is not None:
                with contextlib.suppress(Exception):
                    handle.close()
        self._pending.discard()

