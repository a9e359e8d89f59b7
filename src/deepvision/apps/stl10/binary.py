"""STL-10's binary files (docs/stl10.md): reading with checks, writing (for fake data), and the download.

`X` files hold uint8 images of 3 x 96 x 96 each, every channel stored column-major (so a record read
as C x 96 x 96 is C x W x H and is transposed to H x W x C); `y` files hold one uint8 label 1..10 per
image. The official archive is `stl10_binary.tar.gz` (2.6 GB, MD5 checked); only the labelled files
are extracted from it.
"""

from __future__ import annotations

import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from deepvision.datasets.fetch import fetch_url, refuse_offline
from deepvision.errors import UserError
from deepvision.fileio import atomic_path, md5_of
from deepvision.safeload import input_file, read_bytes, shell_word

SIDE = 96
IMAGE_BYTES = 3 * SIDE * SIDE  # 27,648
CLASS_NAMES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
SPLITS = ("train", "test")
URL = "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"
ARCHIVE_MD5 = "91f7769df0f17e558f3565bffb0c7dfb"
FILE_MD5 = {  # the members extracted from the archive (the unlabelled 2.7 GB file is not)
    "train_X.bin": "918c2871b30a85fa023e0c44e0bee87f",
    "train_y.bin": "5a34089d4802c674881badbb80307741",
    "test_X.bin": "7f263ba9f9e0b06b93213547f721ac82",
    "test_y.bin": "36f9794fa4beb8a2c72628de14fa638e",
    "class_names.txt": None,
}


def find_root(root: str | Path) -> Path:
    """The folder holding train_X.bin...: `root` itself or its `stl10_binary/` (the archive's folder); binary
    files in both are refused rather than one set read without a word."""
    root = Path(root)
    found = [folder for folder in (root, root / "stl10_binary")
             if any((folder / f"{split}_{part}.bin").exists() for split in SPLITS for part in "Xy")]
    if len(found) == 2 and not found[0].samefile(found[1]):
        raise UserError(f"STL-10 binary files are both in {root} and in {found[1]}; give the folder that holds the "
                        f"ones to read as --root (`--root {shell_word(found[1])}` for the archive's folder)")
    if found:
        return found[0]
    if not root.is_dir():
        word = shell_word(root)
        raise UserError(f"STL-10 folder not found: {root} (download it with `deepvision stl10 download --root "
                        f"{word}`, or write fake files with `deepvision stl10 fake --out {word}`)")
    raise UserError(f"{root} holds no STL-10 binary files (train_X.bin, train_y.bin, test_X.bin, test_y.bin)")


def open_images(path: str | Path) -> np.ndarray:
    """The images of an `X` file as a read-only memory map shaped N x 3 x 96 x 96 (C x W x H per image)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"STL-10 image file not found: {path}")
    size = path.stat().st_size
    if size == 0 or size % IMAGE_BYTES:
        raise UserError(f"{path} is truncated or not an STL-10 image file: {size:,} bytes is not a positive multiple "
                        f"of {IMAGE_BYTES:,} (one 3x96x96 image); download it again")
    return np.memmap(path, dtype=np.uint8, mode="r", shape=(size // IMAGE_BYTES, 3, SIDE, SIDE))


def read_labels(path: str | Path, count: int) -> np.ndarray:
    """The labels (1..10, int64) of a `y` file that must describe `count` images."""
    path = input_file(path, "STL-10 label file")
    size = path.stat().st_size  # one byte a label: the count is checked before anything is read
    if size != count:
        raise UserError(f"{path} holds {size:,} labels but its image file holds {count:,} images; the two "
                        f"files do not belong together (download them again)")
    labels = np.frombuffer(read_bytes(path, "STL-10 label file"), dtype=np.uint8).astype(np.int64)
    if len(labels) != count:  # the file changed while it was read
        raise UserError(f"{path} changed while it was read; run the command again")
    bad = np.flatnonzero((labels < 1) | (labels > 10))
    if len(bad):
        raise UserError(f"{path}: label {labels[bad[0]]} at position {bad[0]} is outside 1..10 "
                        f"({len(bad):,} such labels); this is not an STL-10 label file")
    return labels


def load_split(root: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images N x 3 x 96 x 96 memory map, labels 1..10) of split 'train' or 'test'."""
    root = Path(root)
    images = open_images(root / f"{split}_X.bin")
    return images, read_labels(root / f"{split}_y.bin", len(images))


