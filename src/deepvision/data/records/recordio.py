"""MXNet/dmlc RecordIO: byte-compatible framing, a writer, a memory-mapped reader and the .idx file.

Framing (little-endian): every part starts with the magic 0xCED7230A and a uint32 `lrec` whose upper 3 bits are the
continuation flag (0 whole, 1 first, 2 middle, 3 last part) and whose lower 29 bits are the part length; the part's
bytes follow, and the record is zero-padded to a 4-byte boundary. The writer splits a payload wherever the magic occurs
at a 4-byte-aligned offset (dropping those 4 bytes); the reader joins the parts and re-inserts the magic between them.

The `.idx` file holds `key<TAB>byte offset` per record (the offset of the record's first magic word). `RecordFile` (the
validated, cached view the loaders use) is in `records.record_file`. Writing record files (the framing, `RecordWriter`,
`.idx` files, MXNet's `MXRecordIO`) is `deepvision.datasets.records`.
"""

from __future__ import annotations

import contextlib
import mmap
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from deepvision.data.records.header import HEADER_SIZE
from deepvision.errors import UserError
from deepvision.safeload import input_file

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
LENGTH_MASK = (1 << 29) - 1
_HEAD = struct.Struct("<II")


class RecordError(UserError):
    """A corrupt or truncated record; names the record and its byte offset."""

    def __init__(self, message: str, *, index: int | None = None, offset: int | None = None) -> None:
        super().__init__(message)
        self.index, self.offset = index, offset


class IndexMismatchError(UserError):
    """The .idx does not describe its .rec (stale, truncated, or belonging to another file)."""


def read_record_at(buf: Any, offset: int, size: int | None = None) -> tuple[memoryview | bytes, int]:
    """(payload, offset of the next record) for the record starting at `offset` of a buffer (mmap).

    Single-part records come back as a zero-copy memoryview; split records are joined with the
    magic re-inserted. Raises ValueError describing the damage for a corrupt or truncated record.
    """
    size = len(buf) if size is None else size
    parts: list[memoryview] = []
    pos = offset
    while True:
        if pos + 8 > size:
            raise ValueError("truncated record header (the file ends inside it)")
        magic, lrec = _HEAD.unpack_from(buf, pos)
        if magic != MAGIC:
            raise ValueError(f"no RecordIO magic number at byte {pos} (found 0x{magic:08x})")
        cflag, length = lrec >> 29, lrec & LENGTH_MASK
        expected = (0, 1) if not parts else (2, 3)
        if cflag not in expected:
            raise ValueError(f"unexpected continuation flag {cflag} at byte {pos}")
        start = pos + 8
        if start + length > size:
            raise ValueError(f"record part of {length} bytes runs past the end of the file")
        parts.append(memoryview(buf)[start : start + length])
        pos = start + ((length + 3) & ~3)
        if cflag in (0, 3):
            break
    return (parts[0] if len(parts) == 1 else MAGIC_BYTES.join(bytes(p) for p in parts)), pos


def idx_path_for(rec_path: str | Path) -> Path:
    """PREFIX.rec -> PREFIX.idx (the name MXNet's tools use)."""
    return Path(rec_path).with_suffix(".idx")


MAX_OFFSET = 2**62  # no .rec is that large; offsets below it leave int64 room for the arithmetic on them


def _whole(text: str) -> bool:
    """True for a plain decimal integer such as '-12' (int() also reads '2_668', '+5', '٣')."""
    return text.isascii() and text.removeprefix("-").isdigit()


