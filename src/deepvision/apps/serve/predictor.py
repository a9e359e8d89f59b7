"""What the web demo serves: a run directory or an exported .onnx file, behind one `predict(bytes)`.

Uploads are checked before decoding: the header's width x height must stay under a pixel budget
(decompression bombs: a few kilobytes that would decode to gigabytes), and anything PIL cannot
identify is refused as not an image. Only JPEG, PNG, BMP, GIF, TIFF (RGB, grey, palette or bilevel
colour) and WebP are opened at all (`ALLOWED_FORMATS`): Pillow's other plugins (EPS hands the file to
Ghostscript, where installed) are never tried. An upload that fails to decode (truncated, damaged) is
refused with 422. A predictor's result is JSON-ready: `top` (classification) and,
for detection runs, `boxes` ([x0, y0, x1, y1] in the uploaded image's pixels, `label`, `score`), which
the page draws.
"""

from __future__ import annotations

import io
import re
import threading
import time
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from deepvision.errors import UserError

ALLOWED_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP")
TIFF_MODES = ("1", "L", "LA", "P", "RGB", "RGBA")


class RejectedImage(Exception):
    """An upload refused before prediction; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def inspect_image(data: bytes, max_pixels: int) -> Image.Image:
    """Open (without decoding) and check an upload; RejectedImage for non-images and oversized images."""
    if not data:
        raise RejectedImage(400, "the upload is empty; choose an image file")
    try:
        img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:  # PIL's own cap, checked while reading the header
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise RejectedImage(413, _too_many(int(found.group(1)) if found else None, max_pixels)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise RejectedImage(415, "this file is not an image deepvision can read; upload a JPEG, PNG, BMP, GIF, "
                                 "TIFF or WebP file") from None
    if img.format == "TIFF" and img.mode not in TIFF_MODES:
        raise RejectedImage(415, f"this TIFF holds {img.mode} colour, which deepvision does not read; upload an "
                                 f"RGB or greyscale image")
    width, height = img.size
    if width * height > max_pixels:
        raise RejectedImage(413, _too_many(width * height, max_pixels, f"{width} x {height} = "))
    return img


def _too_many(pixels: int | None, limit: int, dims: str = "") -> str:
    size = f"{dims}{pixels / 1e6:.1f} megapixels" if pixels else "too many pixels"
    return (f"the image is {size}, above this server's limit of {limit / 1e6:.0f} megapixels (decompression bomb "
            f"protection); upload a smaller image")


class Predictor:
    """A loaded model: `predict(image bytes, top)` -> dict. Thread-safe; inference runs without a lock."""

    def __init__(self, source: str | Path, device: str = "auto", max_pixels: int = 40_000_000) -> None:
        self.source = Path(source)
        self.max_pixels = max_pixels
        if self.source.suffix == ".onnx":
            from deepvision.inference.onnx_runtime import OnnxClassifier

            self.backend: Any = OnnxClassifier(self.source)
            self.name = f"{self.source.name} (onnxruntime)"
            self.task = self.backend.task
        elif self.source.is_dir():
            from deepvision.engine.distributed import resolve_device
            from deepvision.runs.loading import load_run

            self.backend = load_run(self.source, device=resolve_device(device))
            self.name = f"{self.source.name} ({self.backend.cfg.model.name})"
            self.task = getattr(self.backend.model, "task", "classification")
        else:
            raise UserError(f"{source} is neither a run directory nor an exported .onnx file")
        self.pre = self.backend.pre
        self.classes = list(self.backend.classes)
        self._decode_lock = threading.Lock()  # PIL decoding is cheap; keep memory bounded under load

    def info(self) -> dict[str, Any]:
        return {"status": "ok", "model": self.name, "task": self.task, "classes": len(self.classes),
                "input": [self.pre.channels, *self.pre.size]}

    def predict(self, data: bytes, top: int = 5) -> dict[str, Any]:
        img = inspect_image(data, self.max_pixels)
        t0 = time.perf_counter()
        try:
            with self._decode_lock:
                tensor = self.pre.load(img)
        except Exception as exc:  # Pillow's decoders raise OSError, ValueError, SyntaxError, ...
            reason = " ".join(str(exc).split())[:160] or type(exc).__name__
            raise RejectedImage(422, f"the image could not be decoded ({reason}); it may be truncated or "
                                     f"damaged") from None
        batch = tensor.unsqueeze(0)
        if hasattr(self.backend, "predict_tensors"):
            tops = self.backend.predict_tensors(batch, top)
        else:
            from deepvision.inference.predict import predict_tensors

            tops = predict_tensors(self.backend, batch, top)
        result: dict[str, Any] = {
            "model": self.name, "task": self.task, "image": {"width": img.size[0], "height": img.size[1]},
            "top": [{"class": c, "probability": p} for c, p in tops[0]],
        }
        boxes = getattr(self.backend, "boxes", None)  # detection predictors (future) add boxes
        if callable(boxes):
            result["boxes"] = boxes(img)
        result["milliseconds"] = round((time.perf_counter() - t0) * 1000, 2)
        return result

