"""FER2013 CSV or image-folder release -> HDF5 train/val/test (docs/faces.md), and a fake FER CSV.

The CSV has a header `emotion,pixels,Usage`: an emotion 0-6, 2,304 space-separated pixel values (a
48 x 48 grayscale face) and Training / PrivateTest / PublicTest, which become train.hdf5, val.hdf5
and test.hdf5 (`images` N x 48 x 48, float64 by default like the reference, `labels` int64,
`label_names`). In 6-class mode (the default) disgust is merged into angry and the labels renumbered.

The image-folder release holds the same faces as JPEGs, `train/<emotion>/Training_N.jpg` and
`test/<emotion>/PublicTest_N.jpg` / `PrivateTest_N.jpg`: the name prefix is the CSV's Usage (so the
splits are the reference's, whichever folder a file sits in) and the folder the emotion.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepvision.datasets.fer import FER6_LABELS, FER6_MAP, FER7_LABELS
from deepvision.errors import UserError
from deepvision.fileio import open_regular_text, output_folder
from deepvision.placement import refuse_output_inside, require_new_file
from deepvision.safeload import (
    bounded_lines,
    check_fake_images,
    check_file_size,
    csv_rows,
    is_image_file,
    refuse_linked_files,
    regular_file,
)
from deepvision.safeload.text import printable

SPLITS = {"Training": "train", "PrivateTest": "val", "PublicTest": "test"}
SPLIT_OF_PREFIX = {prefix.lower(): split for prefix, split in SPLITS.items()}  # file names: any case
SIDE = 48
MAX_CSV_BYTES = 2 * 10**9  # the released fer2013.csv (35,887 faces) is 301 MB
# the image-folder release's emotion folders -> the CSV's emotion ids (FER7_LABELS order)
FOLDER_LABELS = {name: i for i, name in enumerate(FER7_LABELS)}
IMAGE_NAME = re.compile(r"^(Training|PrivateTest|PublicTest)_([0-9]+)\.(?:jpe?g|png)$", re.IGNORECASE)
# plain decimal digits only: int() and NumPy also take '2_5_5' (255), '+9' and non-ASCII digits
PIXELS = re.compile(r"[0-9]{1,3}(?:\s+[0-9]{1,3})*", re.ASCII)
EMOTION = re.compile(r"\s*[0-9]{1,9}\s*", re.ASCII)


@dataclass
class FerBuild:
    files: dict[str, Path]
    counts: dict[str, list[int]] = field(default_factory=dict)  # split -> samples per class
    classes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was left out, one line each


def _parse_row(row: dict[str | None, Any], lineno: int, path: Path) -> tuple[int, np.ndarray, str]:
    extra = row.get(None, [])  # csv.DictReader puts the cells past the header under None, fills missing with None
    header = len(row) - (None in row)
    cells = sum(v is not None for k, v in row.items() if k is not None) + len(extra)
    if cells != header:  # a stray comma shifts a row: no cell is dropped or guessed
        raise UserError(f"{path}:{lineno}: {cells} cells under a header of {header}")
    emotion = row.get("emotion")
    if not isinstance(emotion, str) or not EMOTION.fullmatch(emotion) or not 0 <= int(emotion) <= 6:
        raise UserError(f"{path}:{lineno}: emotion must be an integer 0-6, got '{printable(str(emotion)[:20])}'")
    label = int(emotion)
    usage = (row.get("Usage") or "").strip()
    if usage not in SPLITS:
        raise UserError(f"{path}:{lineno}: Usage must be Training, PrivateTest or PublicTest, got {usage!r}")
    text = (row.get("pixels") or "").strip()
    if text and not PIXELS.fullmatch(text):
        bad = next((t for t in text.split() if not (t.isascii() and t.isdigit() and len(t) <= 3)), text)
        raise UserError(f"{path}:{lineno}: pixels must be space-separated integers 0..255 in plain digits, "
                        f"got '{printable(bad[:24])}'")
    pixels = np.array(text.split(), dtype=np.int64)
    if pixels.size != SIDE * SIDE:
        raise UserError(f"{path}:{lineno}: expected {SIDE * SIDE} pixel values in 0..255, got {pixels.size}")
    outside = np.flatnonzero((pixels < 0) | (pixels > 255))
    if outside.size:  # a value, not the count, is wrong: name it and where it stands
        raise UserError(f"{path}:{lineno}: pixel {outside[0] + 1} is {pixels[outside[0]]}, outside 0..255")
    return label, pixels.reshape(SIDE, SIDE).astype(np.uint8), SPLITS[usage]


def _csv_samples(csv_path: Path, notes: list[str]) -> tuple[int, Iterator[tuple[int, np.ndarray, str]]]:
    """(row count, iterator of (emotion 0-6, 48 x 48 uint8 image, split)) of the FER2013 CSV; rows repeating
    an earlier row's face (another split or emotion included) are counted in `notes` once all are read."""
    regular_file(csv_path, "FER2013 CSV")  # a FIFO or device is refused, never waited on
    check_file_size(csv_path, "FER2013 CSV", MAX_CSV_BYTES)
    try:
        with open_regular_text(csv_path) as f:
            total = sum(1 for _ in bounded_lines(f, csv_path)) - 1
    except UnicodeDecodeError:
        raise UserError(f"{csv_path} is not a text CSV file") from None
    except OSError as exc:
        raise UserError(f"FER2013 CSV {csv_path} cannot be read: {exc.strerror or exc}") from None

    def rows() -> Iterator[tuple[int, np.ndarray, str]]:
        with open_regular_text(csv_path) as f:
            reader = csv.DictReader(bounded_lines(f, csv_path))
            try:
                fieldnames = reader.fieldnames
            except csv.Error as exc:
                raise UserError(f"{csv_path}: the CSV header is not readable ({exc})") from None
            missing = {"emotion", "pixels", "Usage"} - set(fieldnames or [])
            if missing:
                raise UserError(f"{csv_path} lacks the column(s) {', '.join(sorted(missing))}; expected the header "
                                f"emotion,pixels,Usage")
            twice = sorted({n for n in fieldnames or [] if (fieldnames or []).count(n) > 1})
            if twice:
                raise UserError(f"{csv_path}: the header names the column(s) {', '.join(map(repr, twice))} twice; "
                                f"expected the header emotion,pixels,Usage")
            seen: dict[bytes, tuple[int, str]] = {}  # pixels -> (emotion, split) of their first row
            repeats = {"in all": 0, "across splits": 0, "under two emotions": 0}
            for lineno, row in enumerate(csv_rows(reader, csv_path), 2):
                label, image, split = _parse_row(row, lineno, csv_path)
                key = hashlib.blake2b(image.tobytes(), digest_size=16).digest()
                if key in seen:
                    repeats["in all"] += 1
                    repeats["across splits"] += seen[key][1] != split
                    repeats["under two emotions"] += seen[key][0] != label
                else:
                    seen[key] = (label, split)
                yield label, image, split
            if repeats["in all"]:  # the Kaggle data repeats faces (docs/data-reliability.md); packed as given
                notes.append(f"{repeats['in all']:,} rows repeat an earlier row's face ("
                             f"{repeats['across splits']:,} in another split, {repeats['under two emotions']:,} "
                             f"under another emotion); packed as given, as the reference did")

    return total, rows()


