"""The one image decoder: every image deepvision reads (training, evaluation, predict, serve, apps, packing) is decoded
here, by one set of rules.

- One pixel limit: an image whose header announces more than `max_image_pixels()` pixels is refused before anything
  is decoded (a decompression bomb: a 30000x30000 JPEG is 10 MB on disk and 2.7 GB decoded). The default is Pillow's
  own decompression-bomb limit, 178,956,970 pixels; change it with the DEEPVISION_MAX_IMAGE_PIXELS environment
  variable, `set_max_image_pixels()` or `deepvision im2rec --max-pixels` (`deepvision serve --max-megapixels` sets
  its own, per upload). The refusal names the size and the limit.
- Regular files only: FIFOs, devices and directories named like images are refused (`fileio.read_regular_file`).
- Six formats only: JPEG, PNG, BMP, GIF, TIFF and WebP. Pillow's other plugins (EPS hands the file to Ghostscript,
  where installed) are never tried.
- One set of conversions, whatever the path: EXIF orientation applied; transparency (RGBA, LA, palette or
  colour-key) composited on white; 16-bit images scaled to 8 bits; CMYK and palette images converted to RGB; colour
  read as gray by libjpeg (JPEG) or ITU-R 601-2 luma (other formats).

`Decoder` is the engine behind every entry point (`decode`, `decode_opencv`, `open_image`, `read_bgr`): JPEGs decode
with libjpeg-turbo through `simplejpeg` when it is installed (into a reused buffer), else OpenCV; plain 8-bit PNGs
through OpenCV; everything else through Pillow. The fast paths give the same pixels as Pillow would where the
conversion rules above are concerned.

Why one module of ~460 lines: the point is one decoder; its pixel limit, format and mode allowlist and conversions
are the rules every entry point must share, and splitting them would invite a second path that skips one. The
byte-level header readers (format, JPEG frame and orientation, PNG damage) are in `deepvision.safeload.images`.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from deepvision.errors import UserError
from deepvision.fileio import open_regular_file
from deepvision.safeload import format_bytes
from deepvision.safeload.images import (  # the pixel limit and its ceilings live there
    ENV_MAX_PIXELS,
    JPEG_SOI,
    PNG_MAX_SIDE,
    PNG_SIGNATURE,
    is_jpeg,
    jpeg_frame,
    jpeg_orientation,
    jpeg_truncated,
    max_image_file_bytes,
    max_image_pixels,
    plain_png_channels,
    png_check,
    png_size,
    png_without_text,
    sniff_format,
)

try:  # optional: libjpeg-turbo with output buffers and strict error checking
    import simplejpeg
except ImportError:  # pragma: no cover - exercised when the package is absent
    simplejpeg = None

ALLOWED_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP")
# Pillow modes `to_mode` converts faithfully; others (LAB, HSV, ...) would come out with wrong colours
READABLE_MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr",
                  "I;16", "I;16B", "I;16L", "I", "F")
# TIFF carries any sample layout (CMYK, 32-bit float or integer, YCbCr, Lab); only plain RGB, greyscale,
# palette and bilevel TIFFs (with alpha, or 16-bit grey) are read, as every other format's common modes
TIFF_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "I;16", "I;16B", "I;16L")
DECODERS = ("auto", "simplejpeg", "cv2")


class DecodeError(ValueError):
    """The bytes are not a decodable image (reason in the message)."""


class NotAnImageError(DecodeError):
    """The bytes are not in a format (or colour mode) deepvision reads, as opposed to a damaged image;
    `mode` names the colour mode when that is the reason."""

    def __init__(self, message: str, mode: str | None = None) -> None:
        super().__init__(message)
        self.mode = mode


class PixelLimitError(DecodeError):
    """The image is larger than the pixel limit (a possible decompression bomb)."""

    def __init__(self, message: str, pixels: int | None = None, limit: int = 0,
                 size: tuple[int, int] | None = None) -> None:
        super().__init__(message)
        self.pixels, self.limit, self.size = pixels, limit, size


class SideLimitError(DecodeError):
    """A PNG side is longer than libpng reads (`safeload.images.PNG_MAX_SIDE`), checked from the header."""


class FileSizeError(PixelLimitError):
    """The file is larger than any image within the pixel limit can be (refused from its size, unread)."""


def _sync_pillow(limit: int | None = None) -> None:
    # Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that; our own check refuses at the limit
    Image.MAX_IMAGE_PIXELS = max(max_image_pixels(), limit or 0)


def _limit_message(pixels_text: str, limit: int) -> str:
    return (f"image of {pixels_text} is above the pixel limit of {limit:,} (a possible decompression bomb; if "
            f"it is genuine, raise the limit with {ENV_MAX_PIXELS} or im2rec --max-pixels)")


def check_pixels(width: int, height: int, limit: int | None = None) -> None:
    """Raise PixelLimitError when width x height exceeds `limit` (default: the pixel limit in force)."""
    limit = max_image_pixels() if limit is None else limit
    if width * height > limit:
        raise PixelLimitError(_limit_message(f"{width}x{height} = {width * height:,} pixels", limit),
                              width * height, limit, (width, height))


def read_image_file(path: str | Path, limit: int | None = None) -> bytes:
    """The bytes of an image file: a regular file (a FIFO or device is refused, never waited on; OSError)
    no larger than `max_image_file_bytes(limit)`, checked from its size before reading (FileSizeError)."""
    with open_regular_file(path) as f:
        size = os.fstat(f.fileno()).st_size
        ceiling = max_image_file_bytes(limit)
        if size > ceiling:
            pixels = max_image_pixels() if limit is None else limit
            raise FileSizeError(f"file of {format_bytes(size)} is larger than an image within the pixel limit "
                                f"of {pixels:,} can be ({format_bytes(ceiling)}); it holds more than an image "
                                f"(if it is genuine, raise the limit with {ENV_MAX_PIXELS})", None, pixels)
        return f.read()


# -- headers (the byte-level readers are in deepvision.safeload.images) ---------------------------
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


def plain_jpeg(data: bytes | memoryview, limit: int | None = None) -> bool:
    """True for a JPEG any JPEG decoder (libjpeg-turbo, OpenCV, nvJPEG) turns into the pixels `Decoder`
    gives: gray or YCbCr (not CMYK, whose conversion to RGB differs between libraries), complete,
    upright (EXIF orientation 1) and within the pixel limit. Raises PixelLimitError for a JPEG above
    the limit; False for anything else, which `Decoder` handles (or refuses)."""
    frame = jpeg_frame(data) if is_jpeg(data) else None
    if frame is None:
        return False
    check_pixels(frame[0], frame[1], limit)
    return frame[2] in (1, 3) and not jpeg_truncated(data) and jpeg_orientation(data) == 1


def check_image_data(data: bytes | memoryview | np.ndarray, limit: int | None = None) -> None:
    """Refuse encoded image bytes whose header announces more pixels than `limit` (default: the limit in
    force) with PixelLimitError, or a PNG side above libpng's `PNG_MAX_SIDE` with SideLimitError. Reads
    JPEG and PNG headers directly, other formats through Pillow's header parser; data no parser recognises
    is left to the decoder to reject."""
    if not isinstance(data, (bytes, bytearray, memoryview)):  # e.g. a uint8 NumPy buffer
        data = memoryview(np.ascontiguousarray(data, dtype=np.uint8)).cast("B")
    if data[:3] == JPEG_SOI:
        frame = jpeg_frame(data)
        size = None if frame is None else frame[:2]
    elif (size := png_size(data)) is not None:
        if max(size) > PNG_MAX_SIDE:  # libpng refuses it, printing its own lines on standard error
            raise SideLimitError(f"a {size[0]:,} x {size[1]:,} PNG; sides above {PNG_MAX_SIDE:,} pixels are not "
                                 f"read (libpng's limit)")
    else:
        try:
            _pil_open(bytes(data), limit).close()
        except PixelLimitError:
            raise
        except Exception:  # not an image Pillow knows: the decoder reports it
            pass
        return
    if size is not None:
        check_pixels(*size, limit)


# -- decoding ----------------------------------------------------------------------------------------
def _pil_open(data: bytes, limit: int | None = None) -> Image.Image:
    """Image.open (header only) of the allowed formats, with the pixel limit applied; raises
    PixelLimitError, NotAnImageError, or Pillow's errors for damaged headers."""
    _sync_pillow(limit)  # the limit may have changed (environment) since the last image
    limit = max_image_pixels() if limit is None else limit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        except Image.DecompressionBombError as exc:
            found = [int(v) for v in re.findall(r"\((\d+) pixels\)", str(exc))]
            pixels = found[0] if found else None
            raise PixelLimitError(_limit_message(f"{pixels:,} pixels" if pixels else "more than "
                                                 f"{2 * limit:,} pixels", limit), pixels, limit) from None
        except UnidentifiedImageError:
            if (fmt := sniff_format(data)) is not None:  # an allowed format with a damaged header: undecodable
                raise DecodeError(f"corrupt or truncated {fmt.upper()} data (its header cannot be read)") from None
            raise NotAnImageError("not a recognised image format") from None
    check_pixels(*img.size, limit)
    if img.mode not in READABLE_MODES or (img.format == "TIFF" and img.mode not in TIFF_MODES):
        raise NotAnImageError(f"this {img.format} holds {img.mode} colour, which deepvision does not read; "
                              f"give an RGB or greyscale image", img.mode)
    return img


