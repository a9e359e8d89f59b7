"""Helpers for the record-file tests: small generated images and image folders."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def noise_image(seed: int, size: tuple[int, int] = (40, 30), mode: str = "RGB") -> Image.Image:
    """A smooth random RGB image (w x h) that survives JPEG well enough for comparisons."""
    rng = np.random.default_rng(seed)
    w, h = size
    small = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((w, h), Image.BILINEAR)
    return img.convert(mode) if mode != "RGB" else img


def jpeg_bytes(img: Image.Image, quality: int = 95, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, **kw)
    return buf.getvalue()


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def make_folder(root: Path, per_class: int = 4, classes: tuple[str, ...] = ("cat", "dog", "owl"),
                size: tuple[int, int] = (40, 30), fmt: str = "jpg") -> list[Path]:
    """root/<class>/img_k.<fmt> images of mixed sizes; returns the files in sorted-walk order."""
    files = []
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            w, h = size[0] + 6 * k, size[1] + 4 * ((k + c) % 3)
            path = root / name / f"img_{k}.{fmt}"
            noise_image(100 * c + k, (w, h)).save(path, quality=95) if fmt == "jpg" else \
                noise_image(100 * c + k, (w, h)).save(path)
            files.append(path)
    return files
