"""Writing MXNet record files: the RecordIO framing, `RecordWriter`, `.idx` files and `pack_img`.

The writer splits a payload wherever the magic number occurs at a 4-byte-aligned offset (dropping
those 4 bytes) and zero-pads every record to a 4-byte boundary (the format is described in
`deepvision.data.records.recordio`, which reads it). `MXRecordIO` and `MXIndexedRecordIO` mirror
`mxnet.recordio` (writing, and reading through `deepvision.data.records`) for code being ported.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepvision.data.imageio import DecodeError
from deepvision.data.records.header import IRHeader, pack_header
from deepvision.data.records.recordio import (
    MAGIC,
    MAGIC_BYTES,
    RecordReader,
    idx_path_for,
    read_index,
    read_record_at,
    scan_index,
)
from deepvision.fileio import CommitOnExit, PendingFile, atomic_write_text, stops_held
from deepvision.safeload import input_file

MAX_PART = 1 << 29
_HEAD = struct.Struct("<II")


def _lrec(cflag: int, length: int) -> int:
    return (cflag << 29) | length


def frame_record(payload: bytes | bytearray | memoryview) -> bytes:
    """The bytes the dmlc RecordIO writer emits for one record (split on aligned magic, padded)."""
    data = bytes(payload)
    n = len(data)
    if n >= MAX_PART:
        raise ValueError(f"a record payload must be below 2^29 bytes, got {n}")
    lower = n & ~3
    cuts = []
    pos = data.find(MAGIC_BYTES)
    while pos != -1 and pos < lower:
        if pos % 4 == 0:
            cuts.append(pos)
            pos = data.find(MAGIC_BYTES, pos + 4)
        else:
            pos = data.find(MAGIC_BYTES, pos + 1)
    pad = b"\0" * (-n % 4)
    if not cuts:
        return _HEAD.pack(MAGIC, n) + data + pad
    out, start = [], 0
    for cut in cuts:
        out.append(_HEAD.pack(MAGIC, _lrec(1 if start == 0 else 2, cut - start)))
        out.append(data[start:cut])
        start = cut + 4
    out.append(_HEAD.pack(MAGIC, _lrec(3, n - start)))
    out.append(data[start:])
    out.append(pad)
    return b"".join(out)


def write_index(idx_path: str | Path, keys: Sequence, offsets: Sequence[int]) -> None:
    """Write an .idx atomically (temporary file, then rename)."""
    atomic_write_text(idx_path, "".join(f"{k}\t{int(o)}\n" for k, o in zip(keys, offsets)))


def rebuild_index(rec_path: str | Path, idx_path: str | Path | None = None) -> Path:
    """Scan a .rec and write its .idx (default: beside it, PREFIX.idx). Returns the .idx path."""
    rec_path = Path(rec_path)
    input_file(rec_path, "record file")
    keys, offsets = scan_index(rec_path)
    out = Path(idx_path) if idx_path else idx_path_for(rec_path)
    write_index(out, keys, offsets)
    return out


class RecordWriter(CommitOnExit):
    """Write a .rec (and its .idx) through temporary files renamed into place by `close()`.

    An interrupted or failed run (an exception inside `with`) removes the temporary files, so a
    `.rec` that exists is always complete. `write(payload, key)` returns the record's byte offset.
    """

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None, *, index: bool = True) -> None:
        self.rec_path = Path(rec_path)
        self.idx_path = (Path(idx_path) if idx_path else idx_path_for(self.rec_path)) if index else None
        self._pending = PendingFile(self.rec_path, ".partial", parents=True)  # an abort removes the folders it made
        self._rec = open(self._pending.tmp, "wb", buffering=1 << 20)  # noqa: SIM115 (closed by close/abort)
        self._lines: list[str] = []
        self._pos = 0
        self.count = 0
        self.closed = False

    def tell(self) -> int:
        return self._pos

    def write(self, payload: bytes | bytearray | memoryview, key: Any = None) -> int:
        """Append one record; `key` (default: the record's position) goes to the .idx."""
        return self.write_framed(frame_record(payload), key)

    def write_framed(self, framed: bytes, key: Any = None) -> int:
        """Append bytes produced by `frame_record` (lets worker processes do the framing)."""
        offset = self._pos
        self._rec.write(framed)
        self._pos += len(framed)
        if self.idx_path is not None:
            self._lines.append(f"{self.count if key is None else key}\t{offset}\n")
        self.count += 1
        return offset

    def close(self) -> None:
        """Flush, fsync and rename the files into place (.idx first, the .rec last)."""
        if self.closed:
            return
        self.closed = True
        with stops_held():  # a stop between the two renames would leave the new .idx beside the old .rec
            try:
                self._rec.close()
                if self.idx_path is not None:
                    atomic_write_text(self.idx_path, "".join(self._lines))
            except OSError as exc:
                self._pending.failed(exc)
            except BaseException:
                self._pending.discard()
                raise
            self._pending.commit()

    def abort(self) -> None:
        """Discard everything written; the destination files are left untouched."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError):
            self._rec.close()
        self._pending.discard()


    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.abort()


def encode_image(img: np.ndarray, encoding: str = ".jpg", quality: int = 95) -> bytes:
    """Encode an OpenCV-ordered (BGR or gray) array as JPEG (quality 1-100) or PNG (compression 0-9)."""
    import cv2  # the `records` extra: only packing images needs OpenCV here

    encoding = encoding.lower()
    if encoding in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif encoding == ".png":  # im2rec passes --quality (default 95) straight through; OpenCV clamps it to 9
        params = [cv2.IMWRITE_PNG_COMPRESSION, max(0, min(9, int(quality)))]
    else:
        raise ValueError(f"encoding must be .jpg or .png, got {encoding!r}")
    ok, buf = cv2.imencode(encoding, img, params)
    if not ok:
        raise DecodeError(f"OpenCV could not encode a {img.shape} {img.dtype} image as {encoding}")
    return buf.tobytes()


def pack_img(header: IRHeader | tuple, img: np.ndarray, quality: int = 95, img_fmt: str = ".jpg") -> bytes:
    """mx.recordio.pack_img: encode an OpenCV-ordered (BGR/gray) array and prepend the header."""
    return pack_header(header, encode_image(img, img_fmt, quality))


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