def read_index(idx_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(keys, offsets) from an .idx file, in file order. Integer keys give an int64 array. A key given on two
    lines is refused: MXNet's MXIndexedRecordIO keeps its later offset only, so it would read other records."""
    idx_path = Path(idx_path)
    keys: list[str] = []
    offsets: list[int] = []
    first: dict[int | str, int] = {}  # key (a number when it is one: MXNet reads keys with int()) -> its line
    with open(idx_path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not (line := line.strip()):
                continue
            parts = line.split("\t")
            try:
                keys.append(parts[0])
                if not _whole(parts[1]):
                    raise ValueError
                offsets.append(int(parts[1]))
            except (IndexError, ValueError):
                raise IndexMismatchError(f"{idx_path}:{lineno}: expected 'key<TAB>byte offset', got {line[:60]!r}; "
                                         f"delete the .idx to rebuild it from the .rec") from None
            if abs(offsets[-1]) >= MAX_OFFSET:  # beyond any file, and beyond int64 arithmetic
                raise IndexMismatchError(f"{idx_path}:{lineno}: byte offset {parts[1][:40]} lies outside the file; "
                                         f"delete the .idx to rebuild it from the .rec")
            if (seen := first.setdefault(int(keys[-1]) if _whole(keys[-1]) else keys[-1], lineno)) != lineno:
                raise IndexMismatchError(f"{idx_path}:{lineno}: key {keys[-1][:40]} is given again (first on line "
                                         f"{seen}); delete the .idx to rebuild it from the .rec")
    as_int = all(_whole(k) and -(2**63) <= int(k) < 2**63 for k in keys)  # else the keys stay text
    key_array = np.asarray([int(k) for k in keys], np.int64) if as_int else np.asarray(keys, dtype=str)
    return key_array, np.asarray(offsets, dtype=np.int64)


def scan_records(rec_path: str | Path) -> Iterator[tuple[int, memoryview | bytes]]:
    """(offset, payload) of every record of a .rec file, in file order."""
    with RecordReader(rec_path) as reader:
        yield from reader


def scan_index(rec_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Rebuild (keys, offsets) by scanning a .rec: keys are the image-header ids when every record has
    a header and the ids are unique (what im2rec writes), else record positions 0..N-1."""
    offsets, ids = [], []
    has_ids = True
    with RecordReader(rec_path) as reader:
        for offset, payload in reader:
            offsets.append(offset)
            if has_ids and len(payload) >= HEADER_SIZE:
                ids.append(struct.unpack_from("<Q", payload, 8)[0])
            else:
                has_ids = False
            del payload
    offsets_arr = np.asarray(offsets, dtype=np.int64)
    if has_ids and len(set(ids)) == len(ids):
        return np.asarray(ids, dtype=np.int64), offsets_arr
    return np.arange(len(offsets), dtype=np.int64), offsets_arr


class RecordReader:
    """Memory-mapped sequential reader of a .rec (no index needed). Iterating yields (offset, payload).

    Payloads of single-part records are zero-copy memoryviews into the map: copy them (`bytes(p)`)
    to keep them after the reader is closed.
    """

    def __init__(self, rec_path: str | Path) -> None:
        self.path = Path(rec_path)
        input_file(self.path, "record file")  # a FIFO is named as one, never opened
        self.size = self.path.stat().st_size
        self._map: mmap.mmap | bytes | None = None

    @property
    def buffer(self) -> mmap.mmap | bytes:
        if self._map is None:
            if self.size == 0:
                self._map = b""
            else:
                with open(self.path, "rb") as f:
                    self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return self._map

    def read_at(self, offset: int, *, index: int | None = None) -> memoryview | bytes:
        """The payload of the record whose first magic word is at `offset`."""
        try:
            return read_record_at(self.buffer, offset, self.size)[0]
        except ValueError as exc:
            where = f"record at byte offset {offset}" if index is None else f"record {index} at byte offset {offset}"
            raise RecordError(f"{self.path}: {where} is corrupt or truncated: {exc}", index=index,
                              offset=offset) from None

    def __iter__(self) -> Iterator[tuple[int, memoryview | bytes]]:
        buf, pos, count = self.buffer, 0, 0
        while pos < self.size:
            try:
                payload, nxt = read_record_at(buf, pos, self.size)
            except ValueError as exc:
                raise RecordError(f"{self.path}: record {count} at byte offset {pos} is corrupt or truncated: "
                                  f"{exc}", index=count, offset=pos) from None
            yield pos, payload
            pos, count = nxt, count + 1

    def close(self) -> None:
        if isinstance(self._map, mmap.mmap):
            with contextlib.suppress(BufferError):  # views still alive: the map closes when they die
                self._map.close()
        self._map = None

    def __enter__(self) -> RecordReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:  # maps are per process
        return {**self.__dict__, "_map": None}
