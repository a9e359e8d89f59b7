"""Bounded readers of container files whose entries declare their own sizes (zip/.npz members, MAT
variables): every declared size is checked against the file's stored bytes and the read ceiling before
anything is inflated or allocated."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from deepvision.errors import UserError
from deepvision.fileio import open_regular_file, repeated_member
from deepvision.safeload.files import check_declared_bytes, format_bytes, regular_file
from deepvision.safeload.text import printable

ZIP_MAX_RATIO = 100.0  # deflate rarely beats 10:1 on weights; a zip bomb reaches 1000:1
DEFLATE_MAX_RATIO = 1032.0  # deflate's own limit: no stream inflates further (a gzip stream streamed, never held)


def check_zip_member(path: str | Path, info: Any, length: int, max_ratio: float = ZIP_MAX_RATIO) -> None:
    """Check one zip member (a `zipfile.ZipInfo`) from the zip directory alone, before it is inflated:
    its stored size within the file's `length` from its offset, its uncompressed size within the read
    ceiling and `max_ratio` times its stored size (a zip bomb inflates 1000:1), not encrypted. UserError
    otherwise."""
    import zipfile

    field = f"{path} member {info.filename}"
    if info.flag_bits & 0x1:  # zipfile would ask for a password when the member is read
        raise UserError(f"{field} is encrypted; deepvision reads no password-protected archive")
    room = max(length - info.header_offset, 0)  # a member's bytes lie between its offset and the end
    if info.compress_size > room:
        raise UserError(f"{field} claims {format_bytes(info.compress_size)} stored but the file holds "
                        f"{format_bytes(room)} from its start; the file is truncated or crafted")
    ratio = max_ratio if info.compress_type != zipfile.ZIP_STORED else 1.0
    check_declared_bytes(field, info.file_size, info.compress_size, ratio)


def check_unique_members(path: str | Path, zf: Any) -> None:
    """UserError when the directory of the open `zipfile.ZipFile` `zf` (read from `path`) lists a member name
    twice: zipfile returns the last of them without a word, another reader the first."""
    twice = repeated_member(zf)
    if twice is not None:
        raise UserError(f"{path} holds the member {printable(twice)[:80]} twice; the file is damaged or crafted")


def check_written_chunks(field: str, ds: Any) -> None:
    """UserError when the chunked HDF5 dataset `ds` (an h5py Dataset) holds fewer chunks than its shape needs: a
    chunk never written reads as the fill value (zeros), compressed or not (its stored size cannot tell, as a
    compressed dataset legitimately stores fewer bytes than it declares). `field` names it in the message."""
    chunks = getattr(ds, "chunks", None)
    if not chunks or not ds.shape:
        return
    needed = math.prod(-(-n // c) for n, c in zip(ds.shape, chunks))
    try:
        held = ds.id.get_num_chunks()
    except (AttributeError, RuntimeError, OSError, ValueError):  # an HDF5 library too old to count them
        return
    if held < needed:
        raise UserError(f"{field} needs {needed:,} chunks but the file holds {held:,}: the others were never "
                        f"written and would read as zeros; the file is damaged or was not written to its end")


def check_zip_directory(path: str | Path, zf: Any, max_ratio: float = ZIP_MAX_RATIO) -> None:
    """`check_unique_members`, then `check_zip_member` for every member of the open `zipfile.ZipFile` `zf`
    read from `path`."""
    check_unique_members(path, zf)
    length = Path(path).stat().st_size
    for info in zf.infolist():
        check_zip_member(path, info, length, max_ratio)


_MAT_COMPRESSED, _MAT_MATRIX = 15, 14  # MAT v5 element types miCOMPRESSED and miMATRIX


def check_mat_file(path: str | Path, max_ratio: float = ZIP_MAX_RATIO, what: str = "MATLAB file") -> Path:
    """Check a MAT file before `scipy.io.loadmat` reads it: a regular file within the read ceiling, and
    for version 5 every compressed variable's declared size (the miMATRIX tag inside the zlib stream)
    within the ceiling and `max_ratio` times its stored size, the stream inflating to no more than that
    (counted in blocks, never held). loadmat inflates a variable whole, so a 13 MB file could ask for
    3 GB. Returns the path; UserError otherwise. Version 4 (never compressed) and 7.3 (HDF5, which
    loadmat refuses) pass unchanged."""
    import struct

    path = regular_file(path, what)
    length = path.stat().st_size
    check_declared_bytes(str(path), length)
    with open_regular_file(path) as f:
        header = f.read(128)
        if len(header) < 128 or header[124:126] not in (b"\x00\x01", b"\x01\x00") or header[126:128] not in (
                b"IM", b"MI"):
            return path  # not version 5: loadmat decides
        order = "<" if header[126:128] == b"IM" else ">"
        offset = 128
        while offset + 8 <= length:
            f.seek(offset)
            kind, nbytes = struct.unpack(order + "II", f.read(8))
            if kind >> 16:  # a small data element: type and size in 4 bytes, data in the next 4
                offset += 8
                continue
            if nbytes > length - offset - 8:
                raise UserError(f"{path}: an element at offset {offset:,} claims {format_bytes(nbytes)} but the "
                                f"file holds {format_bytes(length - offset - 8)} after it; it is truncated "
                                f"or crafted")
            if kind == _MAT_COMPRESSED:
                _check_mat_stream(path, f, offset, nbytes, order, max_ratio)
            offset += 8 + nbytes + (-nbytes % 8 if kind != _MAT_COMPRESSED else 0)
    return path


def _check_mat_stream(path: Path, f: Any, offset: int, nbytes: int, order: str, max_ratio: float) -> None:
    import struct
    import zlib

    field = f"{path} variable at offset {offset:,}"
    inflate = zlib.decompressobj()
    left, produced, declared, head = nbytes, 0, None, b""
    block = 1 << 20
    while left or inflate.unconsumed_tail:
        data = inflate.unconsumed_tail
        if not data:
            data = f.read(min(left, block))
            left -= len(data)
            if not data:
                break
        try:
            out = inflate.decompress(data, block)
        except zlib.error as exc:
            raise UserError(f"{field} is not a valid zlib stream ({exc}); the file is damaged") from None
        produced += len(out)
        if declared is None:
            head += out[:8 - len(head)]
            if len(head) == 8:
                kind, size = struct.unpack(order + "II", head)
                if kind != _MAT_MATRIX:
                    return  # not a variable: loadmat decides
                declared = size + 8
                check_declared_bytes(field, declared, nbytes, max_ratio)
        if declared is not None and produced > declared:
            raise UserError(f"{field} inflates to more than the {format_bytes(declared)} it declares; "
                            f"the file is damaged or crafted")
        if inflate.eof:
            break


def open_npz(path: str | Path, max_ratio: float = ZIP_MAX_RATIO, what: str = ".npz file") -> Any:
    """`np.load(path, allow_pickle=False)` after checking the zip directory: each member and each array
    name once (`a.npy` and `a` are both array `a` to numpy), every member's stored size within the file's
    own length, its uncompressed size within the read ceiling and `max_ratio` times its compressed size,
    and every .npy header's shape within its member's size (numpy allocates the declared shape before
    reading). UserError otherwise."""
    import zipfile

    import numpy as np

    path = regular_file(path, what)
    magic = np.lib.format.MAGIC_PREFIX
    try:
        length = path.stat().st_size
        with zipfile.ZipFile(path) as zf:
            check_unique_members(path, zf)
            arrays: dict[str, str] = {}
            for info in zf.infolist():
                field = f"{path} member {info.filename}"
                check_zip_member(path, info, length, max_ratio)
                key = info.filename.removesuffix(".npy")
                first = arrays.setdefault(key, info.filename)
                if first != info.filename:  # numpy keeps the later of the two under the one name
                    raise UserError(f"{path} holds the array {printable(key)[:80]} twice (members "
                                    f"{printable(first)[:80]} and {printable(info.filename)[:80]}); the file is "
                                    f"damaged or crafted")
                with zf.open(info) as f:
                    if not info.filename.endswith(".npy") and f.read(len(magic)) != magic:
                        continue  # numpy gives such a member as bytes; one that starts as .npy is an array
                    f.seek(0)
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                    elif version == (2, 0):
                        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                    else:
                        raise ValueError(f"npy format version {version}")
                if dtype.hasobject:
                    raise UserError(f"{field} holds Python objects; only plain arrays are read")
                check_declared_bytes(f"{field} shape {shape}", math.prod(shape) * dtype.itemsize,
                                     info.file_size)
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, NotImplementedError, RuntimeError) as exc:
        raise UserError(f"{path} is not a readable {what} ({' '.join(str(exc).split())[:120]})") from None
    return np.load(path, allow_pickle=False)
