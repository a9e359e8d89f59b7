"""`RecordFile`: a `.rec` opened with its `.idx` (or an index rebuilt by scanning), validated against it,
with the record ids and labels of every record read at once (cached per file, see `cache_dir`)."""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from deepvision.data.records.header import HEADER_SIZE, unpack_header
from deepvision.data.records.recordio import (
    LENGTH_MASK,
    MAGIC,
    IndexMismatchError,
    RecordError,
    RecordReader,
    idx_path_for,
    read_index,
    read_record_at,
    scan_index,
)
from deepvision.errors import UserError
from deepvision.fileio import atomic_path
from deepvision.safeload import ENV_NO, ENV_YES, input_file

CACHE_VERSION = 3  # 2: a key given twice in the .idx is refused; 3: mixed label counts are refused


def cache_dir() -> Path | None:
    """Where record tables are cached ($DEEPVISION_CACHE_DIR, else ~/.cache/deepvision); None if disabled
    with DEEPVISION_CACHE_DIR=off (or 0/false/no/none/empty: the words that turn a DEEPVISION_* switch off)."""
    env = os.environ.get("DEEPVISION_CACHE_DIR")
    if env is not None:
        if env.strip().lower() in ENV_YES:  # a word that turns a switch on names no folder
            raise UserError(f"DEEPVISION_CACHE_DIR is a folder or off/0/false/no/none, not {env!r} (a folder: ./{env})")
        return None if env.strip().lower() in (*ENV_NO, "none") else Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "deepvision"


class RecordFile:
    """A .rec with its index and header table: random access by position, labels without decoding.

    `open()` reads the `.idx` beside the `.rec` (or `idx_path`), or rebuilds the index by scanning when
    there is none, then checks that every offset holds a record and that the records tile the file
    (a stale or foreign `.idx` raises IndexMismatchError). The table of offsets, ids and labels is
    cached under `cache_dir()` keyed by the files' sizes, inodes and modification and change times.
    """

    def __init__(self, path: Path, idx_path: Path | None, keys: np.ndarray, offsets: np.ndarray,
                 ids: np.ndarray, labels: np.ndarray, rebuilt: bool) -> None:
        self.path, self.idx_path = path, idx_path
        self.keys, self.offsets, self.ids, self.labels = keys, offsets, ids, labels
        self.rebuilt = rebuilt  # True when the index came from a scan (no .idx)
        self.reader = RecordReader(path)

    @property
    def label_width(self) -> int:
        return int(self.labels.shape[1])

    def __len__(self) -> int:
        return len(self.offsets)

    @classmethod
    def open(cls, path: str | Path, idx_path: str | Path | None = None, *, cache: bool = True) -> RecordFile:
        path = Path(path)
        hint = " (pack one with `deepvision im2rec PREFIX ROOT`)" if path.suffix == ".rec" else ""
        input_file(path, "record file", hint)  # a FIFO is named as one, never opened
        idx = Path(idx_path) if idx_path else idx_path_for(path)
        if idx_path:
            input_file(idx, "index file")
        has_idx = idx.is_file()
        signature = _signature(path, idx if has_idx else None)
        cached = _load_cache(path, signature) if cache else None
        if cached is not None:
            keys, offsets, ids, labels = cached
        else:
            keys, offsets = read_index(idx) if has_idx else scan_index(path)
            ids, labels = _header_table(path, idx if has_idx else None, offsets)
            if cache:
                _save_cache(path, signature, keys, offsets, ids, labels)
        return cls(path, idx if has_idx else None, keys, offsets, ids, labels, rebuilt=not has_idx)

    def describe(self, pos: int) -> str:
        """Record `pos` as every message names it: its 0-based position, id and byte offset."""
        return f"record {pos} (id {int(self.ids[pos])}) at byte offset {int(self.offsets[pos])}"

    def read(self, i: int) -> memoryview | bytes:
        """Payload (header + image) of the record at position i."""
        return self.reader.read_at(int(self.offsets[i]), index=int(i))

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _signature(path: Path, idx: Path | None) -> np.ndarray:
    st = path.stat()
    sig = [CACHE_VERSION, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]  # ctime: an edit in place that
    if idx is not None:  # restores the mtime (touch -r) still changes it, and nobody can set it back
        si = idx.stat()
        sig += [si.st_size, si.st_mtime_ns, si.st_ino, si.st_ctime_ns]
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
    with contextlib.suppress(OSError, UserError):  # only a cache: reading the file again is the fallback
        file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(file) as tmp, open(tmp, "wb") as f:
            np.savez(f, signature=signature, keys=keys, offsets=offsets, ids=ids, labels=labels)


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
        counts = np.maximum(flag, 1)  # flag 0: the one label in the header
        if np.any(mixed := counts != counts[0]):  # as the lst source: readers take one width
            b, at = int(np.argmax(mixed)), "record {0} (id {1}) at byte offset {2} has {3}".format  # as describe()
            raise UserError(f"{path} mixes label counts: {at(0, ids[0], offsets[0], counts[0])} label(s), "
                            f"{at(b, ids[b], offsets[b], counts[b])}; a classification record file gives every "
                            f"image the same number (pack it again from a list whose lines all hold the same labels)")
        width = int(counts[0])
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
            labels[i, : max(header.flag, 1)] = header.label  # flag 0: the one label in the header
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
