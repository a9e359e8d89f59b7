"""Small STL-10 binary files in the official layout, so the T1 workflow runs without the 2.6 GB archive.

All ten classes are present (in shuffled order, as in the real files) so the builder's selection is
exercised. Airplanes are dark shapes on a bright sky, cats are darker textured blobs: different
enough in 28x28 grayscale for LeNet to learn in a few steps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepvision.apps.stl10.binary import CLASS_NAMES, SIDE, write_split
from deepvision.fileio import atomic_write_text
from deepvision.placement import new_output_folder
from deepvision.safeload import MAX_FAKE_IMAGES, check_fake_images, check_range


def _image(rng: np.random.Generator, label: int) -> np.ndarray:
    y, x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    if label == 1:  # airplane: bright sky gradient, a dark fuselage and wings
        sky = 170 + 60 * (1 - y / SIDE)
        img = np.stack([sky * 0.85, sky * 0.92, sky], -1)
        cy, cx = rng.uniform(30, 66, 2)
        body = (np.abs(y - cy) < rng.uniform(3, 6)) & (np.abs(x - cx) < rng.uniform(20, 34))
        wings = (np.abs(x - cx) < rng.uniform(3, 6)) & (np.abs(y - cy) < rng.uniform(12, 22))
        img[body | wings] = rng.uniform(30, 70)
    elif label == 4:  # cat: warm, darker fur texture with a round head
        fur = rng.normal(0, 1, (SIDE // 8, SIDE // 8))
        fur = np.kron(fur, np.ones((8, 8)))
        base = 95 + 25 * fur
        img = np.stack([base * 1.15, base * 0.9, base * 0.65], -1)
        cy, cx = rng.uniform(35, 61, 2)
        head = (y - cy) ** 2 + (x - cx) ** 2 < rng.uniform(15, 24) ** 2
        img[head] *= 0.7
    else:  # the other classes: a hue per class, random texture
        hue = np.array([(label * 37) % 255, (label * 91) % 255, (label * 53) % 255], np.float32)
        img = np.broadcast_to(hue, (SIDE, SIDE, 3)) * rng.uniform(0.5, 1.0)
    img = img + rng.normal(0, 8, (SIDE, SIDE, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_fake_stl10(out: str | Path, train_per_class: int = 20, test_per_class: int = 32, seed: int = 0) -> Path:
    """Write train_X/train_y/test_X/test_y.bin and class_names.txt under `out`; returns `out`."""
    check_range("--train-per-class", train_per_class, 1, MAX_FAKE_IMAGES // 10)
    check_range("--test-per-class", test_per_class, 1, MAX_FAKE_IMAGES // 10)
    check_fake_images(10 * (train_per_class + test_per_class), "--train-per-class and --test-per-class")
    out = Path(out)
    with new_output_folder(out):  # a stopped run leaves nothing its next run would refuse
        rng = np.random.default_rng(seed)
        for split, per_class in (("train", train_per_class), ("test", test_per_class)):
            labels = rng.permutation(np.repeat(np.arange(1, 11), per_class))
            images = np.stack([_image(rng, int(k)) for k in labels])
            write_split(out, split, images, labels)
        atomic_write_text(out / "class_names.txt", "".join(f"{name}\n" for name in CLASS_NAMES))
        return out
