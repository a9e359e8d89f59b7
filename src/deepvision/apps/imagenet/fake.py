"""A miniature ILSVRC tree (same devkit files, JPEGs of varied sizes) so the ImageNet workflow runs
without ImageNet. Each class has its own hue and stripe orientation, so small nets can learn it."""

from __future__ import annotations

import colorsys
import math
from pathlib import Path

import numpy as np
from PIL import Image

from deepvision.apps.imagenet.devkit import DevkitPaths
from deepvision.errors import UserError
from deepvision.fileio import output_subfolder
from deepvision.placement import new_output_folder
from deepvision.safeload import MAX_FAKE_SIDE, check_fake_images


def _class_image(rng: np.random.Generator, k: int, classes: int, width: int, height: int) -> Image.Image:
    hue = k / classes
    angle = math.pi * ((k * 7) % classes) / classes
    period = 6 + (k % 3) * 3
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 2 * math.pi)
    wave = 0.5 + 0.5 * np.sin((x * math.cos(angle) + y * math.sin(angle)) * 2 * math.pi / period + phase)
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    base = np.array([r, g, b], np.float32) * 255
    img = wave[:, :, None] * base + (1 - wave[:, :, None]) * 40
    img += rng.normal(0, 12, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")




def make_fake_imagenet(out: str | Path, classes: int = 10, per_class: int = 20, val_per_class: int = 5,
                       seed: int = 0, min_side: int = 64, max_side: int = 160, blacklist_every: int = 7) -> DevkitPaths:
    """Write a fake ILSVRC root at `out`; returns its DevkitPaths.

    map_clsloc.txt lists the classes in an order different from sorted WNIDs (as the real one does),
    every `blacklist_every`-th validation image id is blacklisted, and image sizes vary.
    """
    if classes < 1 or per_class < 1 or val_per_class < 0:
        raise UserError("--classes and --per-class must be positive and --val-per-class >= 0")
    check_fake_images(classes * (per_class + val_per_class), "--classes, --per-class and --val-per-class")
    if not 8 <= min_side <= max_side <= MAX_FAKE_SIDE:
        raise UserError(f"--min-side and --max-side must satisfy 8 <= min <= max <= {MAX_FAKE_SIDE} pixels, "
                        f"got {min_side} and {max_side}")
    # a generator never replaces files it did not make (a real devkit's lists); a stopped one leaves nothing
    with new_output_folder(out):
        rng = np.random.default_rng(seed)
        paths = DevkitPaths(Path(out))
        wnids = sorted({f"n{v:08d}" for v in rng.choice(10**8, size=classes * 3, replace=False)})[:classes]
        order = rng.permutation(classes)  # map order differs from sorted-WNID order
        mapped = [wnids[i] for i in order]
        for p in (paths.map_clsloc.parent, paths.train_cls.parent, paths.images / "val"):
            output_subfolder(paths.root, p.relative_to(paths.root))
        paths.map_clsloc.write_text("".join(f"{w} {i + 1} fake_class_{i}\n" for i, w in enumerate(mapped)))

        def size() -> tuple[int, int]:
            return int(rng.integers(min_side, max_side + 1)), int(rng.integers(min_side, max_side + 1))

        train_lines, counter = [], 1
        for k, wnid in enumerate(mapped):
            folder = output_subfolder(paths.root, (paths.images / "train" / wnid).relative_to(paths.root))
            for n in range(per_class):
                stem = f"{wnid}_{n + 1}"
                _class_image(rng, k, classes, *size()).save(folder / f"{stem}.JPEG", quality=90)
                train_lines.append(f"{wnid}/{stem} {counter}\n")
                counter += 1
        paths.train_cls.write_text("".join(train_lines))
        val_lines, truth, blacklist = [], [], []
        labels = rng.permutation(np.repeat(np.arange(classes), val_per_class))
        for i, k in enumerate(labels, 1):
            stem = f"ILSVRC2012_val_{i:08d}"
            _class_image(rng, int(k), classes, *size()).save(paths.images / "val" / f"{stem}.JPEG", quality=90)
            val_lines.append(f"{stem} {i}\n")
            truth.append(f"{int(k) + 1}\n")
            if blacklist_every and i % blacklist_every == 0:
                blacklist.append(f"{i}\n")
        paths.val.write_text("".join(val_lines))
        paths.val_ground_truth.write_text("".join(truth))
        paths.val_blacklist.write_text("".join(blacklist))
        return paths
