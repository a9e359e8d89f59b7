"""Image decoding and encoding for record files: fast paths for JPEG, careful paths for everything else.

Record images decode with libjpeg-turbo through `simplejpeg` when it is installed (straight to RGB or
gray, into a reusable buffer, strict about truncated data), else through OpenCV. EXIF orientation is
honoured on both paths. Files being packed decode like MXNet's im2rec (OpenCV, BGR) when they are
plain JPEGs. Every other format (PNG with alpha or a palette, 16-bit, GIF, TIFF, WebP...), whether
packed or read back from a record, goes through `imageio.decode_bytes`, the decoder `predict` uses:
transparency composited on white, 16-bit values scaled. Every path checks the image header against
the one pixel limit (`imageio.max_image_pixels`) before decoding.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np

from deepvision.data.imageio import DecodeError, PixelLimitError, check_image_data, check_pixels, decode_to_array

try:  # optional: libjpeg-turbo with output buffers and strict error checking
    import simplejpeg
except ImportError:  # pragma: no cover - exercised when the package is absent
    simplejpeg = None

DECODERS = ("auto", "simplejpeg", "cv2")
JPEG_SOI = b"\xff\xd8\xff"
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)


@contextlib.contextmanager
def forking_cv2() -> Iterator[None]:
    """Make OpenCV single-threaded while worker processes are forked, then restore it.

    A process forked while OpenCV's thread pool is running inherits the pool's locks but not its
    threads, and hangs at its first parallel OpenCV call; with one thread, the children run OpenCV
    inline. The parent gets its thread count back once the workers exist.
    """
    n = cv2.getNumThreads()
    if n != 1:
        cv2.setNumThreads(1)
    try:
        yield
    finally:
        if n != 1:
            cv2.setNumThreads(n)


__all__ = ["DECODERS", "DecodeError", "Decoder", "PixelLimitError", "apply_orientation", "decode_image",
           "encode_image", "forking_cv2", "is_jpeg", "jpeg_orientation", "jpeg_truncated", "load_for_packing",
           "plain_png_channels", "sniff_format"]


def is_jpeg(data: Any) -> bool:
    return bytes(data[:3]) == JPEG_SOI


def sniff_format(data: bytes | memoryview) -> str | None:
    """'jpeg', 'png', 'gif', 'bmp', 'tiff', 'webp' from the leading bytes, or None."""
    head = bytes(data[:12])
    if head.startswith(JPEG_SOI):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head.startswith(b"BM"):
        return "bmp"
    if head[:4] in (b"II*\0", b"MM\0*"):
        return "tiff"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


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
            tag, typ, _, value = struct.unpack_from(endian + "HHI4s", tiff, ifd + 2 + 12 * k)
            if tag == 0x0112:
                (v,) = struct.unpack_from(endian + "H", value, 0)
                return v if 1 <= v <= 8 else 1
    except struct.error:
        pass
    return 1


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip an H x W (x C) array as EXIF orientation `orientation` prescribes (PIL's exif_transpose)."""
    if orientation == 2:
        img = img[:, ::-1]
    elif orientation == 3:
        img = img[::-1, ::-1]
    elif orientation == 4:
        img = img[::-1]
    elif orientation == 5:
        img = img.swapaxes(0, 1)
    elif orientation == 6:
        img = np.rot90(img, -1)
    elif orientation == 7:
        img = np.rot90(img, 2).swapaxes(0, 1)
    elif orientation == 8:
        img = np.rot90(img, 1)
    else:
        return img
    return np.ascontiguousarray(img)