def _folder_samples(root: Path, notes: list[str]) -> tuple[int, Iterator[tuple[int, np.ndarray, str]]]:
    """The image-folder release: every `Training_N`, `PrivateTest_N` and `PublicTest_N` image under
    ROOT/<part>/<emotion>/ for every part folder (train/ and test/ in the Kaggle release; some copies add
    validation/), in the order split, N, emotion. The name prefix decides the split, not the folder. Files
    with other names (augmented copies, notes) are left out and counted in `notes`; two names of one file
    (a symbolic or hard link) are refused."""
    from deepvision.data.imageio import open_image

    top = root.resolve()

    def within(path: Path) -> Path:
        """`path` once links are followed; refused when that leaves the release (the dataset-root rule)."""
        target = path.resolve()
        if not target.is_relative_to(top):
            raise UserError(f"{path} is a link to {target}, outside the release {root}; copy the file into "
                            f"the release")
        return target

    parts = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
                   and any(e.is_dir() and e.name.lower() in FOLDER_LABELS for e in d.iterdir()))
    tables = sorted(f for f in root.iterdir() if f.suffix.lower() == ".csv" and f.is_file())
    if not parts:
        raise UserError(f"{root} has no folder of emotion folders: give {tables[0] if tables else 'fer2013.csv'} "
                        f"or the image-folder release (train/<emotion>/*.jpg, test/<emotion>/*.jpg)")
    if tables:  # the two releases side by side: reading the images would leave the CSV out without a word
        shown = ", ".join(f"{p.name}/" for p in parts)
        raise UserError(f"{root} holds both {tables[0].name} and the image-folder release ({shown}); "
                        f"give the one to read: the CSV itself ({tables[0]}), or the folder once the CSV is moved out")
    found: list[tuple[str, int, int, Path]] = []
    other: Counter = Counter()
    example = ""
    order = {"train": 0, "val": 1, "test": 2}
    read: dict[Path, Path] = {}  # folders read (links followed) -> as which path: a folder is read once
    for part in parts:
        for folder in sorted(d for d in part.iterdir() if d.is_dir()):
            label = FOLDER_LABELS.get(folder.name.lower())
            if label is None:
                raise UserError(f"{folder}: unknown emotion folder; expected {', '.join(sorted(FOLDER_LABELS))}")
            real = within(folder)
            if real in read:
                notes.append(f"read {read[real]} once; {folder} is the same folder")
                continue
            read[real] = folder
            for file in sorted(folder.iterdir()):
                match = IMAGE_NAME.match(file.name)
                if match is None or not is_image_file(file, folder):  # a FIFO or broken link is named, not counted
                    other[part.name] += 1
                    example = example or str(file)
                    continue
                within(file)
                found.append((SPLIT_OF_PREFIX[match.group(1).lower()], int(match.group(2)), label, file))
    # a link to another face under another number: one image in two classes, or a training face in the test split
    refuse_linked_files((file for *_, file in found), {}, f"the data under {root}")
    if other:
        where = ", ".join(f"{n:,} in {name}/" for name, n in sorted(other.items()))
        notes.append(f"left out {sum(other.values()):,} file(s) not named Training_N, PrivateTest_N or "
                     f"PublicTest_N ({where}), e.g. {example}")
    if not found:
        seen = f"; the {sum(other.values()):,} file(s) there, e.g. {example}, do not name their split" if other else ""
        raise UserError(f"no FER2013 image under {root} (expected train/<emotion>/Training_N.jpg and "
                        f"test/<emotion>/PublicTest_N.jpg or PrivateTest_N.jpg){seen}")
    missing = [prefix for prefix, split in SPLITS.items() if not any(item[0] == split for item in found)]
    if missing:
        raise UserError(f"no {' or '.join(f'{p}_N' for p in missing)} image under {', '.join(str(p) for p in parts)}: "
                        f"part of the release is missing (the reference's splits need Training, PrivateTest and "
                        f"PublicTest)")
    found.sort(key=lambda item: (order[item[0]], item[1], item[2]))
    _refuse_shared_numbers(found, notes)

    def images() -> Iterator[tuple[int, np.ndarray, str]]:
        for split, _, label, file in found:
            image = np.asarray(open_image(file, 1))
            if image.shape != (SIDE, SIDE):
                raise UserError(f"{file} is {image.shape[1]}x{image.shape[0]}; FER2013 faces are {SIDE}x{SIDE}")
            yield label, image, split

    return len(found), images()


