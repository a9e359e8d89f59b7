"""Opening images safely, with one rule for every decoder (Pillow, OpenCV, libjpeg-turbo).

- One pixel limit: an image whose header announces more than `max_image_pixels()` pixels is refused
  before anything is decoded (a decompression bomb: a 30000x30000 JPEG is 10 MB on disk and 2.7 GB
  decoded). The default is Pillow's own decompression-bomb limit, 178,956,970 pixels; change it with
  the DEEPVISION_MAX_IMAGE_PIXELS environment variable, `set_max_image_pixels()` or
  `deepvision im2rec --max-pixels`. The refusal names the size and the limit.
- Regular files only: FIFOs, devices and directories named like images are refused instead of
  blocking forever (see `deepvision.fileio.read_regular_file`).
- One alpha rule: transparency (RGBA, LA, palette or colour-key transparency) is composited on white,
  16-bit images are scaled to 8 bits, whatever path decodes the image.

This module needs Pillow and NumPy only (no torch, no OpenCV), so worker processes stay light.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from deepvision.errors import UserError
from deepvision.fileio import atomic_write_bytes, read_regular_file

PILLOW_BOMB_LIMIT = 2 * 89_478_485  # Pillow raises DecompressionBombError above this many pixels
ENV_MAX_PIXELS = "DEEPVISION_MAX_IMAGE_PIXELS"
_max_pixels: int | None = None  # set_max_image_pixels() override


class DecodeError(ValueError):
    """The bytes are not a decodable image (reason in the message)."""


class PixelLimitError(DecodeError):
    """The image is larger than the pixel limit (a possible decompression bomb)."""


def max_image_pixels() -> int:
    """The pixel limit in force: set_max_image_pixels(), else $DEEPVISION_MAX_IMAGE_PIXELS, else Pillow's."""
    if _max_pixels is not None:
        return _max_pixels
    text = os.environ.get(ENV_MAX_PIXELS, "").strip()
    if not text:
        return PILLOW_BOMB_LIMIT
    try:
        value = int(float(text))
    except (ValueError, OverflowError):
        value = 0
    if value < 1:
        raise UserError(f"{ENV_MAX_PIXELS} must be a positive number of pixels, got {text!r}")
    return value


def set_max_image_pixels(limit: int | None) -> None:
    """Set the pixel limit for this process and the workers it forks (None: back to the default)."""
    global _max_pixels
    if limit is not None and (isinstance(limit, bool) or int(limit) < 1):
        raise UserError(f"the pixel limit must be a positive number of pixels, got {limit}")
    _max_pixels = None if limit is None else int(limit)
    _sync_pillow()


def _sync_pillow() -> None:
    # Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that; our own check refuses at the limit
    Image.MAX_IMAGE_PIXELS = max_image_pixels()


def check_pixels(width: int, height: int) -> None:
    """Raise PixelLimitError when width x height exceeds the pixel limit."""
    limit = max_image_pixels()
    if width * height > limit:
        raise PixelLimitError(f"image of {width}x{height} = {width * height:,} pixels is above the pixel limit of "
                              f"{limit:,} (a possible decompression bomb; if it is genuine, raise the limit with "
                              f"{ENV_MAX_PIXELS} or im2rec --max-pixels)")


def jpeg_dimensions(data: bytes | memoryview) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame marker, or None when there is none before the scan."""
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
            if pos + 9 > n:
                return None
            height, width = struct.unpack_from(">HH", data, pos + 5)
            return width, height
        pos += 2 + length
    return None


def _pil_open(data: bytes) -> Image.Image:
    """Image.open (header only) with the pixel limit applied; raises PixelLimitError or Pillow's errors."""
    _sync_pillow()  # the limit may have changed (environment) since the last image
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            limit = max_image_pixels()
            raise PixelLimitError(f"image of more than {2 * limit:,} pixels is above the pixel limit of {limit:,} "
                                  f"(a possible decompression bomb; if it is genuine, raise the limit with "
                                  f"{ENV_MAX_PIXELS} or im2rec --max-pixels)") from None
    check_pixels(*img.size)
    return img