def _pil_decode(data: bytes, channels: int, limit: int | None = None) -> np.ndarray:
    """Pillow's decode of anything but plain JPEGs and PNGs: uint8 H x W x C (RGB, or C = 1 gray)."""
    try:
        img = _pil_open(data, limit)  # reads the header only, and refuses an image above the pixel limit
        img.load()
        arr = np.asarray(to_mode(ImageOps.exif_transpose(img), channels))
    except DecodeError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        fmt = sniff_format(data)
        if fmt is None:
            raise NotAnImageError("not a recognised image format") from None
        raise DecodeError(f"corrupt or truncated {fmt.upper()} data ({exc})") from None
    return arr[:, :, None] if arr.ndim == 2 else arr


def _cv2() -> Any:
    import cv2  # imported on first use: worker processes that never decode with OpenCV stay light

    return cv2


class Decoder:
    """Encoded image bytes -> uint8 H x W x C array (RGB, or C = 1 gray), by this module's rules.

    `kind`: 'simplejpeg' (libjpeg-turbo, needs the package), 'cv2', or 'auto' (simplejpeg when
    installed). Non-JPEG data, and JPEGs strict libjpeg-turbo rejects for a mere warning, go through
    OpenCV or Pillow. `max_pixels` overrides the pixel limit in force. With `reuse` (the default) the
    returned array may be a view of the decoder's buffer, valid until the next call.
    """

    def __init__(self, channels: int = 3, kind: str = "auto", max_pixels: int | None = None,
                 reuse: bool = True) -> None:
        if kind not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {kind!r}")
        if kind == "simplejpeg" and simplejpeg is None:
            raise ImportError("decoder='simplejpeg' needs the simplejpeg package (pip install simplejpeg)")
        self.channels = channels
        self.kind = "simplejpeg" if kind == "auto" and simplejpeg is not None else ("cv2" if kind == "auto" else kind)
        self.limit = max_pixels
        self._buffer = np.empty(1 << 20, np.uint8) if reuse else None

    def __call__(self, data: bytes | memoryview | np.ndarray) -> np.ndarray:
        if len(data) == 0:
            raise DecodeError("empty image data (0 bytes)")
        if not is_jpeg(data):
            excess = False
            if bytes(data[:8]) == PNG_SIGNATURE:
                check_image_data(data, self.limit)
                damage, excess = png_check(data)  # the same rule for the OpenCV and the Pillow path
                if damage is not None:
                    raise DecodeError(damage)
                data = png_without_text(data)  # libpng's warnings on a damaged text chunk never reach stderr
            # more image data than the rows need: libpng would print a warning, Pillow decodes it silently
            stored = None if excess else plain_png_channels(data)
            if stored is not None and (stored == 1 or self.channels == 3):
                # 8-bit gray/RGB without transparency: OpenCV gives Pillow's pixels, much faster on small images
                return self._opencv(data)
            # alpha, palette, 16-bit, RGB read as gray, GIF, WebP...
            return _pil_decode(bytes(data), 1 if self.channels == 1 else 3, self.limit)
        if jpeg_frame(data) is None:
            raise DecodeError("corrupt JPEG data (no frame header before the image data)")
        if self.kind != "simplejpeg":
            check_image_data(data, self.limit)
            if jpeg_truncated(data):
                raise DecodeError("truncated JPEG data (no end-of-image marker)")
            return self._opencv(data)  # OpenCV applies the EXIF orientation itself
        try:
            img = self._simplejpeg(data)
        except PixelLimitError:
            raise
        except DecodeError:
            # strict libjpeg-turbo also rejects warnings OpenCV decodes through (extraneous bytes, odd
            # markers); only data that is cut off, or that OpenCV cannot decode either, is corrupt
            if jpeg_truncated(data):
                raise DecodeError("truncated JPEG data (no end-of-image marker)") from None
            return self._opencv(data)
        orientation = jpeg_orientation(data)
        return img if orientation == 1 else apply_orientation(img, orientation)

    def _simplejpeg(self, data: Any) -> np.ndarray:
        try:
            h, w, _, _ = simplejpeg.decode_jpeg_header(data)
        except ValueError as exc:
            raise DecodeError(f"not a decodable JPEG ({exc})") from None
        check_pixels(w, h, self.limit)
        need = h * w * (1 if self.channels == 1 else 3)
        if self._buffer is not None and need > self._buffer.size:
            self._buffer = np.empty(int(need * 1.25), np.uint8)
        try:
            img = simplejpeg.decode_jpeg(data, "GRAY" if self.channels == 1 else "RGB", buffer=self._buffer,
                                         strict=True)
        except ValueError as exc:
            raise DecodeError(f"corrupt JPEG data ({exc})") from None
        return img if img.ndim == 3 else img[:, :, None]

    def _opencv(self, data: Any) -> np.ndarray:
        cv2 = _cv2()
        arr = np.frombuffer(data, np.uint8)
        try:
            if self.channels == 1:
                img = cv2.imdecode(arr, cv2.IMREAD_GRAYSCALE)
            elif hasattr(cv2, "IMREAD_COLOR_RGB"):
                img = cv2.imdecode(arr, cv2.IMREAD_COLOR_RGB)
            else:  # pragma: no cover - OpenCV < 4.10
                img = cv2.imdecode(arr, cv2.IMREAD_COLOR)
                if img is not None:
                    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        except (cv2.error, MemoryError) as exc:  # OpenCV's own limits (CV_IO_MAX_IMAGE_PIXELS) or no memory left
            reason = "not enough memory" if isinstance(exc, MemoryError) else _cv2_reason(exc)
            raise DecodeError(f"OpenCV cannot decode it: {reason}") from None
        if img is None:
            fmt = sniff_format(data)
            if fmt is None:
                raise NotAnImageError("not a recognised image format")
            raise DecodeError(f"corrupt {fmt.upper()} data")
        return img if img.ndim == 3 else img[:, :, None]


