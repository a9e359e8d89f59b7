"""MXNet/dmlc RecordIO: byte-compatible framing, a writer, a memory-mapped reader and the .idx file.

Framing (little-endian): every part starts with the magic 0xCED7230A and a uint32 `lrec` whose upper
3 bits are the continuation flag (0 whole, 1 first, 2 middle, 3 last part) and whose lower 29 bits are
the part length; the part's bytes follow, and the record is zero-padded to a 4-byte boundary. The
writer splits a payload wherever the magic occurs at a 4-byte-aligned offset (dropping those 4 bytes);
the reader joins the parts and re-inserts the magic between them.

The `.idx` file holds `key<TAB>byte offset` per record (the offset of the record's first magic word).
`RecordFile` opens a `.rec` with its `.idx` (or rebuilds the index by scanning), validates that the two
match, and reads the record ids and labels of every record at once (cached per file, see `cache_dir`).
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import struct
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepvision.data.records.header import HEADER_SIZE, unpack_header
from deepvision.errors import UserError
from deepvision.fileio import atomic_write_text, file_mode, unlink_quietly

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
LENGTH_MASK = (1 << 29) - 1
MAX_PART = 1 << 29
_HEAD = struct.Struct("<II")
CACHE_VERSION = 1


class RecordError(UserError):
    """A corrupt or truncated record; names the record and its byte offset."""

    def __init__(self, message: str, *, index: int | None = None, offset: int | None = None) -> None:
        super().__init__(message)
        self.index, self.offset = index, offset


class IndexMismatchError(UserError):
    """The .idx does not describe its .rec (stale, truncated, or belonging to another file)."""


# -- framing -----------------------------------------------------------------------------------------
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
    if len(parts) == 1:
        return parts[0], pos
    return MAGIC_BYTES.join(bytes(p) for p in parts), pos


# -- index files -------------------------------------------------------------------------------------
def idx_path_for(rec_path: str | Path) -> Path:
    """PREFIX.rec -> PREFIX.idx (the name MXNet's tools use)."""
    return Path(rec_path).with_suffix(".idx")


def read_index(idx_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(keys, offsets) from an .idx file, in file order. Integer keys give an int64 array."""
    idx_path = Path(idx_path)
    keys: list[str] = []
    offsets: list[int] = []
    with open(idx_path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split("\t")
            try:
                keys.append(parts[0])
                offsets.append(int(parts[1]))
            except (IndexError, ValueError):
                raise IndexMismatchError(f"{idx_path}:{lineno}: expected 'key<TAB>byte offset', got {line[:60]!r}; "
                                         f"delete the .idx to rebuild it from the .rec") from None
    try:
        key_array = np.asarray([int(k) for k in keys], dtype=np.int64)
    except ValueError:
        key_array = np.asarray(keys, dtype=str)
    return key_array, np.asarray(offsets, dtype=np.int64)


def write_index(idx_path: str | Path, keys: Sequence, offsets: Sequence[int]) -> None:
    """Write an .idx atomically (temporary file, then rename)."""
    atomic_write_text(idx_path, "".join(f"{k}\t{int(o)}\n" for k, o in zip(keys, offsets)))


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


def rebuild_index(rec_path: str | Path, idx_path: str | Path | None = None) -> Path:
    """Scan a .rec and write its .idx (default: beside it, PREFIX.idx). Returns the .idx path."""
    rec_path = Path(rec_path)
    if not rec_path.is_file():
        raise UserError(f"record file not found: {rec_path}")
    keys, offsets = scan_index(rec_path)
    out = Path(idx_path) if idx_path else idx_path_for(rec_path)
    write_index(out, keys, offsets)
    return out


# -- writer ------------------------------------------------------------------------------------------
class RecordWriter:
    """Write a .rec (and its .idx) through temporary files renamed into place by `close()`.

    An interrupted or failed run (an exception inside `with`) removes the temporary files, so a
    `.rec` that exists is always complete. `write(payload, key)` returns the record's byte offset.
    """

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None, *, index: bool = True) -> None:
        self.rec_path = Path(rec_path)
        self.idx_path = (Path(idx_path) if idx_path else idx_path_for(self.rec_path)) if index else None
        self.rec_path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp_rec = tempfile.mkstemp(dir=self.rec_path.parent, prefix=f".{self.rec_path.name}.",
                                             suffix=".partial")
        os.chmod(self._tmp_rec, file_mode())
        self._rec = os.fdopen(fd, "wb", buffering=1 << 20)
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
        try:
            self._rec.flush()
            os.fsync(self._rec.fileno())
            self._rec.close()
            if self.idx_path is not None:
                atomic_write_text(self.idx_path, "".join(self._lines))
            os.replace(self._tmp_rec, self.rec_path)
        except OSError as exc:
            unlink_quietly(self._tmp_rec)
            raise UserError(f"could not write {self.rec_path}: {exc.strerror or exc}") from None
        except BaseException:
            unlink_quietly(self._tmp_rec)
            raise

    def abort(self) -> None:
        """Discard everything written; the destination files are left untouched."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError):
            self._rec.close()
        unlink_quietly(self._tmp_rec)

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.abort()




# -- reader ------------------------------------------------------------------------------------------
class RecordReader:
    """Memory-mapped sequential reader of a .rec (no index needed). Iterating yields (offset, payload).

    Payloads of single-part records are zero-copy memoryviews into the map: copy them (`bytes(p)`)
    to keep them after the reader is closed.
    """

    def __init__(self, rec_path: str | Path) -> None:
        self.path = Path(rec_path)
        if not self.path.is_file():
            raise UserError(f"record file not found: {self.path}")
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


# -- indexed record file --------------------------------------------------------------------------------
def cache_dir() -> Path | None:
    """Where record tables are cached ($DEEPVISION_CACHE_DIR, else ~/.cache/deepvision); None if disabled
    with DEEPVISION_CACHE_DIR=off."""
    env = os.environ.get("DEEPVISION_CACHE_DIR")
    if env is not None:
        return None if env.strip().lower() in ("", "0", "off", "none", "false") else Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "deepvision"


class RecordFile:
    """A .rec with its index and header table: random access by position, labels without decoding.

    `open()` reads the `.idx` beside the `.rec` (or `idx_path`), or rebuilds the index by scanning when
    there is none, then checks that every offset holds a record and that the records tile the file
    (a stale or foreign `.idx` raises IndexMismatchError). The table of offsets, ids and labels is
    cached under `cache_dir()` keyed by the files' sizes and modification times.
    """

    def __init__(self, path: Path, idx_path: Path | None, keys: np.ndarray, offsets: np.ndarray,
                 ids: np.ndarray, labels: np.ndarray, rebuilt: bool) -> None:
        self.path, self.idx_path = path, idx_path
        self.keys, self.offsets, self.ids, self.labels = keys, offsets, ids, labels
        self.rebuilt = rebuilt  # True when the index came from a scan (no .idx)
        self.reader = RecordReader(path)
        self._positions: dict[Any, int] | None = None

    @property
    def label_width(self) -> int:
        return int(self.labels.shape[1])

    def __len__(self) -> int:
        return len(self.offsets)

    @classmethod
    def open(cls, path: str | Path, idx_path: str | Path | None = None, *, cache: bool = True) -> RecordFile:
        path = Path(path)
        if not path.is_file():
            hint = " (pack one with `deepvision im2rec PREFIX ROOT`)" if path.suffix == ".rec" else ""
            raise UserError(f"record file not found: {path}{hint}")
        idx = Path(idx_path) if idx_path else idx_path_for(path)
        if idx_path and not idx.is_file():
            raise UserError(f"index file not found: {idx}")
        has_idx = idx.is_file()
        signature = _signature(path, idx if has_idx else None)
        cached = _load_cache(path, signature) if cache else None
        if cached is not None:
            keys, offsets, ids, labels = cached
        else:
            if has_idx:
                keys, offsets = read_index(idx)
            else:
                keys, offsets = scan_index(path)
            ids, labels = _header_table(path, idx if has_idx else None, offsets)
            if cache:
                _save_cache(path, signature, keys, offsets, ids, labels)
        return cls(path, idx if has_idx else None, keys, offsets, ids, labels, rebuilt=not has_idx)

    def read(self, i: int) -> memoryview | bytes:
        """Payload (header + image) of the record at position i."""
        return self.reader.read_at(int(self.offsets[i]), index=int(i))

    def position(self, key: Any) -> int:
        """The position of the record whose .idx key is `key` (KeyError when there is none)."""
        if self._positions is None:
            self._positions = {k: i for i, k in enumerate(self.keys.tolist())}
        return self._positions[key]

    def read_key(self, key: Any) -> memoryview | bytes:
        """Payload of the record with .idx key `key` (MXIndexedRecordIO.read_idx)."""
        return self.read(self.position(key))

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _signature(path: Path, idx: Path | None) -> np.ndarray:
    st = path.stat()
    sig = [CACHE_VERSION, st.st_size, st.st_mtime_ns, st.st_ino]
    if idx is not None:
        si = idx.stat()
        sig += [si.st_size, si.st_mtime_ns, si.st_ino]
    return np.asarray(sig, dtype=np.int64)


def _cache_file(path: Path) -> Path | None:
    base = cache_dir()
    if base is None:
        return None
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:20]
    return base / "records" / f"{path.stem}-{digest}.npz"


def _load_cache(path: Path, signature: np.ndarray) -> tuple[np.ndarray, ...] | None:
    file = _cache_file(path)
    if file is None or not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as z:
            if not np.array_equal(z["signature"], signature):
                return None
            return z["keys"], z["offsets"], z["ids"], z["labels"]
    except (OSError, ValueError, KeyError):
        return None


def _save_cache(path: Path, signature: np.ndarray, keys: np.ndarray, offsets: np.ndarray, ids: np.ndarray,
                labels: np.ndarray) -> None:
    file = _cache_file(path)
    if file is None or len(offsets) < 1000:  # small files are cheap to read again
        return
    with contextlib.suppress(OSError):
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, signature=signature, keys=keys, offsets=offsets, ids=ids, labels=labels)
            os.replace(tmp, file)
        except BaseException:
            unlink_quietly(tmp)
            raise