def _refuse_shared_numbers(found: list[tuple[str, int, int, Path]], notes: list[str]) -> None:
    """One face, one file: `Training_1.jpg` under two emotions, or beside `Training_01.png`, holding the
    same pixels is one face packed twice or under two labels, and is refused. Files that share a number
    but hold different faces are kept: the Kaggle release itself names two pairs of different faces
    alike (`Training_8475486` under angry and surprise, `Training_52789098` under neutral and surprise)."""
    from deepvision.data.imageio import open_image

    groups: dict[tuple[str, int], list[Path]] = {}
    for split, number, _, file in found:
        groups.setdefault((split, number), []).append(file)
    kept = []
    for files in (g for g in groups.values() if len(g) > 1):
        seen: list[tuple[np.ndarray, Path]] = []
        for file in files:
            pixels = np.asarray(open_image(file, 1))
            same = next((other for image, other in seen if np.array_equal(image, pixels)), None)
            if same is not None:
                prefix, number = IMAGE_NAME.match(file.name).group(1, 2)  # type: ignore[union-attr]
                raise UserError(f"{same} and {file} are both face {prefix}_{int(number)} (the same pixels); "
                                f"one face, one file: keep one of them")
            seen.append((pixels, file))
        kept.append(files[0].stem)
    if kept:
        notes.append(f"kept {len(kept)} face number(s) that name different faces in different files, e.g. "
                     f"{kept[0]}")