def _cv2_reason(exc: Exception) -> str:
    """The short reason of a cv2.error ("... error: (-215:Assertion failed) REASON in function ...")."""
    text = " ".join(str(exc).split())
    text = text.split(") ", 1)[-1] if "error: (" in text else text
    return text.split(" in function")[0][:160]


def decode(data: bytes | memoryview, channels: int = 3, order: str = "rgb", max_pixels: int | None = None,
           decoder: str = "auto") -> np.ndarray:
    """Encoded bytes -> a fresh uint8 H x W x C array: RGB (order 'rgb'), BGR ('bgr', OpenCV's order),
    or C = 1 gray (channels 1). Raises PixelLimitError (before decoding), NotAnImageError or DecodeError."""
    img = Decoder(channels, decoder, max_pixels, reuse=False)(data)
    if order == "bgr" and img.shape[2] == 3:
        return np.ascontiguousarray(img[:, :, ::-1])
    return np.array(img, copy=True) if not img.flags.writeable or not img.flags.owndata else img


def decode_opencv(data: bytes | memoryview, color: int = 1) -> np.ndarray:
    """Decode in OpenCV's layout, as `cv2.imdecode(data, color)` would but by this module's rules:
    color 1: H x W x 3 BGR; 0: H x W gray; -1: unchanged (an alpha channel kept, as MXNet's im2rec
    and `recordio.unpack_img` do with `cv2.imread(path, -1)`; other images as with color 1 or 0)."""
    if len(data) == 0:
        raise DecodeError("empty file (0 bytes)")
    if color == -1:
        fmt = sniff_format(data)
        if fmt is None:  # OpenCV reads more (HDR, PGM, EXR...), with no pixel check: the same formats as Pillow
            raise NotAnImageError("not a recognised image format")
        check_image_data(data)
        if fmt == "jpeg" and jpeg_truncated(data):
            raise DecodeError("truncated JPEG data (no end-of-image marker)")
        damage, excess = png_check(data) if fmt == "png" else (None, False)
        if damage is not None:
            raise DecodeError(damage)
        data = png_without_text(data) if fmt == "png" else data
        stored = plain_png_channels(data) if excess else None
        if stored is not None:  # plain gray/RGB with more data than its rows need: Pillow, which prints nothing
            color = 0 if stored == 1 else 1
        else:
            img = _cv2().imdecode(np.frombuffer(data, np.uint8), -1)
            if img is None:
                raise DecodeError(f"corrupt {fmt.upper()} data")
            if img.dtype == np.uint8 and (img.ndim == 2 or img.shape[2] == 4):  # alpha (or gray) kept as stored
                return apply_orientation(img, jpeg_orientation(data)) if fmt == "jpeg" else img
            color = 0 if img.ndim == 2 else 1  # 16-bit or plain colour: the usual conversions
    img = decode(data, 1 if color == 0 else 3, order="bgr")
    return img[:, :, 0] if color == 0 else img


