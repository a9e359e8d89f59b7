"""The image record header: the first 24 bytes of every image record's payload (MXNet's IRHeader).

Layout (little-endian): uint32 flag, float32 label, uint64 id, uint64 id2. When flag = k > 0 the
`label` field is unused (0) and k float32 labels follow the header; the encoded image comes after.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

_FORMAT = struct.Struct("<IfQQ")
HEADER_SIZE = _FORMAT.size  # 24


class IRHeader(NamedTuple):
    """flag, label (a float, or an array of float32 when flag > 0), id, id2 (as in mx.recordio)."""

    flag: int
    label: float | np.ndarray
    id: int
    id2: int = 0


def pack_header(header: IRHeader | Sequence, payload: bytes = b"") -> bytes:
    """Header bytes (+ packed labels) followed by `payload`; mx.recordio.pack semantics.

    A scalar label is stored in the header with flag 0; a sequence of labels sets flag to its
    length, stores 0 as the label and writes the labels as float32 after the header.
    """
    flag, label, rid, rid2 = IRHeader(*header)
    if isinstance(label, (int, float, np.integer, np.floating)):
        return _FORMAT.pack(0, float(label), int(rid), int(rid2)) + bytes(payload)
    labels = np.asarray(label, dtype="<f4").ravel()
    return _FORMAT.pack(labels.size, 0.0, int(rid), int(rid2)) + labels.tobytes() + bytes(payload)


def unpack_header(record: bytes | memoryview) -> tuple[IRHeader, memoryview]:
    """(header, image bytes) of a record payload; multi-label headers carry a float32 array."""
    view = memoryview(record)
    if len(view) < HEADER_SIZE:
        raise ValueError(f"record payload of {len(view)} bytes is shorter than the {HEADER_SIZE}-byte image header")
    flag, label, rid, rid2 = _FORMAT.unpack_from(view, 0)
    body = view[HEADER_SIZE:]
    if flag > 0:
        if len(body) < 4 * flag:
            raise ValueError(f"record header announces {flag} labels but the payload is too short")
        labels = np.frombuffer(body, dtype="<f4", count=flag).astype(np.float32)
        return IRHeader(flag, labels, rid, rid2), body[4 * flag :]
    return IRHeader(flag, label, rid, rid2), body


# mx.recordio-compatible names
pack = pack_header


def unpack(record: bytes | memoryview) -> tuple[IRHeader, bytes]:
    """mx.recordio.unpack: (header, image bytes as `bytes`)."""
    header, body = unpack_header(record)
    return header, bytes(body)


def image_bytes(payload: bytes | memoryview) -> memoryview:
    """The encoded image of a record payload: what follows its header and `flag` extra labels."""
    payload = memoryview(payload)
    if len(payload) < HEADER_SIZE:
        raise ValueError(f"payload of {len(payload)} bytes is shorter than the image header")
    flag = int.from_bytes(payload[:4], "little")
    start = HEADER_SIZE + 4 * flag
    if start > len(payload):
        raise ValueError(f"header announces {flag} labels but the payload is too short")
    return payload[start:]
