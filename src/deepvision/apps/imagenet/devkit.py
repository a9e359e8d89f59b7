"""Read the ILSVRC devkit and write train/val/test list files.

Labels are `map_clsloc` id - 1, in map_clsloc order (not sorted-WNID order). Validation labels are
the ground-truth id - 1; blacklisted validation images are dropped (ids compared as numbers, so
`007` is image 7); an image or id that val.txt names twice is refused, and so is one image file that two
entries of the lists reach (a link in train/ to a validation image), compared as files. The test split is carved from
train: stratified by label, seeded, shuffled (scikit-learn `train_test_split` semantics); train and
test lists come out in random order, val keeps val.txt order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepvision.data.lst import MAX_LIST_BYTES, ListEntry
from deepvision.data.splits import stratified_split
from deepvision.datasets.listing import write_split_lists
from deepvision.errors import UserError
from deepvision.fileio import atomic_write_text, input_file
from deepvision.safeload import (
    by_name_any_case,
    check_class_names,
    is_control,
    printable,
    read_text_file,
    refuse_linked_files,
)


@dataclass(frozen=True)
class DevkitPaths:
    """Where each devkit file lives under an ILSVRC root (the reference's layout)."""

    root: Path

    @property
    def images(self) -> Path:
        return self.root / "Data" / "CLS-LOC"

    @property
    def map_clsloc(self) -> Path:
        return self.root / "devkit" / "data" / "map_clsloc.txt"

    @property
    def train_cls(self) -> Path:
        return self.root / "ImageSets" / "CLS-LOC" / "train_cls.txt"

    @property
    def val(self) -> Path:
        return self.root / "ImageSets" / "CLS-LOC" / "val.txt"

    @property
    def val_ground_truth(self) -> Path:
        return self.root / "devkit" / "data" / "ILSVRC2015_clsloc_validation_ground_truth.txt"

    @property
    def val_blacklist(self) -> Path:
        return self.root / "devkit" / "data" / "ILSVRC2015_clsloc_validation_blacklist.txt"


@dataclass
class ImagenetLists:
    """Entries of the three lists plus the class table; paths are relative to `Data/CLS-LOC`."""

    classes: list[tuple[str, str]]  # (wnid, human name), index = label
    train: list[ListEntry]
    val: list[ListEntry]
    test: list[ListEntry]
    blacklisted: int = 0
    files: dict[str, Path] = field(default_factory=dict)


def _lines(path: Path) -> list[str]:
    """The non-empty lines of a devkit text file, read bounded as a list file is (train_cls.txt lists 1.28
    million images in about 40 MB): missing, a FIFO, too large or not UTF-8 is one line naming it."""
    text = read_text_file(path, "devkit file", MAX_LIST_BYTES)
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_map_clsloc(path: Path) -> list[tuple[str, str]]:
    """[(wnid, name)] in map order; ids must run 1..N in order."""
    classes, lines_of = [], {}
    for lineno, line in enumerate(_lines(path), 1):
        parts = line.split()
        if len(parts) < 3 or not (parts[1].isascii() and parts[1].isdigit()):
            raise UserError(f"{path}:{lineno}: expected '<wnid> <id> <name>', got {line[:60]!r}")
        if int(parts[1]) != lineno:
            raise UserError(f"{path}:{lineno}: class ids must run 1, 2, 3 ... in order; found {parts[1]}")
        first = lines_of.setdefault(parts[0], lineno)
        if first != lineno:  # train_cls.txt's images of that wnid could only take one of the two ids
            raise UserError(f"{path}:{lineno}: wnid {printable(parts[0])} is named again (first on line {first})")
        classes.append((parts[0], " ".join(parts[2:])))
    if not classes:
        raise UserError(f"{path} lists no classes")
    check_class_names([f"{wnid} {name}" for wnid, name in classes], str(path))  # the lines of labels.txt
    return classes


def _plain_name(name: str) -> bool:
    """Whether `name` is one file name: no folder part (`/`, `\\`), not `.` or `..`, no control character."""
    return bool(name) and name not in (".", "..") and not any(c in "/\\" or is_control(c) for c in name)


def read_train_cls(path: Path, index: dict[str, int]) -> tuple[list[str], list[int]]:
    """Train image stems and labels; the label comes from the stem's WNID directory."""
    stems, labels, seen = [], [], {}
    for lineno, line in enumerate(_lines(path), 1):
        stem = line.split()[0]
        wnid, _, name = stem.partition("/")
        if wnid not in index or not _plain_name(name):
            raise UserError(f"{path}:{lineno}: '{printable(stem)}' is not '<wnid>/<image>' with a wnid of "
                            f"map_clsloc.txt and a plain image name")
        if seen.setdefault(stem, lineno) != lineno:  # listed twice, it could land in train and in test
            raise UserError(f"{path}:{lineno}: '{printable(stem)}' is listed again (first on line {seen[stem]}); "
                            f"remove one of the lines")
        stems.append(stem)
        labels.append(index[wnid])
    return stems, labels


def _number(text: str) -> bool:
    """Whether `text` is a whole number written in ASCII digits (leading zeros allowed)."""
    return text.isascii() and text.isdigit()


def _blacklist(path: Path, count: int) -> set[int]:
    """The validation image numbers of the blacklist, compared as numbers (`007` is image 7); each must be
    one of the `count` images, or the blacklist is another devkit's and would drop the wrong ones."""
    hint = " (pass --no-blacklist to keep every validation image)"
    input_file(path, "devkit file", hint)  # missing, or a FIFO named as one
    banned = set()
    for entry in _lines(path):
        if not (_number(entry) and 1 <= int(entry) <= count):
            raise UserError(f"{path}: {printable(entry)[:30]} is not a validation image number (1..{count:,}); "
                            f"use the blacklist of this devkit")
        banned.add(int(entry))
    return banned


def read_val(paths: DevkitPaths, num_classes: int, blacklist: bool = True) -> tuple[list[str], list[int], int]:
    """Validation stems and labels in val.txt order, blacklisted ids removed (unless blacklist=False)."""
    val_lines = _lines(paths.val)
    truth = _lines(paths.val_ground_truth)
    if len(truth) != len(val_lines):
        raise UserError(f"{paths.val_ground_truth} has {len(truth)} lines but {paths.val} has {len(val_lines)}; "
                        f"they must align line by line")
    banned = _blacklist(paths.val_blacklist, len(val_lines)) if blacklist else set()
    stems, labels, dropped = [], [], 0
    first: dict[tuple[str, str], tuple[int, int]] = {}  # ("image", stem) or ("id", n) -> its first (line, label)
    for lineno, (line, gt) in enumerate(zip(val_lines, truth), 1):
        parts = line.split()
        if len(parts) != 2 or not _number(parts[1]):
            raise UserError(f"{paths.val}:{lineno}: expected '<image> <id>', got {printable(line[:60])!r}")
        if not _number(gt):  # int() also reads '1_0', '+9' and other scripts' digits
            raise UserError(f"{paths.val_ground_truth}:{lineno}: expected a class id in plain digits, got "
                            f"{printable(gt[:30])!r}")
        label = int(gt) - 1
        if not 0 <= label < num_classes:
            raise UserError(f"{paths.val_ground_truth}:{lineno}: class id {gt} outside 1..{num_classes}")
        if not _plain_name(parts[0]):  # a folder part would lead out of the validation folder
            raise UserError(f"{paths.val}:{lineno}: '{printable(parts[0])}' is not a plain image name (such as "
                            f"ILSVRC2012_val_00000001); the validation images lie in one folder")
        number = int(parts[1])
        for key in (("image", parts[0]), ("id", str(number))):
            was, was_label = first.setdefault(key, (lineno, label))
            if was != lineno:  # one image counted twice, perhaps under two classes; one id naming two images
                classes = f" (class {was_label + 1} there, {label + 1} here)" if was_label != label else ""
                raise UserError(f"{paths.val}:{lineno} names the {key[0]} {printable(key[1])} again, first "
                                f"on line {was}{classes}; remove one of the lines (and its ground-truth line)")
        if number in banned:
            dropped += 1
            continue
        stems.append(parts[0])
        labels.append(label)
    return stems, labels, dropped


def _image_exts(folder: Path, stems: list[str], ext: str, listing: Path) -> list[str]:
    """Each stem's extension as its image under `folder` spells it: `ext`, or `ext` in another case (`.jpeg`
    for `.JPEG`, as photos' extensions are matched elsewhere); a missing image is refused, naming the first
    and the count (a list naming a file that is not there would fail only later, in packing or training)."""
    found: dict[Path, dict[str, Path]] = {}  # each image folder, listed once
    tail = ext.casefold()
    key = lambda p: p.name[:len(p.name) - len(ext)] + tail if p.name.casefold().endswith(tail) else None
    exts, missing = [], []
    for stem in stems:
        path = folder / f"{stem}{ext}"
        if path.parent not in found:
            found[path.parent] = by_name_any_case(path.parent.iterdir(), key, "image") if path.parent.is_dir() else {}
        real = found[path.parent].get(key(path) or "")
        if real is None or not real.is_file():
            missing.append(path)
        exts.append(real.name[len(real.name) - len(ext):] if real is not None else ext)
    if missing:
        raise UserError(f"{len(missing):,} image(s) that {listing} lists are missing (first: {missing[0]}); restore "
                        f"them, or point --root at the complete ILSVRC folder")
    return exts


def build_lists(root: str | Path, out: str | Path | None = None, *, test_size: int | None = None,
                test_per_class: int = 50, seed: int = 42, ext: str = ".JPEG", absolute: bool = False,
                blacklist: bool = True, beside: Callable[[Path], dict[str, str]] | None = None) -> ImagenetLists:
    """Parse the devkit under `root` and (when `out` is given) write train/val/test.lst and labels.txt, with
    what `beside` writes (the mean: see `write_split_lists`) in the same step.

    `test_size` defaults to `test_per_class` x classes (50,000 for ILSVRC's 1,000 classes).
    """
    paths = DevkitPaths(Path(root))
    if not paths.root.is_dir():
        raise UserError(f"ILSVRC root not found: {paths.root}")
    classes = read_map_clsloc(paths.map_clsloc)
    index = {wnid: i for i, (wnid, _) in enumerate(classes)}
    train_stems, train_labels = read_train_cls(paths.train_cls, index)
    val_stems, val_labels, dropped = read_val(paths, len(classes), blacklist)
    if not val_stems:  # every builder refuses a split its skips leave empty
        raise UserError(f"no validation image is left: the blacklist {paths.val_blacklist} drops all {dropped:,} that "
                        f"{paths.val} lists; give the devkit's own blacklist, or --no-blacklist" if dropped else
                        f"{paths.val} lists no validation image; give the devkit's own")
    train_exts = _image_exts(paths.images / "train", train_stems, ext, paths.train_cls)
    val_exts = _image_exts(paths.images / "val", val_stems, ext, paths.val)
    listed = [paths.images / "train" / f"{stem}{e}" for stem, e in zip(train_stems, train_exts)]
    listed += [paths.images / "val" / f"{stem}{e}" for stem, e in zip(val_stems, val_exts)]
    refuse_linked_files(listed, {}, "the train, val and test lists")  # one image under two labels, in two splits
    size = test_size if test_size is not None else test_per_class * len(classes)
    if size >= len(train_stems):
        raise UserError(f"a test split of {size} images leaves nothing to train on ({len(train_stems)} training "
                        f"images); choose a smaller --test-size")
    keep, held = stratified_split(np.asarray(train_labels), size, seed) if size else (np.arange(len(train_stems)), [])
    kept = np.bincount(np.asarray(train_labels, dtype=np.int64)[keep], minlength=len(classes))
    if not kept.all():  # training refuses a class with no sample: say so where the lists are made
        k = int(np.flatnonzero(kept == 0)[0])
        why = "the test split takes all its images" if k in train_labels else f"{paths.train_cls} lists no image of it"
        raise UserError(f"class {printable(classes[k][0])} ({printable(classes[k][1])}) in {paths.map_clsloc} would "
                        f"have no training image: {why}; give it images, or remove it from the class map")
    prefix = str(paths.images) + "/" if absolute else ""

    def entries(stems: list[str], exts: list[str], labels: list[int], order, folder: str) -> list[ListEntry]:
        return [ListEntry(i, (float(labels[j]),), f"{prefix}{folder}/{stems[j]}{exts[j]}") for i, j in enumerate(order)]

    lists = ImagenetLists(classes, entries(train_stems, train_exts, train_labels, keep, "train"),
                          entries(val_stems, val_exts, val_labels, range(len(val_stems)), "val"),
                          entries(train_stems, train_exts, train_labels, held, "train"), dropped)
    if out is not None:

        def labels_and_more(tmp: Path) -> dict[str, str]:
            atomic_write_text(tmp / "labels.txt", "".join(f"{wnid} {name}\n" for wnid, name in classes))
            return {"labels": "labels.txt", **(beside(tmp) if beside else {})}

        lists.files.update(write_split_lists(Path(out), {n: getattr(lists, n) for n in ("train", "val", "test")},
                                             "imagenet lists", labels_and_more))
    return lists