class Decoder:
    """Encoded image bytes -> uint8 H x W x C array (RGB, or C = 1 gray), reusing an output buffer.

    `kind`: 'simplejpeg' (libjpeg-turbo, needs the package), 'cv2', or 'auto' (simplejpeg when
    installed). Non-JPEG data, and JPEGs strict libjpeg-turbo rejects for a mere warning, go through OpenCV.
    The returned array may be a view of the decoder's buffer, valid until the next call.
    """

    def __init__(self, channels: int = 3, kind: str = "auto") -> None:
        if kind not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {kind!r}")
        if kind == "simplejpeg" and simplejpeg is None:
            raise ImportError("decoder='simplejpeg' needs the simplejpeg package (pip install simplejpeg)")
        self.channels = channels
        self.kind = "simplejpeg" if kind == "auto" and simplejpeg is not None else ("cv2" if kind == "auto" else kind)
        self._buffer = np.empty(1 << 20, np.uint8)

    def __call__(self, data: bytes | memoryview | np.ndarray) -> np.ndarray:
        if len(data) == 0:
            raise DecodeError("empty image data (0 bytes)")
        if not is_jpeg(data):
            stored = plain_png_channels(data)
            if stored is not None and (stored == 1 or self.channels == 3):
                # 8-bit gray/RGB without transparency: OpenCV gives Pillow's pixels, much faster on small images
                check_image_data(data)
                return self._cv2(data)
            # alpha, palette, 16-bit, RGB read as gray, GIF, WebP...: the decoder `predict` uses
            return decode_to_array(data, 1 if self.channels == 1 else 3)
        if self.kind != "simplejpeg":
            check_image_data(data)
            if jpeg_truncated(data):
                raise DecodeError("truncated JPEG data (no end-of-image marker)")
            return self._cv2(data)  # OpenCV applies the EXIF orientation itself
        try:
            img = self._simplejpeg(data)
        except PixelLimitError:
            raise
        except DecodeError:
            # strict libjpeg-turbo also rejects warnings OpenCV decodes through (extraneous bytes, odd
            # markers); only data that is cut off, or that OpenCV cannot decode either, is corrupt
            if jpeg_truncated(data):
                raise DecodeError("truncated JPEG data (no end-of-image marker)") from None
            return self._cv2(data)
        orientation = jpeg_orientation(data)
        return img if orientation == 1 else apply_orientation(img, orientation)

    def _simplejpeg(self, data: Any) -> np.ndarray:
        try:
            h, w, _, _ = simplejpeg.decode_jpeg_header(data)
        except ValueError as exc:
            raise DecodeError(f"not a decodable JPEG ({exc})") from None
        check_pixels(w, h)
        need = h * w * (1 if self.channels == 1 else 3)
        if need > self._buffer.size:
            self._buffer = np.empty(int(need * 1.25), np.uint8)
        try:
            img = simplejpeg.decode_jpeg(data, "GRAY" if self.channels == 1 else "RGB", buffer=self._buffer,
                                         strict=True)
        except ValueError as exc:
            raise DecodeError(f"corrupt JPEG data ({exc})") from None
        return img if img.ndim == 3 else img[:, :, None]

    def _cv2(self, data: Any) -> np.ndarray:
        arr = np.frombuffer(data, np.uint8)
        if self.channels == 1:
            img = cv2.imdecode(arr, cv2.IMREAD_GRAYSCALE)
        elif _IMREAD_RGB is not None:
            img = cv2.imdecode(arr, _IMREAD_RGB)
        else:  # pragma: no cover - OpenCV < 4.10
            img = cv2.imdecode(arr, cv2.IMREAD_COLOR)
            if img is not None:
                img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        if img is None:
            fmt = sniff_format(data)
            raise DecodeError("not a recognised image format" if fmt is None else f"corrupt {fmt.upper()} data")
        return img if img.ndim == 3 else img[:, :, None]


def decode_image(data: bytes | memoryview, channels: int = 3, decoder: str = "auto") -> np.ndarray:
    """Decode encoded image bytes to a fresh uint8 H x W x C RGB (or gray) array."""
    return np.array(Decoder(channels, decoder)(data), copy=True)


def encode_image(img: np.ndarray, encoding: str = ".jpg", quality: int = 95) -> bytes:
    """Encode an OpenCV-ordered (BGR or gray) array as JPEG (quality 1-100) or PNG (compression 0-9)."""
    encoding = encoding.lower()
    if encoding in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif encoding == ".png":  # im2rec passes --quality (default 95) straight through; OpenCV clamps it to 9
        params = [cv2.IMWRITE_PNG_COMPRESSION, max(0, min(9, int(quality)))]
    else:
        raise ValueError(f"encoding must be .jpg or .png, got {encoding!r}")
    ok, buf = cv2.imencode(encoding, img, params)
    if not ok:
        raise DecodeError(f"OpenCV could not encode a {img.shape} {img.dtype} image as {encoding}")
    return buf.tobytes()


def load_for_packing(data: bytes, color: int = 1) -> np.ndarray:
    """Decode a source file's bytes the way im2rec does (OpenCV order: BGR, gray or BGRA).

    color 1: 3-channel; 0: grayscale; -1: unchanged (alpha kept, as MXNet's `cv2.imread(path, -1)`).
    Plain JPEGs use OpenCV (EXIF orientation applied). Other formats go through Pillow so that
    palette and alpha images are composited on white and 16-bit images are scaled, not clipped.
    Raises DecodeError with the reason for empty, truncated or unreadable data, PixelLimitError
    (before decoding) for an image above the pixel limit.
    """
    if len(data) == 0:
        raise DecodeError("empty file (0 bytes)")
    check_image_data(data)
    fmt = sniff_format(data)
    if fmt == "jpeg" and jpeg_truncated(data):
        raise DecodeError("truncated JPEG (no end-of-image marker)")
    arr = np.frombuffer(data, np.uint8)
    if color == -1:
        img = cv2.imdecode(arr, cv2.IMREAD_UNCHANGED)
        if img is None:
            raise DecodeError("not a recognised image format" if fmt is None else f"corrupt {fmt.upper()} data")
        return apply_orientation(img, jpeg_orientation(data)) if fmt == "jpeg" else img  # UNCHANGED skips EXIF
    if fmt == "jpeg":
        img = cv2.imdecode(arr, cv2.IMREAD_GRAYSCALE if color == 0 else cv2.IMREAD_COLOR)
        if img is None:
            raise DecodeError("corrupt JPEG data")
        return img
    return _pil_load(data, color, fmt)


def _pil_load(data: bytes, color: int, fmt: str | None) -> np.ndarray:
    arr = decode_to_array(data, 1 if color == 0 else 3)
    return arr[:, :, 0] if arr.shape[2] == 1 else cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
