"""`mxnet.recordio.MXRecordIO` and `MXIndexedRecordIO` on deepvision's reader and writer, for ported code."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deepvision.data.records.recordio import RecordReader, RecordWriter, read_index, read_record_at


class MXRecordIO:
    """Drop-in for `mx.recordio.MXRecordIO(uri, flag)`: flag 'r' reads sequentially, 'w' writes."""

    def __init__(self, uri: str | Path, flag: str) -> None:
        if flag not in ("r", "w"):
            raise ValueError(f"flag must be 'r' or 'w', got {flag!r}")
        self.uri, self.flag = Path(uri), flag
        self.writable = flag == "w"
        self._writer: RecordWriter | None = None
        self._iter: Iterator[tuple[int, Any]] | None = None
        self._reader: RecordReader | None = None
        self.open()

    def open(self) -> None:
        if self.writable:
            self._writer = RecordWriter(self.uri, index=False)
        else:
            self._reader = RecordReader(self.uri)
            self._iter = iter(self._reader)

    def reset(self) -> None:
        """Go back to the first record (reading) or start the file over (writing)."""
        self.close()
        self.open()

    def write(self, buf: bytes) -> None:
        assert self._writer is not None, "opened for reading"
        self._writer.write(buf)

    def read(self) -> bytes | None:
        """The next record's payload, or None at the end of the file."""
        assert self._iter is not None, "opened for writing"
        item = next(self._iter, None)
        return None if item is None else bytes(item[1])

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._reader is not None:
            self._iter = None
            self._reader.close()
            self._reader = None

    def __enter__(self) -> MXRecordIO:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # like MXNet, an unclosed writer is closed (committed) when collected
        with contextlib.suppress(Exception):
            self.close()


class MXIndexedRecordIO(MXRecordIO):
    """Drop-in for `mx.recordio.MXIndexedRecordIO(idx_path, uri, flag, key_type=int)`."""

    def __init__(self, idx_path: str | Path, uri: str | Path, flag: str, key_type: type = int) -> None:
        self.idx_path = Path(idx_path)
        self.key_type = key_type
        self.idx: dict[Any, int] = {}
        self.keys: list[Any] = []
        super().__init__(uri, flag)

    def open(self) -> None:
        if self.writable:
            self._writer = RecordWriter(self.uri, self.idx_path)
            self.idx, self.keys = {}, []
        else:
            self._reader = RecordReader(self.uri)
            self._iter = iter(self._reader)
            keys, offsets = read_index(self.idx_path)
            self.keys = [self.key_type(k) for k in keys.tolist()]
            self.idx = dict(zip(self.keys, offsets.tolist()))

    def seek(self, idx: Any) -> None:
        assert self._reader is not None, "opened for writing"
        pos = self.idx[idx]
        reader = self._reader

        def from_pos() -> Iterator[tuple[int, Any]]:
            p = pos
            while p < reader.size:
                payload, nxt = read_record_at(reader.buffer, p, reader.size)
                yield p, payload
                p = nxt

        self._iter = from_pos()

    def tell(self) -> int:
        assert self._writer is not None, "opened for reading"
        return self._writer.tell()

    def read_idx(self, idx: Any) -> bytes:
        assert self._reader is not None, "opened for writing"
        return bytes(self._reader.read_at(self.idx[idx]))

    def write_idx(self, idx: Any, buf: bytes) -> None:
        assert self._writer is not None, "opened for reading"
        key = self.key_type(idx)
        pos = self._writer.write(buf, key)
        self.idx[key] = pos
        self.keys.append(key)
