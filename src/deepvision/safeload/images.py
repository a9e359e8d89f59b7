"""What the bytes of an untrusted image say, read before any decoder sees them: the format, a JPEG's frame
size, components and EXIF orientation, whether it is cut off, whether a PNG is plain 8-bit gray/RGB or
damaged (a chunk checksum, a cut chunk, no IEND, a broken compressed image stream). Byte parsing and zlib
only; the rules that use them (pixel limit, format allowlist, conversions) are in `deepvision.data.imageio`."""

from __future__ import annotations

import struct
import zlib
from typing import Any

from deepvision.errors import UserError
from deepvision.safeload.files import env_number
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


PNG_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt", b"iCCP")  # text and colour profile: no decoder here uses them


def png_without_text(data: bytes | memoryview) -> bytes | memoryview:
    """`data` without its text and colour-profile chunks (`PNG_TEXT_CHUNKS`), `data` itself when it has
    none. No decoder here turns them into pixels, but libpng inflates them and prints its own warnings on
    standard error for a damaged or oversized one ("libpng warning: zTXt: truncated", "iCCP: profile 'p':
    0h: too short"). Only chunk headers are read; the chunks are checked by `png_check` first."""
    view = memoryview(data).cast("B") if not isinstance(data, memoryview) else data.cast("B")
    kept, pos, n, dropped = [view[:8]], 8, len(view), False
    while pos + 12 <= n:
        length, kind = struct.unpack_from(">I4s", view, pos)
        end = pos + 12 + length
        if kind in PNG_TEXT_CHUNKS:
            dropped = True
        else:
            kept.append(view[pos:end])
        if kind == b"IEND":
            break
        pos = end
    return b"".join(kept) if dropped else data


def png_damage(data: bytes | memoryview) -> str | None:
    """Why the PNG `data` is damaged (a chunk whose checksum does not match, a chunk cut off, no IEND
    chunk, a broken or short compressed image stream, a bad row filter), or None. Checked before libpng
    sees the data: libpng prints its own error on standard error ("libpng error: IDAT: CRC error") before
    OpenCV returns. Bytes after IEND are ignored, as by libpng."""
    return png_check(data)[0]


def png_check(data: bytes | memoryview) -> tuple[str | None, bool]:
    """(`png_damage`'s reason or None, whether the image data holds more than its rows need). Such a PNG
    decodes, but libpng prints a warning on standard error ("IDAT: Too much image data", "IDAT: Extra
    compressed data"): decoders send it to Pillow, which decodes it silently."""
    view = memoryview(data).cast("B") if not isinstance(data, memoryview) else data.cast("B")
    pos, n = 8, len(view)
    header, idat = None, []
    while pos + 12 <= n:
        length, kind = struct.unpack_from(">I4s", view, pos)
        name = kind.decode("latin-1")
        if pos + 12 + length > n:
            return f"truncated PNG data (chunk {printable(name)} cut off)", False
        (stored,) = struct.unpack_from(">I", view, pos + 8 + length)
        if zlib.crc32(view[pos + 4 : pos + 8 + length]) != stored:
            return f"corrupt PNG data (checksum error in chunk {printable(name)})", False
        if kind == b"IHDR" and length == 13 and header is None:
            header = struct.unpack_from(">IIBBBBB", view, pos + 8)
        elif kind == b"IDAT":
            idat.append(view[pos + 8 : pos + 8 + length])
        elif kind == b"IEND":
            return _png_stream_damage(header, idat)
        pos += 12 + length
    return "truncated PNG data (no IEND chunk)", False


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_INFLATE_STEP = 1 << 20  # decompressed bytes held at once: the output is checked, then dropped


_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}  # the PNG standard's


def _ihdr_problem(header: tuple[int, ...]) -> str | None:
    """What libpng refuses in an IHDR (it prints "libpng error: Invalid IHDR data" first), or None."""
    width, height, bits, colour, compression, filtering, interlace = header
    if not width or not height or max(width, height) >= 2**31:
        return f"a size of {width}x{height}"
    if bits not in _PNG_DEPTHS.get(colour, ()):
        return f"colour type {colour} at {bits} bits"
    if compression or filtering or interlace > 1:
        return f"compression {compression}, filter {filtering}, interlace {interlace}"
    return None