def build_fer2013(source: str | Path, out: str | Path, *, classes: int = 6, dtype: str = "float64",
                  progress: Callable[[int, int], None] | None = None) -> FerBuild:
    """Write OUT/train.hdf5, val.hdf5, test.hdf5 from fer2013.csv or from the image-folder release (a
    folder holding train/ and test/); refuses to overwrite existing files, and an --out inside the release."""
    if classes not in (6, 7):
        raise UserError(f"--classes must be 6 (disgust merged into angry) or 7, got {classes}")
    if dtype not in ("float64", "uint8"):
        raise UserError(f"--dtype must be float64 (the reference's) or uint8, got {dtype}")
    source, out = Path(source), Path(out)
    if not source.exists():
        raise UserError(f"FER2013 not found: {source} (give fer2013.csv or the folder holding train/ and test/)")
    if source.is_dir():
        refuse_output_inside(out, source, "the FER2013 release")
    files = {split: out / f"{split}.hdf5" for split in ("train", "val", "test")}
    taken = [str(p) for p in files.values() if p.exists()]
    if taken:
        raise UserError(f"{', '.join(taken)} already exist(s); choose another --out (nothing is overwritten)")
    notes: list[str] = []
    total, samples = _folder_samples(source, notes) if source.is_dir() else _csv_samples(source, notes)
    names = list(FER6_LABELS if classes == 6 else FER7_LABELS)
    counts = {split: [0] * classes for split in files}
    with output_folder(out):  # a build that fails leaves no empty --out folder it made
        _write_splits(source, samples, total, files, counts, names, classes, dtype, progress)
    return FerBuild(files, counts, names, notes)


def _write_splits(source: Path, samples: Iterator[tuple[int, np.ndarray, str]], total: int, files: dict[str, Path],
                  counts: dict[str, list[int]], names: list[str], classes: int, dtype: str,
                  progress: Callable[[int, int], None] | None) -> None:
    """Pack `samples` into the split files; on failure none of them is left behind, and a split that gets no
    face is a failure (training and scoring refuse a file of no rows)."""
    from deepvision.datasets.hdf5 import HDF5DatasetWriter

    writers: dict[str, HDF5DatasetWriter] = {}
    try:  # the writers are made inside: a stop while the second is created removes the first's file
        for split, path in files.items():
            writers[split] = HDF5DatasetWriter(path, (None, SIDE, SIDE), "images", dtype=dtype)
        for done, (label, image, split) in enumerate(samples, 1):
            if classes == 6:
                label = FER6_MAP[label]
            writers[split].add(image[None], [label])
            counts[split][label] += 1
            if progress and (done % 500 == 0 or done == total):
                progress(done, total)
        if missing := [usage for usage, split in SPLITS.items() if not sum(counts[split])]:  # as the folder release
            raise UserError(f"no {' or '.join(missing)} row in {source}, so {files[SPLITS[missing[0]]].name} would "
                            f"hold no row: part of the release is missing (the reference's splits need Training, "
                            f"PrivateTest and PublicTest); nothing written")
        for w in writers.values():
            w.store_class_labels(names)
            w.close()
    except BaseException:
        for w in writers.values():
            w.abort()
        for path in files.values():  # none existed before: remove the splits already renamed into place
            path.unlink(missing_ok=True)
        raise


def make_fake_fer_csv(path: str | Path, rows: int = 140, seed: int = 0) -> Path:
    """A FER2013-format CSV of synthetic 48 x 48 faces whose class is drawn as a learnable pattern
    (a bright bar whose row depends on the emotion); every emotion and every Usage occurs."""
    if rows < 21:
        raise UserError("a fake FER CSV needs at least 21 rows (every emotion in every split)")
    check_fake_images(rows, "--rows")  # every line (8 kB of text) is held until the file is written
    path = Path(path)
    require_new_file(path)
    rng = np.random.default_rng(seed)
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
