"""STL-10 airplane/cat subset of tutorial T1 (docs/stl10.md): binaries -> images, lists, records.

Every airplane (native label 1) and cat (4) image of the train and test files is pooled, relabelled
0 = airplane, 1 = cat, and split per class into 70% train, 20% val and 10% test (seeded; from the
full 2,600 images: 910/260/130 per class, 1,820/520/260 in all). Each split's list is shuffled once
with the same seed, so a fixed reading order is not class-sorted. Images are written as PNGs under
OUT/images/<class>/, lists as OUT/{train,val,test}.lst (paths relative to OUT), class names as
OUT/labels.txt, and the records are packed by im2rec resized to 28x28 and converted to grayscale at
packing time, as the tutorial did. `full_size` also packs the 96x96 colour images under OUT/rgb96/.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from deepvision.apps.stl10.binary import SPLITS, find_root, load_split, to_hwc
from deepvision.data.lst import ListEntry
from deepvision.datasets.im2rec import PackOptions, PackResult, pack_list
from deepvision.datasets.listing import write_lst
from deepvision.errors import UserError
from deepvision.fileio import atomic_write_text, input_file, output_folder, output_subfolder
from deepvision.placement import refuse_output_inside, require_own_folder
from deepvision.safeload import name_lines, printable, read_text_file

CLASSES = ("airplane", "cat")
NATIVE = {1: 0, 4: 1}  # STL-10 label -> subset label
FRACTIONS = {"train": 0.7, "val": 0.2, "test": 0.1}
RECORD_SIZE = 28


@dataclass
class Stl10Subset:
    """What `build_stl10` wrote: per-split class counts, list files, records (split -> im2rec result)."""

    out: Path
    counts: dict[str, dict[str, int]]
    lists: dict[str, Path]
    labels: Path
    records: dict[str, PackResult] = field(default_factory=dict)
    full_size: dict[str, PackResult] = field(default_factory=dict)

    def summary(self) -> str:
        """'train 1,820 (airplane 910, cat 910); val ...; test ...'."""
        parts = []
        for split, per_class in self.counts.items():
            inner = ", ".join(f"{c} {n:,}" for c, n in per_class.items())
            parts.append(f"{split} {sum(per_class.values()):,} ({inner})")
        return "; ".join(parts)


def split_counts(n: int) -> dict[str, int]:
    """Per-class split sizes: test round(10%), val round(20%), train the rest (1,300 -> 910/260/130)."""
    test, val = int(round(FRACTIONS["test"] * n)), int(round(FRACTIONS["val"] * n))
    return {"train": n - val - test, "val": val, "test": test}


def build_stl10(
    root: str | Path,
    out: str | Path,
    *,
    seed: int = 42,
    pack: bool = True,
    full_size: bool = False,
    encoding: str = ".png",
    workers: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Stl10Subset:
    """Build the T1 subset from the STL-10 binaries under `root` into `out` (see the module docstring).

    `progress(stage, done, total)` is called while images are written and records packed.
    """
    root, out = find_root(root), Path(out)
    if encoding not in (".png", ".jpg"):
        raise UserError(f"--encoding must be .png or .jpg, got {encoding}")
    require_own_build(out, root)
    check_class_names_file(root)
    pooled: dict[int, list[tuple[str, np.ndarray, int]]] = {0: [], 1: []}  # label -> (source, images, index)
    sources = {}
    for split in SPLITS:
        input_file(root / f"{split}_X.bin", "STL-10 file", "; STL-10 needs train_X.bin, train_y.bin, test_X.bin "
                   "and test_y.bin")  # a FIFO is named as one, not as missing
        images, labels = load_split(root, split)
        sources[split] = images
        for native, label in NATIVE.items():
            pooled[label] += [(split, images, int(i)) for i in np.flatnonzero(labels == native)]
    if not pooled[0] or not pooled[1]:
        raise UserError(f"the STL-10 files under {root} hold no {'airplane' if not pooled[0] else 'cat'} image")
    rng = np.random.default_rng(seed)
    chosen: dict[str, list[tuple[int, str, np.ndarray, int]]] = {s: [] for s in FRACTIONS}
    counts: dict[str, dict[str, int]] = {s: {} for s in FRACTIONS}
    for label, items in pooled.items():
        order = rng.permutation(len(items))
        sizes = split_counts(len(items))
        start = 0
        for split in ("train", "val", "test"):
            part = order[start : start + sizes[split]]
            start += sizes[split]
            chosen[split] += [(label, *items[k]) for k in part]
            counts[split][CLASSES[label]] = len(part)
    empty = [s for s in FRACTIONS if not chosen[s]]
    if empty:  # known before anything is written: no half-built folder
        have = ", ".join(f"{CLASSES[k]} {len(v)}" for k, v in pooled.items())
        raise UserError(f"the STL-10 files under {root} hold too few images for a {empty[0]} split "
                        f"({have}; {', '.join(f'{s} {round(f * 100)}%' for s, f in FRACTIONS.items())} of "
                        f"each class); give files with more airplanes and cats")
    # a build that fails leaves no empty folder it made (--out, images/cat/); a stopped one, nothing it added
    with output_folder(out, discard_on_stop=True):
        for c in CLASSES:
            output_subfolder(out, f"images/{c}")
        total = sum(len(v) for v in chosen.values())
        done = 0
        lists: dict[str, Path] = {}
        for split, items in chosen.items():
            entries = []
            for pos, k in enumerate(rng.permutation(len(items))):
                label, source, images, index = items[k]
                rel = f"images/{CLASSES[label]}/{source}_{index:04d}.png"
                _write_png(out / rel, to_hwc(images[index]))
                entries.append(ListEntry(pos, (float(label),), rel))
                done += 1
                if progress is not None:
                    progress("images", done, total)
            lists[split] = out / f"{split}.lst"
            write_lst(lists[split], entries)
        labels_file = out / "labels.txt"
        atomic_write_text(labels_file, "".join(f"{c}\n" for c in CLASSES))
        result = Stl10Subset(out, counts, lists, labels_file)
        if pack:
            gray = PackOptions(root=str(out), resize=RECORD_SIZE, color=0, encoding=encoding, quality=100)
            result.records = _pack(lists, gray, out, workers, progress, "records 28x28 gray")
        if full_size:
            colour = PackOptions(root=str(out), color=1, encoding=encoding, quality=100)
            result.full_size = _pack(lists, colour, out / "rgb96", workers, progress, "records 96x96 colour")
            atomic_write_text(out / "rgb96" / "labels.txt", "".join(f"{c}\n" for c in CLASSES))
    return result


def check_class_names_file(root: Path) -> None:
    """Refuse a class_names.txt beside the binaries that does not name airplane and cat where the subset
    takes them (labels 1 and 4): the folder's own names say those labels mean other classes."""
    path = root / "class_names.txt"
    if not os.path.lexists(path):
        return
    names = name_lines(read_text_file(path, "STL-10 class_names.txt"))
    for native, name in ((1, "airplane"), (4, "cat")):
        found = names[native - 1] if len(names) >= native else None
        if found != name:
            shown = f"'{printable(found)[:40]}'" if found is not None else "nothing"
            raise UserError(f"{path} names {shown} on line {native}, where STL-10 has {name}: label {native} of "
                            f"these binaries may be another class; give STL-10's own class_names.txt")


