"""What the web demo serves: a run directory or an exported .onnx file, behind one `predict(bytes)`.

Uploads are decoded by `deepvision.data.imageio`, the decoder training, evaluation and predict use,
so an upload gives the pixels `deepvision predict` gives for the same file. The header's width x
height is checked before decoding against this server's pixel budget (decompression bombs: a few
kilobytes that would decode to gigabytes). Only JPEG, PNG, BMP, GIF, TIFF and WebP are read
(`imageio.ALLOWED_FORMATS`): Pillow's other plugins (EPS hands the file to Ghostscript, where
installed) are never tried. Refusals: 413 above the budget, 415 for anything that is not such an
image (or holds a colour mode deepvision does not read), 422 for an image that fails to decode
(truncated, damaged). A predictor's result is JSON-ready: `top` (classification) and, when a backend
given to `create_app` returns them, `boxes` ([x0, y0, x1, y1] in the uploaded image's pixels, `label`,
`score`), which the page draws. A detection run is refused at start: `deepvision detect` draws its boxes.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from deepvision.apps.serve.pillow_warnings import pillow_warning_counts
from deepvision.data.imageio import (
    DecodeError,
    NotAnImageError,
    PixelLimitError,
    decode,
    sniff_format,
)
from deepvision.errors import UserError
from deepvision.safeload import shell_word


class RejectedImage(Exception):
    """An upload refused before prediction; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def decode_upload(data: bytes, channels: int, max_pixels: int) -> np.ndarray:
    """An upload as a uint8 H x W x C array (RGB, or C = 1 gray), decoded by `imageio.decode` with this
    server's pixel budget; RejectedImage (with its HTTP status) for anything refused."""
    if not data:
        raise RejectedImage(400, "the upload is empty; choose an image file")
    try:
        return decode(data, channels, max_pixels=max_pixels)
    except PixelLimitError as exc:
        dims = f"{exc.size[0]} x {exc.size[1]} = " if exc.size else ""
        raise RejectedImage(413, _too_many(exc.pixels, max_pixels, dims)) from None
    except NotAnImageError as exc:
        if exc.mode is not None:
            kind = (sniff_format(data) or "image").upper()
            raise RejectedImage(415, f"this {kind} holds {exc.mode} colour, which deepvision does not read; "
                                     f"upload an RGB or greyscale image") from None
        raise RejectedImage(415, "this file is not an image deepvision can read; upload a JPEG, PNG, BMP, GIF, "
                                 "TIFF or WebP file") from None
    except DecodeError as exc:
        reason = " ".join(str(exc).split())[:160]
        raise RejectedImage(422, f"the image could not be decoded ({reason}); it may be truncated or "
                                 f"damaged") from None
    except MemoryError:
        raise RejectedImage(413, "the image is too large to decode on this server; upload a smaller image") from None
    except Exception as exc:  # a decoder's own failure is the upload's fault: a 422, never a 500 with a traceback
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise RejectedImage(422, f"the image could not be decoded ({reason}); upload a JPEG, PNG, BMP, GIF, "
                                 f"TIFF or WebP file") from None


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
            from deepvision.inference.onnx_runtime import OnnxClassifier, refuse_run_options

            refuse_run_options(self.source, device=device)
            self.backend: Any = OnnxClassifier(self.source)
            self.name = f"{self.source.name} (onnxruntime)"
            self.task = self.backend.task
        elif self.source.is_dir():
            from deepvision.engine.distributed import resolve_device
            from deepvision.runs.loading import load_run
            from deepvision.runs.rundir import RunDir

            if RunDir.open(self.source).read_config().task == "detection":
                raise UserError(f"{self.source} is a detection run; serve takes classification runs (top "
                                f"classes out); draw its boxes with `deepvision detect "
                                f"{shell_word(self.source)} IMAGES`")
            self.backend = load_run(self.source, device=resolve_device(device))
            self.name = f"{self.source.name} ({self.backend.cfg.model.name})"
            self.task = getattr(self.backend.model, "task", "classification")
        else:
            raise UserError(f"{source} is neither a run directory nor an exported .onnx file")
        self.pre = self.backend.pre
        self.classes = list(self.backend.classes)
        self._decode_lock = threading.Lock()  # decoding is cheap; one at a time keeps memory bounded under load

    def info(self) -> dict[str, Any]:
        """What /health answers; `decoder_warnings` counts Pillow's warnings about uploads by reason (they
        are not printed into the server's log: `pillow_warnings.quiet_pillow_warnings`)."""
        return {"status": "ok", "model": self.name, "task": self.task, "classes": len(self.classes),
                "input": [self.pre.channels, *self.pre.size], "decoder_warnings": pillow_warning_counts()}

    def predict(self, data: bytes, top: int = 5) -> dict[str, Any]:
        t0 = time.perf_counter()
        with self._decode_lock:
            arr = decode_upload(data, self.pre.channels, self.max_pixels)
        img = Image.fromarray(arr[:, :, 0], "L") if arr.shape[2] == 1 else Image.fromarray(arr, "RGB")
        tensor = self.pre.load(img)
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
        boxes = getattr(self.backend, "boxes", None)  # a Predictor-like backend given to create_app may add boxes
        if callable(boxes):
            result["boxes"] = boxes(img)
        result["milliseconds"] = round((time.perf_counter() - t0) * 1000, 2)
        return result

