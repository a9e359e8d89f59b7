"""Read (and write) MXNet `.params` files in pure Python: no MXNet needed, nothing unpickled.

A `.params` file is MXNet's NDArray list (`mx.nd.save`), little-endian:

    uint64 0x112 (list magic), uint64 0 (reserved)
    uint64 count, then `count` arrays
    uint64 count, then `count` names, each uint64 length + UTF-8 bytes (no names: count 0)

Each array starts with a per-array magic that selects its layout:

    V2 0xF993FAC9 (MXNet >= 1.0)   int32 storage type, [sparse: storage shape], shape, [shape empty: end],
                                   context, int32 dtype, [sparse: aux types/shapes], data, [aux data]
    V3 0xF993FACA (numpy semantics, `npx.set_np()`)  as V2, dense only; ndim -1 = none, ndim 0 = scalar
    V1 0xF993FAC8 (MXNet 0.9-0.12)  shape, [empty: end], context, int32 dtype, data
    pre-V1 (no magic)               the first uint32 is ndim, then ndim uint32 sizes, context, dtype, data

where shape = int32 ndim + ndim int64 sizes, context = int32 device type + int32 device id. Names
carry `arg:` (weights) or `aux:` (BatchNorm moving statistics) prefixes in checkpoints written by
`Module.save_checkpoint` / `HybridBlock.export`; Gluon's `save_parameters` writes bare names.
Sparse arrays (row_sparse, csr) are refused with a clear message.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from pathlib import Path

import numpy as np

from deepvision.errors import UserError
from deepvision.safeload import input_file, max_read_bytes, read_bytes

MAX_PARAMS_BYTES = 4 * 10**9  # VGG-19, the largest MXNet zoo model, is 575 MB

LIST_MAGIC = 0x112
V1_MAGIC, V2_MAGIC, V3_MAGIC = 0xF993FAC8, 0xF993FAC9, 0xF993FACA
# mshadow type flags
DTYPES: dict[int, str] = {0: "<f4", 1: "<f8", 2: "<f2", 3: "u1", 4: "<i4", 5: "i1", 6: "<i8", 7: "?", 8: "<i2",
                          9: "<u2", 10: "<u4", 11: "<u8", 12: "bfloat16"}
_FLAGS = {np.dtype(v): k for k, v in DTYPES.items() if v != "bfloat16"}
STORAGE = {0: "dense", 1: "row_sparse", 2: "csr"}


class _Reader:
    def __init__(self, data: bytes, path: str) -> None:
        self.data, self.pos, self.path = data, 0, path
        self.where = "the header"

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise UserError(f"{self.path} is truncated or damaged: {self.where} needs {n} bytes at offset "
                            f"{self.pos}, the file has {len(self.data)}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def u64(self) -> int:
        return self.unpack("<Q")[0]


def _shape(r: _Reader, legacy_ndim: int | None = None) -> tuple[int, ...] | None:
    """A shape; None for MXNet's 'none' array (no shape)."""
    if legacy_ndim is not None:
        return tuple(r.unpack(f"<{legacy_ndim}I")) if legacy_ndim else None
    (ndim,) = r.unpack("<i")
    if ndim < 0:
        return None
    if ndim > 32:
        raise UserError(f"{r.path} is damaged: {r.where} claims {ndim} dimensions")
    dims = r.unpack(f"<{ndim}q")
    if any(d < 0 for d in dims):
        raise UserError(f"{r.path} is damaged: {r.where} has a negative size {dims}")
    return tuple(dims)


def _array(r: _Reader, shape: tuple[int, ...], flag: int) -> np.ndarray:
    if flag not in DTYPES:
        raise UserError(f"{r.path}: {r.where} has unknown dtype flag {flag}")
    count = math.prod(shape)  # exact: a product past int64 is refused by take(), not wrapped around
    if math.prod(max(d, 1) for d in shape) > len(r.data):  # also an empty array's other sizes
        raise UserError(f"{r.path} is damaged: {r.where} has shape {shape}, more than the file can hold")
    if DTYPES[flag] == "bfloat16":  # numpy has no bfloat16: widen the 16 high bits to float32
        raw = np.frombuffer(r.take(2 * count), dtype="<u2").astype(np.uint32) << 16
        return raw.view(np.float32).reshape(shape)
    dtype = np.dtype(DTYPES[flag])
    return np.frombuffer(r.take(dtype.itemsize * count), dtype=dtype).reshape(shape).copy()


def _read_one(r: _Reader) -> np.ndarray | None:
    (magic,) = r.unpack("<I")
    if magic in (V2_MAGIC, V3_MAGIC):
        (stype,) = r.unpack("<i")
        if stype != 0:
            kind = STORAGE.get(stype, f"storage type {stype}")
            raise UserError(f"{r.path}: {r.where} is a sparse ({kind}) array, which deepvision does not import; "
                            f"convert it in MXNet with .tostype('default') and save again")
        shape = _shape(r)
        if shape is None or (magic == V2_MAGIC and len(shape) == 0):
            return None
    elif magic == V1_MAGIC:
        shape = _shape(r)
        if not shape:
            return None
    else:  # pre-V1: the magic is the number of dimensions, sizes are uint32
        if magic > 32:
            raise UserError(f"{r.path} is damaged: {r.where} starts with {magic:#x}, not an NDArray magic")
        shape = _shape(r, legacy_ndim=magic)
        if not shape:
            return None
    r.unpack("<ii")  # context (device type, id): arrays load on the CPU
    (flag,) = r.unpack("<i")
    return _array(r, shape, flag)


