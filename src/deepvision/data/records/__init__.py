"""MXNet-compatible record files as training reads them: RecordIO framing, image headers, .idx files.

    from deepvision.data.records import RecordReader, RecordFile, unpack_header, unpack_img

`pack`/`unpack`/`unpack_img` mirror `mxnet.recordio` for code being ported. Writing record files
(`RecordWriter`, `pack_img`, `MXRecordIO`, `rebuild_index`) is `deepvision.datasets.records`.
"""

from __future__ import annotations

from typing import Any

from deepvision.data.records.header import HEADER_SIZE, IRHeader, pack, pack_header, unpack, unpack_header
from deepvision.data.records.record_file import RecordFile
from deepvision.data.records.recordio import (
    MAGIC,
    IndexMismatchError,
    RecordError,
    RecordReader,
    idx_path_for,
    read_index,
    read_record_at,
    scan_index,
    scan_records,
)


def unpack_img(record: bytes, iscolor: int = -1) -> tuple[IRHeader, Any]:
    """mx.recordio.unpack_img: (header, array in OpenCV's layout: BGR, gray, or as stored with -1), decoded by
    `imageio.decode_opencv`'s rules (`PixelLimitError` before decoding above the limit, else `DecodeError`)."""
    from deepvision.data.imageio import decode_opencv

    header, body = unpack_header(record)
    return header, decode_opencv(body, iscolor)


__all__ = ["HEADER_SIZE", "MAGIC", "IRHeader", "IndexMismatchError", "RecordError", "RecordFile", "RecordReader",
           "idx_path_for", "pack", "pack_header", "read_index", "read_record_at", "scan_index", "scan_records",
           "unpack", "unpack_header", "unpack_img"]
