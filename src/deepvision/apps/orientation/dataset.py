"""Orientation data set synthesis (docs/transfer.md): upright photos turned by 0/90/180/270°.

Up to `max_images` image paths are taken from SRC (recursively, in sorted listing order: the first N, as
the reference did, or a seeded random sample), shuffled, and each image is turned clockwise by an angle
drawn uniformly from {0, 90, 180, 270} with exact quarter turns (no interpolation, no lost row: H x W
becomes W x H and turning back is pixel-exact). Results go to `OUT/<angle>/image_<5-digit per-angle
counter><original extension>`; unreadable files are skipped and listed in `OUT/skipped.txt`; the counts go
to `OUT/counts.json`. Each image is written to a temporary name and renamed, and OUT must be new or
empty, so an interrupted run never mixes with a finished one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from deepvision.errors import UserError
from deepvision.fileio import atomic_path, atomic_write_text, check_jpeg_quality, output_folder
from deepvision.placement import refuse_output_inside
from deepvision.safeload import image_files, refuse_linked_files

ANGLES = (0, 90, 180, 270)
_CLOCKWISE = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}
SAVE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
                ".webp": "WEBP", ".gif": "PNG"}


def rotate_clockwise(img: Image.Image, angle: int) -> Image.Image:
    """`img` turned clockwise by a multiple of 90 degrees, exactly (a pixel permutation)."""
    angle = int(angle) % 360
    if angle not in ANGLES:
        raise UserError(f"rotation angles are multiples of 90 degrees, got {angle}")
    return img.copy() if angle == 0 else img.transpose(_CLOCKWISE[angle])


def correction_angle(angle: int) -> int:
    """The clockwise turn that undoes a clockwise turn by `angle`: (360 - angle) mod 360."""
    return (360 - int(angle)) % 360


@dataclass
class OrientationDataset:
    out: Path
    counts: dict[int, int]
    skipped: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _list_images(src: Path) -> list[Path]:
    if not src.is_dir():
        raise UserError(f"source folder not found: {src}")
    paths = image_files(src)
    if not paths:
        raise UserError(f"no images found under {src}")
    refuse_linked_files(paths, {}, f"the data set made from {src}")  # its copies could land in train and test
    return paths


def _save(img: Image.Image, path: Path, quality: int) -> None:
    fmt = SAVE_FORMATS.get(path.suffix.lower(), "PNG")
    with atomic_path(path) as tmp:
        img.save(tmp, fmt, **({"quality": quality} if fmt == "JPEG" else {}))


def build_orientation_dataset(
    src: str | Path,
    out: str | Path,
    *,
    max_images: int = 10000,
    sample: str = "first",
    seed: int = 42,
    quality: int = 95,
    progress: Callable[[int, int], None] | None = None,
) -> OrientationDataset:
    """Write the rotated data set; returns per-angle counts and the skipped files."""
    from deepvision.data.preprocess import open_image

    src, out = Path(src), Path(out)
    check_jpeg_quality(quality)
    if max_images < 1:
        raise UserError(f"--max must be a positive number of images, got {max_images}")
    if sample not in ("first", "random"):
        raise UserError(f"--sample must be first or random, got {sample!r}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} already exists and is not empty; choose a new output folder")
    refuse_output_inside(out, src, "the input folder", "OUT")  # its rotated copies would pass as upright photos
    paths = _list_images(src)
    rng = np.random.default_rng(seed)
    if sample == "random" and len(paths) > max_images:
        paths = [paths[i] for i in sorted(rng.choice(len(paths), max_images, replace=False))]
    paths = paths[:max_images]
    paths = [paths[i] for i in rng.permutation(len(paths))]
    with output_folder(out, discard_on_failure=True):  # a failed or stopped run leaves no set the next refuses
        for angle in ANGLES:
            (out / str(angle)).mkdir(exist_ok=True)
        counts = dict.fromkeys(ANGLES, 0)
        skipped: list[str] = []
        for done, path in enumerate(paths, 1):
            angle = int(rng.choice(ANGLES))
            try:
                img = open_image(path, 3)
            except UserError:
                skipped.append(str(path))
            else:
                ext = path.suffix.lower() if path.suffix.lower() in SAVE_FORMATS else ".png"
                ext = ".png" if ext == ".gif" else ext
                _save(rotate_clockwise(img, angle), out / str(angle) / f"image_{counts[angle]:05d}{ext}", quality)
                counts[angle] += 1
            if progress is not None:
                progress(done, len(paths))
        atomic_write_text(out / "counts.json", json.dumps({"counts": {str(a): c for a, c in counts.items()},
                                                           "total": sum(counts.values()), "skipped": len(skipped),
                                                           "source": str(src), "sample": sample, "seed": seed},
                                                          indent=2) + "\n")
        if skipped:
            atomic_write_text(out / "skipped.txt", "".join(f"{p}\n" for p in skipped))
    return OrientationDataset(out, counts, skipped)
