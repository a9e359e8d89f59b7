"""MNIST: idx files (plain or gzip) and the tutorial text format (`deepvision.datasets.mnist` downloads them).

idx headers are big-endian int32: images have magic 2051, count, rows, cols and then count*rows*cols
unsigned bytes; labels have magic 2049, count, then one byte per label.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from deepvision import safeload
from deepvision.errors import UserError

IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
ALIASES = {"t10k": "test", "training": "train", "testing": "test"}
CLASSES = [str(i) for i in range(10)]


def _present(root: Path, stem: str) -> list[Path]:
    """The copies of idx file `stem` in `root`: NAME, NAME.gz, N.idx, N.idx.gz (a FIFO or a folder counts)."""
    idx = stem.replace("-idx", ".idx")
    return [root / n for n in (stem, stem + ".gz", idx, idx + ".gz") if os.path.lexists(root / n)]


def _read(root: Path, stem: str, magic: int) -> np.ndarray:
    """The idx file `stem` in `root`. Several copies present (a download and its unpacked copy) must hold the same
    data (a .gz read inflated, each bounded by `read_idx`); differing ones are refused naming both, none taken."""
    arrays = {p: read_idx(p, magic) for p in _present(root, stem)}  # a FIFO or a folder is named by `read_idx`
    if not arrays:
        raise UserError(f"MNIST file {stem}[.gz] not found in {root}; download it with `deepvision data download "
                        f"mnist --root {root}` or point data.root at the folder that holds it")
    first, *others = arrays
    if other := next((p for p in others if not np.array_equal(arrays[p], arrays[first])), None):
        raise UserError(f"{root} holds both {first.name} and {other.name}, which differ (one is not the other "
                        f"unpacked); remove the one not to read")
    return arrays[first]


def read_idx(path: str | Path, expect_magic: int | None = None) -> np.ndarray:
    """Read one idx file (plain or gzip) into a uint8 array shaped by its header. The header's dimensions
    are checked and its declared size held to the read ceiling (and, compressed, to what the file can
    inflate to) before anything is allocated; exactly that much data is read, and data beyond it refused."""
    path, gz = safeload.regular_file(path, "MNIST file"), str(path).endswith(".gz")
    try:
        with (gzip.open if gz else open)(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4:
                raise UserError(f"{path} is truncated: {len(head)} bytes, too short for an idx header")
            (magic,), (zero, dtype_code, ndim) = struct.unpack(">i", head), struct.unpack(">HBB", head)
            if zero != 0 or dtype_code != 0x08 or not 1 <= ndim <= 4 or (expect_magic and magic != expect_magic):
                want = f" (expected magic {expect_magic})" if expect_magic else ""
                raise UserError(f"{path} is not an unsigned-byte idx file: magic {magic}{want}")
            dims = f.read(4 * ndim)
            if len(dims) < 4 * ndim:
                raise UserError(f"{path} is truncated inside its header")
            shape = struct.unpack(f">{ndim}i", dims)
            if min(shape) < 1:
                raise UserError(f"{path}: header dimension {min(shape)} (of {shape}) must be positive; the file is "
                                f"damaged")
            safeload.check_image_side(f"{path}: header image size", *shape[1:])
            declared = math.prod(shape)
            safeload.check_declared_bytes(f"{path} (header {' x '.join(map(str, shape))})", declared,
                                          path.stat().st_size if gz else None, safeload.DEFLATE_MAX_RATIO)
            data = safeload.read_declared(f, declared, path)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise UserError(f"{path} is corrupt or truncated ({exc}); download it again") from None
    return np.frombuffer(data, dtype=np.uint8).reshape(shape).copy()


def load_mnist_split(root: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 N x rows x cols, as the header declares; labels int64 N) of split "train" or "test" in `root`."""
    root = Path(root)
    split = ALIASES.get(split, split)
    if split not in FILES:
        raise UserError(f"unknown MNIST split '{split}'; valid: train, test")
    if not root.is_dir():
        raise UserError(f"MNIST folder not found: {root}")
    image_stem, label_stem = FILES[split]
    images, labels = _read(root, image_stem, IMAGE_MAGIC), _read(root, label_stem, LABEL_MAGIC)
    if len(images) != len(labels):  # the magic numbers fixed the shapes: N x rows x cols and N
        raise UserError(f"MNIST {split}: {len(images)} images but {len(labels)} labels in {root}")
    if labels.max() > 9:
        raise UserError(f"MNIST {split} labels in {root} hold values above 9; the label file is corrupt")
    return images, labels.astype(np.int64)


def available_splits(root: str | Path) -> list[str]:
    return [split for split, (image_stem, _) in FILES.items() if _present(Path(root), image_stem)]


MAX_TEXT_FILE_BYTES = 2**30  # the tutorial's 60,000 training digits are about 110 MB of text


def read_text(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The tutorial text format: per line `label separator p1 ... p784` (separator ignored); the label a
    class 0..9 and every pixel a whole number 0..255, else UserError naming the file and line."""
    labels, rows = [], []
    for lineno, line in safeload.text_file_lines(path, "MNIST text file", MAX_TEXT_FILE_BYTES, 2**16):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 786:
            raise UserError(f"{path}:{lineno}: expected label, separator and 784 pixels, got {len(parts)} fields")
        try:  # plain ASCII numbers: float() would also read '1_0' and other scripts' digits
            if not line.isascii() or "_" in line:
                raise ValueError(line)
            values = np.array([parts[0], *parts[2:]], dtype=np.float64)
        except ValueError:
            raise UserError(f"{path}:{lineno}: label and pixels must be plain numbers") from None
        if not (values[0].is_integer() and 0 <= values[0] <= 9):
            raise UserError(f"{path}:{lineno}: label {safeload.printable(parts[0])[:24]} is not a whole number 0..9")
        wrong = np.flatnonzero((values[1:] != np.floor(values[1:])) | (values[1:] < 0) | (values[1:] > 255))
        if len(wrong):
            raise UserError(f"{path}:{lineno}: pixel {wrong[0] + 1} is {parts[wrong[0] + 2][:24]}, not a whole "
                            f"number 0..255")
        labels.append(int(values[0]))
        rows.append(values[1:].astype(np.uint8))
    if not rows:
        raise UserError(f"{path} holds no images")
    return np.stack(rows).reshape(-1, 28, 28), np.asarray(labels, dtype=np.int64)