def to_hwc(image: np.ndarray) -> np.ndarray:
    """One stored image (3 x W x H, column-major channels) -> H x W x 3 RGB."""
    return np.ascontiguousarray(np.asarray(image).transpose(2, 1, 0))


def write_split(root: str | Path, split: str, images_hwc: np.ndarray, labels: np.ndarray) -> tuple[Path, Path]:
    """Write N x 96 x 96 x 3 RGB images and labels 1..10 as `<split>_X.bin` / `<split>_y.bin`."""
    root = Path(root)
    images_hwc = np.asarray(images_hwc, dtype=np.uint8)
    if images_hwc.shape[1:] != (SIDE, SIDE, 3):
        raise ValueError(f"images must be N x 96 x 96 x 3, got {images_hwc.shape}")
    x, y = root / f"{split}_X.bin", root / f"{split}_y.bin"
    for path, data in ((x, images_hwc.transpose(0, 3, 2, 1)), (y, np.asarray(labels, dtype=np.uint8))):
        with open(path, "wb") as f:  # a full disk is an OSError with its errno (ndarray.tofile's has none)
            f.write(data.tobytes())
    return x, y


def download(root: str | Path, url: str = URL, md5: str | None = ARCHIVE_MD5,
             file_md5: dict[str, str | None] | None = None,
             progress: Callable[[int, int], None] | None = None) -> Path:
    """Fetch the official archive into `root` (MD5 checked) and extract the labelled files to
    `root/stl10_binary/`; returns that folder. Files already present with the right MD5 are kept.

    `url`, `md5` and `file_md5` (member name -> MD5, None: unchecked) default to the official ones.
    """
    root = Path(root)
    file_md5 = FILE_MD5 if file_md5 is None else file_md5
    target = root / "stl10_binary"
    if all((target / n).is_file() and (m is None or md5_of(target / n) == m) for n, m in file_md5.items()):
        return target
    archive = root / url.rstrip("/").rsplit("/", 1)[-1]
    fetch = not (archive.is_file() and (md5 is None or md5_of(archive) == md5))
    if fetch:  # offline: refused before any folder is made
        refuse_offline(url, archive)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {target}: {exc.strerror or exc}") from None
    if fetch:
        _fetch(url, archive, md5, progress)
    _extract(archive, target, file_md5)
    return target


def _fetch(url: str, archive: Path, md5: str | None, progress: Callable[[int, int], None] | None) -> None:
    fetch_url(url, archive, md5, progress)


def _extract(archive: Path, target: Path, file_md5: dict[str, str | None]) -> None:
    """Stream through the archive once, copying the wanted members (by base name, never by their path)."""
    wanted = set(file_md5)
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = Path(member.name).name
                if not member.isfile() or name not in wanted:
                    continue
                src = tar.extractfile(member)
                with atomic_path(target / name, ".partial") as tmp:
                    with open(tmp, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                    expected = file_md5[name]
                    if expected is not None and md5_of(tmp) != expected:
                        raise UserError(f"{archive}: member {member.name} fails its MD5 check; delete the archive "
                                        f"and download it again")
                wanted.discard(name)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UserError(f"{archive} is not a readable STL-10 archive ({exc}); delete it and download it again"
                        ) from None
    missing = sorted(wanted - {"class_names.txt"})
    if missing:
        raise UserError(f"{archive} lacks {', '.join(missing)}; it is not the STL-10 binary archive")