def _png_rows(header: tuple[int, ...]) -> list[tuple[int, int, int]] | None:
    """(offset, rows, stride) of each pass of filtered rows in the decompressed image data (one pass,
    or Adam7's seven), each row a filter byte then its packed samples; None for a header libpng refuses
    itself."""
    width, height, bits, colour, _, _, interlace = header
    if colour not in _PNG_CHANNELS or bits not in (1, 2, 4, 8, 16) or interlace > 1 or not width or not height:
        return None
    bits_per_pixel = _PNG_CHANNELS[colour] * bits
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    rows, offset = [], 0
    for x0, y0, dx, dy in passes:
        pass_width, pass_height = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if pass_width > 0 and pass_height > 0:
            stride = 1 + -(-pass_width * bits_per_pixel // 8)
            rows.append((offset, pass_height, stride))
            offset += pass_height * stride
    return rows


def _png_stream_damage(header: tuple[int, ...] | None, idat: list[memoryview]) -> tuple[str | None, bool]:
    """(Why the compressed image data of a PNG is damaged or None, whether it holds more than the rows
    need). The zlib stream across the IDAT chunks is inflated in steps of _INFLATE_STEP bytes (checked,
    then dropped; never much more than the header's size inflated), each row's filter byte checked:
    libpng prints "libpng error: IDAT: invalid distance too far back", "incorrect data check", "Not
    enough image data" or "bad adaptive filter value" on standard error for these."""
    problem = _ihdr_problem(header) if header is not None else None
    if problem:
        return f"corrupt PNG data (its header declares {problem})", False
    rows = _png_rows(header) if header is not None else None
    if rows is None:
        return None, False
    offset, count, stride = rows[-1]
    expected = offset + count * stride
    if not idat:
        return "truncated PNG data (no image data)", False
    inflater, done = zlib.decompressobj(), 0
    try:
        for chunk in [*idat, None]:
            pending: bytes | memoryview | None = chunk
            if inflater.eof and pending:
                return None, True  # compressed data after the end of the stream
            while pending is None or pending and not inflater.eof:
                # None: the input is all given; flush what a step left inside zlib (part of a match)
                out = inflater.flush() if pending is None else inflater.decompress(pending, _INFLATE_STEP)
                pending = b"" if pending is None else inflater.unconsumed_tail
                if _bad_filter(out, done, rows):
                    return "corrupt PNG data (a bad row filter in the image data)", False
                done += len(out)
                if done > expected:
                    return None, True  # more data than the rows need: inflated no further
    except zlib.error as exc:
        reason = str(exc).split(": ", 1)[-1]
        return f"corrupt PNG data (compressed image data: {printable(reason)})", False
    if done < expected or not inflater.eof:
        return "truncated PNG data (the compressed image data ends early)", False
    return None, bool(inflater.unused_data)


def _bad_filter(out: bytes, start: int, rows: list[tuple[int, int, int]]) -> bool:
    """Whether a row of `rows` that starts inside `out` (the decompressed bytes from `start` on) has a
    filter byte other than 0-4."""
    end = start + len(out)
    for offset, count, stride in rows:
        last = offset + count * stride
        if last <= start or offset >= end:
            continue
        first, stop = offset + max(0, -(-(start - offset) // stride)) * stride, min(last, end)
        if first < stop and max(out[first - start : stop - start : stride]) > 4:
            return True
    return False


PILLOW_BOMB_LIMIT = 2 * 89_478_485  # Pillow raises DecompressionBombError above this many pixels
ENV_MAX_PIXELS = "DEEPVISION_MAX_IMAGE_PIXELS"
_max_pixels: int | None = None  # set_max_image_pixels() override


def max_image_pixels() -> int:
    """The pixel limit in force: set_max_image_pixels(), else $DEEPVISION_MAX_IMAGE_PIXELS, else Pillow's."""
    if _max_pixels is not None:
        return _max_pixels
    value = env_number(ENV_MAX_PIXELS, "whole number of pixels", 1, 2**62, whole=True)
    return PILLOW_BOMB_LIMIT if value is None else int(value)


def set_max_image_pixels(limit: int | None) -> None:
    """Set the pixel limit for this process and the workers it forks (None: back to the default)."""
    global _max_pixels
    if limit is not None and (isinstance(limit, bool) or int(limit) < 1):
        raise UserError(f"the pixel limit must be a positive number of pixels, got {limit}")
    _max_pixels = None if limit is None else int(limit)
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = max_image_pixels()  # Pillow's own bomb check follows (decoders sync it too)


# the most bytes a pixel takes in an allowed format stored uncompressed (16-bit RGBA TIFF), and room
# for what sits beside the pixels (EXIF, ICC profiles, XMP, thumbnails)
MAX_BYTES_PER_PIXEL = 8
IMAGE_METADATA_ROOM = 64 * 2**20


def max_image_file_bytes(limit: int | None = None) -> int:
    """The largest image file read: what the pixel limit (`limit`, default the limit in force) can take
    stored uncompressed at 16-bit RGBA, plus room for metadata. A larger file is not an image within the
    limit, whatever its header says (a valid PNG followed by gigabytes of padding)."""
    limit = max_image_pixels() if limit is None else limit
    return limit * MAX_BYTES_PER_PIXEL + IMAGE_METADATA_ROOM