def check_image_data(data: bytes | memoryview) -> None:
    """Refuse encoded image bytes whose header announces more pixels than the limit (raises
    PixelLimitError). Reads JPEG and PNG headers directly, other formats through Pillow's header
    parser; data no parser recognises is left to the decoder to reject."""
    if not isinstance(data, (bytes, bytearray, memoryview)):  # e.g. a uint8 NumPy buffer
        data = memoryview(np.ascontiguousarray(data, dtype=np.uint8)).cast("B")
    if data[:3] == b"\xff\xd8\xff":
        size = jpeg_dimensions(data)
    elif data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        size = struct.unpack_from(">II", data, 16)
    else:
        try:
            _pil_open(bytes(data)).close()
        except PixelLimitError:
            raise
        except Exception:  # not an image Pillow knows: the decoder reports it
            pass
        return
    if size is not None:
        check_pixels(*size)


def decode_bytes(data: bytes | memoryview, channels: int) -> Image.Image:
    """Encoded bytes -> decoded PIL image in mode L (channels 1) or RGB, by the rules of this module.

    Raises PixelLimitError before decoding an image above the limit, DecodeError for data that is
    not a decodable image.
    """
    data = bytes(data)
    if not data:
        raise DecodeError("empty image data (0 bytes)")
    try:
        img = _pil_open(data)  # reads the header only, and refuses an image above the pixel limit
        img.load()
        return to_mode(ImageOps.exif_transpose(img), channels)
    except PixelLimitError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        fmt = _format_name(data)
        if isinstance(exc, UnidentifiedImageError) or fmt is None:
            raise DecodeError("not a recognised image format") from None
        raise DecodeError(f"corrupt or truncated {fmt} data ({exc})") from None


def _format_name(data: bytes) -> str | None:
    head = data[:12]
    for prefix, name in ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF8", "GIF"),
                         (b"BM", "BMP"), (b"II*\0", "TIFF"), (b"MM\0*", "TIFF")):
        if head.startswith(prefix):
            return name
    return "WEBP" if head[:4] == b"RIFF" and head[8:12] == b"WEBP" else None


def decode_to_array(data: bytes | memoryview, channels: int) -> np.ndarray:
    """Encoded bytes -> uint8 H x W x C (RGB, or C = 1 gray) by the rules above; raises DecodeError."""
    arr = np.asarray(decode_bytes(data, channels))
    return arr[:, :, None] if arr.ndim == 2 else arr


def open_image(source: str | Path | bytes | memoryview | Image.Image, channels: int) -> Image.Image:
    """Open and fully decode an image, honouring EXIF orientation, converted to L (1) or RGB (3).

    Files must be regular files and headers within the pixel limit (checked before decoding).
    Palette/alpha images are composited on white; CMYK and 16-bit images are converted correctly.
    Problems raise UserError naming the file.
    """
    if isinstance(source, Image.Image):
        source.load()
        return to_mode(ImageOps.exif_transpose(source), channels)
    name = "image"
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
        else:
            name = str(source)
            if not os.path.lexists(source):
                raise UserError(f"image not found: {source}")
            data = read_regular_file(source)
        return decode_bytes(data, channels)
    except PixelLimitError as exc:
        raise UserError(f"cannot read {name}: {exc}") from None
    except DecodeError as exc:
        raise UserError(f"cannot read {name} as an image ({exc}); give a JPEG, PNG, BMP, GIF, TIFF or WebP file"
                        ) from None
    except OSError as exc:
        raise UserError(f"cannot read {name}: {exc.strerror or exc}") from None


def read_bgr(path: str | Path) -> np.ndarray:
    """An image file as OpenCV's uint8 H x W x 3 BGR array, decoded by `open_image`'s rules (regular files,
    the pixel limit, EXIF orientation, CMYK/16-bit/alpha conversions), for code that works in OpenCV."""
    return np.ascontiguousarray(np.asarray(open_image(path, 3))[:, :, ::-1])


def write_image(path: str | Path, bgr: np.ndarray) -> None:
    """Encode an OpenCV BGR (or gray) array in the format of `path`'s suffix and write it atomically (a
    temporary file, then rename: never half a picture under the final name)."""
    import cv2

    suffix = Path(path).suffix or ".png"
    try:
        ok, buf = cv2.imencode(suffix, bgr)
    except cv2.error:  # a suffix OpenCV has no encoder for
        ok = False
    if not ok:
        raise UserError(f"could not encode {path} as {suffix}")
    atomic_write_bytes(path, buf.tobytes())


def to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Convert any PIL mode to 'L' or 'RGB' (alpha composited on white, 16-bit scaled to 8-bit)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        # 16-bit modes span 0..65535 whatever the content; mode I (32-bit) is read as 16-bit when it exceeds 255
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr * (255.0 / peak), 0, 255).round().astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode in ("RGB", "L") and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    want = "L" if channels == 1 else "RGB"
    return img if img.mode == want else img.convert(want)