def open_image(source: str | Path | bytes | memoryview | Image.Image, channels: int) -> Image.Image:
    """Open and fully decode an image by this module's rules, as a PIL image in mode L (1) or RGB (3).

    Files must be regular files and headers within the pixel limit (checked before decoding).
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
            data = read_image_file(source)
        arr = decode(data, channels)
    except (PixelLimitError, SideLimitError) as exc:
        raise UserError(f"cannot read {name}: {exc}") from None
    except DecodeError as exc:
        raise UserError(f"cannot read {name} as an image ({exc}); give a JPEG, PNG, BMP, GIF, TIFF or WebP file"
                        ) from None
    except OSError as exc:
        raise UserError(f"cannot read {name}: {exc.strerror or exc}") from None
    return Image.fromarray(arr[:, :, 0], "L") if channels == 1 else Image.fromarray(arr, "RGB")


def read_bgr(path: str | Path) -> np.ndarray:
    """An image file as OpenCV's uint8 H x W x 3 BGR array, decoded by `open_image`'s rules, for code
    that works in OpenCV."""
    return np.ascontiguousarray(np.asarray(open_image(path, 3))[:, :, ::-1])


def image_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) as displayed (EXIF rotation applied) from the file header; None if unreadable, not
    an allowed format or not a regular file (a FIFO is never opened for reading, so it cannot block)."""
    _sync_pillow()  # Pillow's own bomb check follows the limit in force, not the last call's
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with open_regular_file(path) as f, Image.open(f, formats=ALLOWED_FORMATS) as img:
                w, h = img.size
                orientation = img.getexif().get(0x0112, 1)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


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
