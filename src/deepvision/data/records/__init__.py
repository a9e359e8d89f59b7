"""MXNet-compatible record files: RecordIO framing, image headers, .idx files and image codecs.

    from deepvision.data.records import RecordWriter, RecordReader, RecordFile, pack_header, unpack_header

`recordio.MXRecordIO`, `recordio.MXIndexedRecordIO` and `pack`/`unpack`/`pack_img`/`unpack_img` mirror
`mxnet.recordio` for code being ported.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepvision.data.records.header import HEADER_SIZE, IRHeader, pack, pack_header, unpack, unpack_header
from deepvision.data.records.mxnet_recordio import MXIndexedRecordIO, MXRecordIO
from deepvision.data.records.record_file import RecordFile
from deepvision.data.records.recordio import (
    MAGIC,
    IndexMismatchError,
    RecordError,
    RecordReader,
    RecordWriter,
    frame_record,
    idx_path_for,
    read_index,
    read_record_at,
    rebuild_index,
    scan_index,
    scan_records,
    write_index,
)


def pack_img(header: IRHeader | tuple, img: np.ndarray, quality: int = 95, img_fmt: str = ".jpg") -> bytes:
    """mx.recordio.pack_img: encode an OpenCV-ordered (BGR/gray) array and prepend the header."""
    from deepvision.data.records.codec import encode_image

    return pack_header(header, encode_image(img, img_fmt, quality))


def unpack_img(record: bytes, iscolor: int = -1) -> tuple[IRHeader, Any]:
    """mx.recordio.unpack_img: (header, array in OpenCV's layout: BGR, gray, or as stored with -1),
    decoded by `deepvision.data.imageio.decode_opencv`'s rules; an image above the pixel limit raises
    `PixelLimitError` before decoding, undecodable data `DecodeError`."""
    from deepvision.data.imageio import decode_opencv

    header, body = unpack_header(record)
    return header, decode_opencv(body, iscolor)


__all__ = [
    "HEADER_SIZE", "MAGIC", "IRHeader", "IndexMismatchError", "MXIndexedRecordIO", "MXRecordIO", "RecordError",
    "RecordFile", "RecordReader", "RecordWriter", "frame_record", "idx_path_for", "pack", "pack_header", "pack_img",
    "read_index", "read_record_at", "rebuild_index", "scan_index", "scan_records", "unpack", "unpack_header",
    "unpack_img", "write_index",
]