def read_params(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of an MXNet NDArray file, by name in file order (names '0', '1', ... when unnamed)."""
    path = input_file(path, "MXNet parameter file")  # a FIFO or device: "is a FIFO, not a regular file"
    try:
        data = read_bytes(path, "MXNet parameter file", min(MAX_PARAMS_BYTES, max_read_bytes()))
    except FileNotFoundError:
        raise UserError(f"MXNet parameter file not found: {path}") from None
    r = _Reader(data, str(path))
    if len(data) < 16 or r.u64() != LIST_MAGIC:
        raise UserError(f"{path} is not an MXNet .params file (no NDArray list magic 0x112)")
    r.u64()
    r.where = "the array count"
    count = r.u64()
    if count > len(data):
        raise UserError(f"{path} is damaged: it claims {count} arrays")
    arrays = []
    for i in range(count):
        r.where = f"array {i}"
        arrays.append(_read_one(r))
    r.where = "the name list"
    n_names = r.u64()
    if n_names not in (0, count):
        raise UserError(f"{path} is damaged: {count} arrays but {n_names} names")
    names = []
    for i in range(n_names):
        r.where = f"name {i}"
        try:
            names.append(r.take(r.u64()).decode("utf-8"))
        except UnicodeDecodeError:
            raise UserError(f"{path} is damaged: name {i} is not UTF-8") from None
    if r.pos < len(data):  # MXNet writes nothing after the names: appended bytes are damage or a payload
        raise UserError(f"{path} is damaged: trailing {len(data) - r.pos} bytes after the last array and its "
                        f"names (offset {r.pos})")
    names = names or [str(i) for i in range(count)]
    twice = sorted(n for n, k in Counter(names).items() if k > 1)
    if twice:  # MXNet names each parameter once; a second array of the same name would silently replace the first
        raise UserError(f"{path} is damaged: the name {twice[0]!r} is given to more than one array")
    return {name: a for name, a in zip(names, arrays) if a is not None}


def split_params(params: dict[str, np.ndarray], source: str | Path = "the parameter file"
                 ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(arg_params, aux_params) with the `arg:`/`aux:` prefixes removed; unprefixed names count as args.
    UserError naming `source` when two names are one parameter (`arg:w` and `w`, `aux:m` and `arg:m`): a
    symbol names each variable once, and either array would silently replace the other."""
    args, aux = {}, {}
    given: dict[str, str] = {}
    for name, value in params.items():
        kind, sep, rest = name.partition(":")
        if not (sep and kind in ("arg", "aux")):
            kind, rest = "arg", name
        first = given.setdefault(rest, name)
        if first != name:
            raise UserError(f"{source}: {rest} is given twice ({first} and {name}); the file is damaged or crafted")
        (aux if kind == "aux" else args)[rest] = value
    return args, aux


def encode_params(arrays: dict[str, np.ndarray] | list[np.ndarray], version: int = 2) -> bytes:
    """Bytes of an NDArray list file as MXNet writes it; `version` 2 or 3 (1.x), 1 or 0 (pre-V1, old files)."""
    if version not in (0, 1, 2, 3):
        raise ValueError("version must be 0 (pre-V1), 1, 2 or 3")
    names = list(arrays) if isinstance(arrays, dict) else []
    values = list(arrays.values()) if isinstance(arrays, dict) else list(arrays)
    out = [struct.pack("<QQQ", LIST_MAGIC, 0, len(values))]
    for a in values:
        a = np.ascontiguousarray(a)
        flag = _FLAGS.get(a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype)
        if flag is None:
            raise ValueError(f"dtype {a.dtype} has no MXNet type flag")
        dims = a.shape
        if version == 0:
            out.append(struct.pack(f"<I{len(dims)}I", len(dims), *dims))
        else:
            magic = {1: V1_MAGIC, 2: V2_MAGIC, 3: V3_MAGIC}[version]
            out.append(struct.pack("<I", magic))
            if version >= 2:
                out.append(struct.pack("<i", 0))
            out.append(struct.pack(f"<i{len(dims)}q", len(dims), *dims))
        out.append(struct.pack("<iii", 1, 0, flag))  # cpu(0), dtype
        out.append(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
    out.append(struct.pack("<Q", len(names)))
    for name in names:
        raw = name.encode("utf-8")
        out.append(struct.pack("<Q", len(raw)) + raw)
    return b"".join(out)


def write_params(path: str | Path, arrays: dict[str, np.ndarray] | list[np.ndarray], version: int = 2) -> Path:
    """Write an MXNet `.params` file (atomically) that `mx.nd.load` reads."""
    from deepvision.fileio import atomic_write_bytes

    path = Path(path)
    atomic_write_bytes(path, encode_params(arrays, version))
    return path
