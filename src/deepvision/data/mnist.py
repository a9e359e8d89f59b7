"""MNIST: idx files (plain or gzip) and the tutorial text format (`deepvision.datasets.mnist` downloads them).

idx headers are big-endian int32: images have magic 2051, count, rows, cols and then count*rows*cols
unsigned bytes; labels have magic 2049, count, then one byte per label.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from deepvision.errors import UserError

IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
ALIASES = {"t10k": "test", "training": "train", "testing": "test"}
CLASSES = [str(i) for i in range(10)]


def _find(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (root / name).is_file():
            return root / name
    raise UserError(f"MNIST file {stem}[.gz] not found in {root}; download it with `deepvision data download mnist "
                    f"--root {root}` or point data.root at the folder that holds it")


def read_idx(path: str | Path, expect_magic: int | None = None) -> np.ndarray:
    """Read one idx file (plain or gzip) into a uint8 array shaped by its header."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise UserError(f"{path} is corrupt or truncated ({exc}); download it again") from None
    if len(data) < 8:
        raise UserError(f"{path} is truncated: {len(data)} bytes, too short for an idx header")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    magic = struct.unpack(">i", data[:4])[0]
    if zero != 0 or dtype_code != 0x08 or not 1 <= ndim <= 4 or (expect_magic and magic != expect_magic):
        want = f" (expected magic {expect_magic})" if expect_magic else ""
        raise UserError(f"{path} is not an unsigned-byte idx file: magic {magic}{want}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{path} is truncated inside its header")
    shape = struct.unpack(f">{ndim}i", data[4:header])
    expected = int(np.prod(shape))
    if len(data) - header < expected:
        raise UserError(f"{path} is truncated: header promises {expected} bytes of data, "
                        f"file holds {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, count=expected, offset=header).reshape(shape).copy()


def load_mnist_split(root: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 N x 28 x 28, labels int64 N) of split 'train' or 'test' from folder `root`."""
    root = Path(root)
    split = ALIASES.get(split, split)
    if split not in FILES:
        raise UserError(f"unknown MNIST split '{split}'; valid: train, test")
    if not root.is_dir():
        raise UserError(f"MNIST folder not found: {root}")
    image_stem, label_stem = FILES[split]
    images = read_idx(_find(root, image_stem), IMAGE_MAGIC)
    labels = read_idx(_find(root, label_stem), LABEL_MAGIC)
    if images.ndim != 3 or labels.ndim != 1:
        raise UserError(f"MNIST {split} files in {root} have unexpected shapes {images.shape} / {labels.shape}")
    if len(images) != len(labels):
        raise UserError(f"MNIST {split}: {len(images)} images but {len(labels)} labels in {root}")
    if labels.size and labels.max() > 9:
        raise UserError(f"MNIST {split} labels in {root} hold values above 9; the label file is corrupt")
    return images, labels.astype(np.int64)


def available_splits(root: str | Path) -> list[str]:
    root = Path(root)
    found = []
    for split, (image_stem, _) in FILES.items():
        try:
            _find(root, image_stem)
            found.append(split)
        except UserError:
            pass
    return found


def read_text(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The tutorial text format: per line `label separator p1 ... p784` (separator ignored)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"MNIST text file not found: {path}")
    labels, rows = [], []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text file in the MNIST text format (label, separator, 784 pixels)") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 786:
            raise UserError(f"{path}:{lineno}: expected label, separator and 784 pixels, got {len(parts)} fields")
        try:
            labels.append(int(float(parts[0])))
            rows.append([int(float(v)) for v in parts[2:]])
        except (ValueError, OverflowError):
            raise UserError(f"{path}:{lineno}: label and pixels must be numbers") from None
    if not rows:
        raise UserError(f"{path} holds no images")
    pixels = np.asarray(rows)
    if pixels.min() < 0 or pixels.max() > 255:
        raise UserError(f"{path}: pixel values must be in 0..255")
    return pixels.astype(np.uint8).reshape(-1, 28, 28), np.asarray(labels, dtype=np.int64)
