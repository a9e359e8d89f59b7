"""OpenCV helpers for record files: encoding images for packing, and forking workers safely.

Decoding lives in `deepvision.data.imageio` (the one decoder); `Decoder` and `DecodeError` are
importable from here too because the record loader reaches them through this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import cv2
import numpy as np

from deepvision.data.imageio import DecodeError, Decoder

__all__ = ["DecodeError", "Decoder", "encode_image", "forking_cv2"]


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
