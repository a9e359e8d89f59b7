"""What the leading bytes of an untrusted image say, read before any decoder sees them: the format, a JPEG's
frame size, components and EXIF orientation, whether it is cut off, whether a PNG is plain 8-bit gray/RGB or
damaged (a chunk checksum, a cut chunk, no IEND). Pure byte parsing; the rules that use them (pixel limit,
format allowlist, conversions) are in `deepvision.data.imageio`."""

from __future__ import annotations

import struct
import zlib
from typing import Any

from deepvision.safeload.text import printable

JPEG_SOI = b"\xff\xd8\xff"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_MAX_SIDE = 1_000_000  # libpng's default user limit on a PNG's width and height (OpenCV decodes PNGs with it)


def is_jpeg(data: Any) -> bool:
    return bytes(data[:3]) == JPEG_SOI


def sniff_format(data: bytes | memoryview) -> str | None:
    """'jpeg', 'png', 'gif', 'bmp', 'tiff', 'webp' from the leading bytes, or None."""
    head = bytes(data[:12])
    for prefix, name in ((JPEG_SOI, "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF87a", "gif"),
                         (b"GIF89a", "gif"), (b"BM", "bmp"), (b"II*\0", "tiff"), (b"MM\0*", "tiff")):
        if head.startswith(prefix):
            return name
    return "webp" if head[:4] == b"RIFF" and head[8:12] == b"WEBP" else None


def png_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk, or None when `data` does not start like a PNG."""
    head = bytes(data[:24])
    if len(head) < 24 or not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack_from(">II", head, 16)
    return width, height


def jpeg_frame(data: bytes | memoryview) -> tuple[int, int, int] | None:
    """(width, height, components) from a JPEG's start-of-frame marker (components 4: CMYK or YCCK),
    or None when there is no frame header before the scan."""
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker == 0xDA:  # start of scan: no frame header before it
            return None
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 10 > n:
                return None
            height, width, components = struct.unpack_from(">HHB", data, pos + 5)
            return width, height, components
        pos += 2 + length
    return None


def jpeg_truncated(data: bytes | memoryview) -> bool:
    """True when a JPEG lacks the end-of-image marker after its last scan (a cut-off file)."""
    if bytes(data[-2:]) == b"\xff\xd9":
        return False
    raw = bytes(data)
    sos = raw.rfind(b"\xff\xda")
    return sos == -1 or raw.rfind(b"\xff\xd9") < sos


def jpeg_orientation(data: bytes | memoryview) -> int:
    """The EXIF orientation (1-8) of a JPEG, 1 when absent. Reads only the segments before the frame."""
    pos, n = 2, len(data)
    for _ in range(32):
        if pos + 4 > n:
            return 1
        marker, length = struct.unpack_from(">HH", data, pos)
        if marker >> 8 != 0xFF:
            return 1
        if marker == 0xFFE1 and bytes(data[pos + 4 : pos + 10]) == b"Exif\0\0":
            return _exif_orientation(bytes(data[pos + 10 : pos + 2 + length]))
        if marker == 0xFFDA or (0xFFC0 <= marker <= 0xFFCF and marker not in (0xFFC4, 0xFFC8, 0xFFCC)):
            return 1  # start of frame or scan: no EXIF before it
        pos += 2 + length
    return 1


def _exif_orientation(tiff: bytes) -> int:
    try:
        endian = "<" if tiff[:2] == b"II" else ">"
        (ifd,) = struct.unpack_from(endian + "I", tiff, 4)
        (count,) = struct.unpack_from(endian + "H", tiff, ifd)
        for k in range(count):
            tag, _, _, value = struct.unpack_from(endian + "HHI4s", tiff, ifd + 2 + 12 * k)
            if tag == 0x0112:
                (v,) = struct.unpack_from(endian + "H", value, 0)
                return v if 1 <= v <= 8 else 1
    except struct.error:
        pass
    return 1


def plain_png_channels(data: bytes | memoryview) -> int | None:
    """1 or 3 for an 8-bit grayscale or RGB PNG without transparency or EXIF (chunks before the image
    data), which every decoder turns into the same pixels; None for anything else."""
    head = bytes(data[:33])
    if not head.startswith(b"\x89PNG\r\n\x1a\n") or head[12:16] != b"IHDR" or head[24] != 8 or head[25] not in (0, 2):
        return None
    pos, n = 33, len(data)
    for _ in range(64):
        if pos + 8 > n:
            return None
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"IDAT":
            return 1 if head[25] == 0 else 3
        if kind in (b"tRNS", b"eXIf"):
            return None
        pos += 12 + length
    return None


def png_damage(data: bytes | memoryview) -> str | None:
    """Why the PNG `data` is damaged (a chunk whose checksum does not match, a chunk cut off, no IEND
    chunk), or None. Checked before libpng sees the data: libpng prints its own error on standard error
    ("libpng error: IDAT: CRC error") before OpenCV returns. Bytes after IEND are ignored, as by libpng."""
    view = memoryview(data).cast("B") if not isinstance(data, memoryview) else data.cast("B")
    pos, n = 8, len(view)
    while pos + 12 <= n:
        length, kind = struct.unpack_from(">I4s", view, pos)
        name = kind.decode("latin-1")
        if pos + 12 + length > n:
            return f"truncated PNG data (chunk {printable(name)} cut off)"
        (stored,) = struct.unpack_from(">I", view, pos + 8 + length)
        if zlib.crc32(view[pos + 4 : pos + 8 + length]) != stored:
            return f"corrupt PNG data (checksum error in chunk {printable(name)})"
        if kind == b"IEND":
            return None
        pos += 12 + length
    return "truncated PNG data (no IEND chunk)"
