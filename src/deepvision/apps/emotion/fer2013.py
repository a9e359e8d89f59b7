"""FER2013 CSV -> HDF5 train/val/test (SPEC §1.5, §2.7), and a fake FER CSV for tests.

The CSV has a header `emotion,pixels,Usage`: an emotion 0-6, 2,304 space-separated pixel values (a
48 x 48 grayscale face) and Training / PrivateTest / PublicTest, which become train.hdf5, val.hdf5
and test.hdf5 (`images` N x 48 x 48, float64 by default like the reference, `labels` int64,
`label_names`). In 6-class mode (the default) disgust is merged into angry and the labels renumbered.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepvision.data.fer import FER6_LABELS, FER6_MAP, FER7_LABELS
from deepvision.errors import UserError

SPLITS = {"Training": "train", "PrivateTest": "val", "PublicTest": "test"}
SIDE = 48


@dataclass
class FerBuild:
    files: dict[str, Path]
    counts: dict[str, list[int]] = field(default_factory=dict)  # split -> samples per class
    classes: list[str] = field(default_factory=list)


def _parse_row(row: dict[str, str], lineno: int, path: Path) -> tuple[int, np.ndarray, str]:
    try:
        label = int(row["emotion"])
    except (TypeError, ValueError):
        raise UserError(f"{path}:{lineno}: emotion must be an integer 0-6, got {row.get('emotion')!r}") from None
    if not 0 <= label <= 6:
        raise UserError(f"{path}:{lineno}: emotion must be 0-6, got {label}")
    usage = (row.get("Usage") or "").strip()
    if usage not in SPLITS:
        raise UserError(f"{path}:{lineno}: Usage must be Training, PrivateTest or PublicTest, got {usage!r}")
    try:
        pixels = np.array((row.get("pixels") or "").split(), dtype=np.int64)
    except ValueError:
        raise UserError(f"{path}:{lineno}: pixels must be space-separated integers") from None
    if pixels.size != SIDE * SIDE or pixels.min(initial=0) < 0 or pixels.max(initial=0) > 255:
        raise UserError(f"{path}:{lineno}: expected {SIDE * SIDE} pixel values in 0..255, got {pixels.size}")
    return label, pixels.reshape(SIDE, SIDE).astype(np.uint8), SPLITS[usage]


def build_fer2013(csv_path: str | Path, out: str | Path, *, classes: int = 6, dtype: str = "float64",
                  progress: Callable[[int, int], None] | None = None) -> FerBuild:
    """Write OUT/train.hdf5, val.hdf5, test.hdf5 from the FER2013 CSV; refuses to overwrite existing files."""
    from deepvision.data.hdf5 import HDF5DatasetWriter

    if classes not in (6, 7):
        raise UserError(f"--classes must be 6 (disgust merged into angry) or 7, got {classes}")
    if dtype not in ("float64", "uint8"):
        raise UserError(f"--dtype must be float64 (the reference's) or uint8, got {dtype}")
    csv_path, out = Path(csv_path), Path(out)
    if not csv_path.is_file():
        raise UserError(f"FER2013 CSV not found: {csv_path}")
    files = {split: out / f"{split}.hdf5" for split in ("train", "val", "test")}
    taken = [str(p) for p in files.values() if p.exists()]
    if taken:
        raise UserError(f"{', '.join(taken)} already exist(s); choose another --out (nothing is overwritten)")
    try:
        with open(csv_path, encoding="utf-8", newline="") as f:
            total = sum(1 for _ in f) - 1
    except UnicodeDecodeError:
        raise UserError(f"{csv_path} is not a text CSV file") from None
    names = list(FER6_LABELS if classes == 6 else FER7_LABELS)
    counts = {split: [0] * classes for split in files}
    writers = {split: HDF5DatasetWriter(path, (None, SIDE, SIDE), "images", dtype=dtype)
               for split, path in files.items()}
    try:
        with open(csv_path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            missing = {"emotion", "pixels", "Usage"} - set(reader.fieldnames or [])
            if missing:
                raise UserError(f"{csv_path} lacks the column(s) {', '.join(sorted(missing))}; expected the header "
                                f"emotion,pixels,Usage")
            for done, row in enumerate(reader, 1):
                label, image, split = _parse_row(row, done + 1, csv_path)
                if classes == 6:
                    label = FER6_MAP[label]
                writers[split].add(image[None], [label])
                counts[split][label] += 1
                if progress and (done % 500 == 0 or done == total):
                    progress(done, total)
        for w in writers.values():
            w.store_class_labels(names)
            w.close()
    except BaseException:
        for w in writers.values():
            w.abort()
        for path in files.values():  # none existed before: remove the splits already renamed into place
            path.unlink(missing_ok=True)
        raise
    return FerBuild(files, counts, names)


def make_fake_fer_csv(path: str | Path, rows: int = 140, seed: int = 0) -> Path:
    """A FER2013-format CSV of synthetic 48 x 48 faces whose class is drawn as a learnable pattern
    (a bright bar whose row depends on the emotion); every emotion and every Usage occurs."""
    if rows < 21:
        raise UserError("a fake FER CSV needs at least 21 rows (every emotion in every split)")
    rng = np.random.default_rng(seed)
    path = Path(path)
    usages = ["Training"] * 8 + ["PrivateTest", "PublicTest"]
    lines = ["emotion,pixels,Usage\n"]
    for i in range(rows):
        label = i % 7
        usage = ("Training", "PrivateTest", "PublicTest")[(i // 7) % 3] if i < 21 else usages[int(rng.integers(10))]
        img = rng.integers(40, 90, (SIDE, SIDE))
        top = 4 + 6 * label
        img[top : top + 5, 6:42] = rng.integers(190, 250)
        lines.append(f"{label},{' '.join(map(str, img.ravel().tolist()))},{usage}\n")
    from deepvision.fileio import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(lines))
    return path