def require_own_build(out: Path, root: Path) -> None:
    """Refuse, before anything is read or written, an --out inside the STL-10 binaries' folder `root`, or
    one that is not new, empty or an earlier build (its train.lst and its airplane/cat labels.txt): a run's
    labels.txt or another builder's lists would be replaced."""
    refuse_output_inside(out, root, "the STL-10 folder")
    require_own_folder(out, "train.lst", "0\t", "stl10 build")
    require_own_folder(out, "labels.txt", "".join(f"{c}\n" for c in CLASSES), "stl10 build")


def _write_png(path: Path, rgb: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    try:
        if not ok:
            raise OSError("PNG encoding failed")
        path.write_bytes(buf.tobytes())
    except OSError as exc:
        raise UserError(f"could not write {path}: {exc.strerror or exc}") from None


def _pack(lists: dict[str, Path], options: PackOptions, folder: Path, workers: int | None,
          progress: Callable[[str, int, int], None] | None, stage: str) -> dict[str, PackResult]:
    done: dict[str, PackResult] = {}
    total = sum(len(p.read_text().splitlines()) for p in lists.values())
    offset = 0
    for split, lst in lists.items():
        def report(k: int, n: int, base: int = offset) -> None:
            if progress is not None:
                progress(stage, base + k, total)

        done[split] = pack_list(lst, options, rec=folder / f"{split}.rec", workers=workers, progress=report)
        if done[split].skipped:
            raise UserError(f"{len(done[split].skipped)} image(s) of {lst} could not be packed; reasons in "
                            f"{done[split].skipped_file}")
        offset += done[split].packed
    return done