def _mismatch(path: Path, idx: Path | None, what: str) -> UserError:
    if idx is None:
        return RecordError(f"{path} is corrupt: {what}")
    return IndexMismatchError(f"{idx} does not match {path}: {what}. The .idx is stale or belongs to another "
                              f"file; delete it (it is rebuilt by scanning the .rec) or re-pack with "
                              f"`deepvision im2rec`")


def _header_table(path: Path, idx: Path | None, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate `offsets` against the file and read every record's (id, labels) with vectorised gathers."""
    size = path.stat().st_size
    n = len(offsets)
    if n == 0:
        if size:
            raise _mismatch(path, idx, "the index lists no record but the .rec is not empty")
        return np.zeros(0, np.int64), np.zeros((0, 1), np.float32)
    if size == 0:
        raise _mismatch(path, idx, "the .rec is empty")
    if np.any(offsets % 4) or np.any(offsets < 0):
        bad = int(np.flatnonzero((offsets % 4 != 0) | (offsets < 0))[0])
        raise _mismatch(path, idx, f"record {bad} is at byte offset {offsets[bad]}, which is not a record boundary")
    failure: tuple[type[UserError], str, int | None, int | None] | None = None
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        try:
            return _scan_headers(path, idx, mm, offsets, size)
        except UserError as exc:
            failure = (type(exc), str(exc), getattr(exc, "index", None), getattr(exc, "offset", None))
        except (ValueError, struct.error) as exc:  # damage found while joining a split record
            failure = (RecordError, f"{path} is corrupt: {exc}", None, None)
        # the exception (and the memoryviews its traceback holds) is gone here, so the map can close
    kind, message, index, offset = failure
    if issubclass(kind, RecordError):
        raise RecordError(message, index=index, offset=offset)
    raise kind(message)


def _scan_headers(path: Path, idx: Path | None, mm: mmap.mmap, offsets: np.ndarray, size: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    n = len(offsets)
    words = np.frombuffer(mm, dtype="<u4", count=size // 4)
    try:
        inside = offsets + 8 <= size
        w_in = offsets[inside] // 4
        wrong = words[w_in] != MAGIC
        if np.any(wrong):
            bad = int(np.flatnonzero(inside)[np.argmax(wrong)])
            raise _mismatch(path, idx, f"record {bad} at byte offset {offsets[bad]} does not start with the "
                                       f"RecordIO magic number")
        ends_in = offsets[inside] + 8 + (words[w_in + 1] & LENGTH_MASK).astype(np.int64)
        if np.any(ends_in > size):  # a record running past the end: the .rec was cut short (not a stale index)
            cut = np.flatnonzero(inside)[ends_in > size]
            bad = int(cut[np.argmin(offsets[cut])])
            raise RecordError(f"{path}: record {bad} at byte offset {offsets[bad]} is truncated (the file ends "
                              f"inside it at byte {size})", index=bad, offset=int(offsets[bad]))
        if not inside.all():
            bad = int(np.flatnonzero(~inside)[0])
            where = (f"beyond the end of the {size}-byte file" if offsets[bad] >= size else
                     f"only {size - offsets[bad]} byte(s) before the end of the {size}-byte file, too close for "
                     f"an 8-byte record header")
            raise _mismatch(path, idx, f"record {bad} is at byte offset {offsets[bad]}, {where}")
        w = offsets // 4
        lrec = words[w + 1]
        cflag, length = lrec >> 29, (lrec & LENGTH_MASK).astype(np.int64)
        if np.any(cflag > 1):
            bad = int(np.flatnonzero(cflag > 1)[0])
            raise _mismatch(path, idx, f"record {bad} at byte offset {offsets[bad]} points into the middle "
                                       f"of a split record")
        first_end = offsets + 8 + ((length + 3) & ~3)
        _check_tiling(path, idx, mm, offsets, cflag, first_end, size)
        ids = np.zeros(n, np.int64)
        flag = np.zeros(n, np.int64)
        direct = length >= HEADER_SIZE
        dw = w[direct]
        flag[direct] = words[dw + 2]
        ids[direct] = (words[dw + 4].astype(np.uint64) | (words[dw + 5].astype(np.uint64) << np.uint64(32))
                       ).astype(np.int64)
        joined: dict[int, tuple] = {}
        for i in np.flatnonzero(~direct & (cflag == 1)):  # the header itself is split by a magic number
            header, _ = unpack_header(read_record_at(mm, int(offsets[i]), size)[0])
            joined[int(i)] = header
            flag[i], ids[i] = header.flag, header.id
        whole = direct & (cflag == 0)
        too_many = whole & (HEADER_SIZE + 4 * flag > length)  # more labels announced than the record holds
        if np.any(too_many):
            bad = int(np.flatnonzero(too_many)[0])
            raise RecordError(f"{path}: record {bad} at byte offset {offsets[bad]} is corrupt: its header announces "
                              f"{flag[bad]} labels in a {length[bad]}-byte record", index=bad, offset=int(offsets[bad]))
        width = max(1, int(flag.max()))
        labels = np.zeros((n, width), np.float32)
        single = direct & (flag == 0)
        labels[single, 0] = words[w[single] + 3].view("<f4")
        multi = np.flatnonzero(direct & (flag > 0))
        fits = length[multi] >= HEADER_SIZE + 4 * flag[multi]
        for k in range(width):
            sel = multi[fits & (flag[multi] > k)]
            labels[sel, k] = words[w[sel] + 8 + k].view("<f4")
        for i in multi[~fits]:  # labels split by a magic number: parse the joined payload
            header, _ = unpack_header(read_record_at(mm, int(offsets[i]), size)[0])
            joined[int(i)] = header
        for i, header in joined.items():
            if header.flag > 0:
                labels[i, : header.flag] = header.label
            else:
                labels[i, 0] = header.label
        return ids, labels
    finally:
        del words


def _check_tiling(path: Path, idx: Path | None, mm: mmap.mmap, offsets: np.ndarray, cflag: np.ndarray,
                  first_end: np.ndarray, size: int) -> None:
    """The indexed records, in offset order, must cover the file exactly: no gap, overlap or tail."""
    order = np.argsort(offsets, kind="stable")
    starts = offsets[order]
    ends = first_end[order].copy()
    for j in np.flatnonzero(cflag[order] == 1):  # split records: follow their parts
        ends[j] = read_record_at(mm, int(starts[j]), size)[1]
    if starts[0] != 0:
        raise _mismatch(path, idx, f"the first indexed record starts at byte {starts[0]}, not 0")
    gaps = np.flatnonzero(ends[:-1] != starts[1:])
    if len(gaps):
        j = int(gaps[0])
        raise _mismatch(path, idx, f"record {int(order[j])} at byte offset {starts[j]} ends at byte {ends[j]} but "
                                   f"the next indexed record starts at byte {starts[j + 1]}")
    if ends[-1] != size:
        raise _mismatch(path, idx, f"the last indexed record ends at byte {ends[-1]} but the .rec has {size} bytes")


# -- mx.recordio-compatible classes ---------------------------------------------------------------------
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
