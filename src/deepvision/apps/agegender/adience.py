"""Adience fold files -> age and gender list files with per-task means (docs/faces.md).

Only `fold_frontal_{0..4}_data.txt` are read, in any case (the reference read every *.txt of the folder), each
beginning with the Adience header line (HEADER, its columns in order). A row
is kept when its age starts with "(" and its gender is m or f. Age tuples map to the first of the 8
buckets with lo >= lower and hi <= upper ("lower_upper", last "60_inf"); a tuple that fits none is
dropped from the age task only, and counted; an age cell that begins "(" but is no "(a, b)" of whole
numbers is refused. Gender: m -> 0 (male), f -> 1 (female). Age class ids follow the
label encoder's lexicographic order: 0_2, 15_20, 25_32, 38_43, 48_53, 4_6, 60_inf, 8_13.

Each task gets a stratified, seeded test split of int(0.15 N) samples, then a validation split of the
same size from the rest (scikit-learn `train_test_split`, as the reference), and writes
`<out>/<task>/{train,val,test}.lst` (`index<TAB>label<TAB>path`, the order im2rec reads), `labels.txt` and
`mean.json` (mean R, G, B of its own training images).
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepvision.data.lst import ListEntry
from deepvision.data.splits import stratified_split
from deepvision.datasets.listing import (
    LISTS_MARKER,
    require_own_lists_folder,
    write_lists_marker,
    write_lst,
)
from deepvision.errors import UserError
from deepvision.fileio import atomic_write_text, file_id, output_subfolder, written_whole
from deepvision.placement import new_output_folder
from deepvision.safeload import (
    MAX_FAKE_IMAGES,
    MAX_FAKE_SIDE,
    by_name_any_case,
    check_range,
    is_control,
    printable,
    read_text_file,
)

AGE_BINS = ((0, 2), (4, 6), (8, 13), (15, 20), (25, 32), (38, 43), (48, 53), (60, math.inf))
AGE_CLASSES = sorted(f"{lo}_{'inf' if math.isinf(hi) else hi}" for lo, hi in AGE_BINS)  # label-encoder order
GENDER_CLASSES = ["male", "female"]
GENDERS = {"m": 0, "f": 1}
FOLD_GLOB = "fold_frontal_*_data.txt"
HEADER = ["user_id", "original_image", "face_id", "age", "gender", "x", "y", "dx", "dy", "tilt_ang",
          "fiducial_yaw_angle", "fiducial_score"]
_TUPLE = re.compile(r"^\(\s*(\d+)\s*,\s*(\d+)\s*\)$", re.ASCII)  # \d alone matches other scripts' digits


def age_bucket(age: str) -> str | None:
    """'(38, 42)' -> '38_43'; '(60, 100)' -> '60_inf'; a tuple that fits no bucket ('(8, 23)') or whose
    upper bound is below its lower one ('(100, 0)') -> None."""
    m = _TUPLE.match(age.strip())
    if not m or int(m[1]) > int(m[2]):
        return None
    lo, hi = int(m[1]), int(m[2])
    for lower, upper in AGE_BINS:
        if lo >= lower and hi <= upper:
            return f"{lower}_{'inf' if math.isinf(upper) else upper}"
    return None


def display_label(name: str) -> str:
    """Class names as the deployment shows them: '25_32' -> '25-32', '60_inf' -> '60+', 'male' -> 'Male'."""
    lo, sep, hi = name.partition("_")
    if sep and lo.isdigit():
        return f"{lo}+" if hi == "inf" else f"{lo}-{hi}"
    return name.capitalize()


def check_header(path: Path, line: str) -> None:
    """UserError unless `line` (the first of the fold file `path`) is the Adience header, its columns in
    order: a file cut or joined by hand would otherwise lose its first row, and columns in another order
    would be read as the wrong fields."""
    if [c.strip() for c in line.strip().split("\t")] != HEADER:
        got = printable(repr(line[:80])) if line.strip() else "nothing"
        raise UserError(f"{path}:1: expected the Adience header ({', '.join(HEADER)}; tab-separated), got {got}; "
                        f"restore the fold file's header line")


@dataclass
class AdienceRows:
    paths: list[str] = field(default_factory=list)  # relative to the Adience root
    ages: list[str | None] = field(default_factory=list)  # bucket name or None (no bucket fits)
    genders: list[int] = field(default_factory=list)
    skipped: int = 0  # rows dropped by the row filter


def read_folds(root: str | Path) -> AdienceRows:
    """Every usable row of the fold files under `root` (in file, then line order)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"Adience folder not found: {root}")
    # Fold_Frontal_0_data.txt is fold 0 too (left out, its faces were in no list); two spellings are refused
    folds = by_name_any_case(root.iterdir(), lambda p: p.name.casefold() if fnmatch.fnmatchcase(
        p.name.casefold(), FOLD_GLOB) else None, "fold file")
    files = [folds[k] for k in sorted(folds)]
    if not files:
        raise UserError(f"no {FOLD_GLOB} file in {root}; give the folder holding the Adience fold files")
    rows = AdienceRows()
    missing: list[str] = []
    seen: dict[object, tuple[str, str]] = {}  # a face listed twice could land in train and in test
    top = root.resolve()
    for path in files:
        lines = read_text_file(path, "Adience fold file").splitlines()  # a FIFO is refused, never waited on
        check_header(path, lines[0] if lines else "")
        for lineno, line in enumerate(lines[1:], 2):
            if not line.strip():
                continue
            cols = line.split("\t")
            if len(cols) < 5:
                raise UserError(f"{path}:{lineno}: expected tab-separated columns {', '.join(HEADER[:5])}, ...")
            user, image, face, age, gender = (c.strip() for c in cols[:5])
            if age.startswith("(") and not _TUPLE.match(age):  # damaged, not a row the filter drops
                raise UserError(f"{path}:{lineno}: age {printable(repr(age[:40]))} is not an Adience age range "
                                f"'(a, b)' of whole numbers; correct the row")
            if not age.startswith("(") or gender not in GENDERS:
                rows.skipped += 1
                continue
            for name, value in (("user_id", user), ("original_image", image), ("face_id", face)):
                if not value or value in (".", "..") or any(c in "/\\" or is_control(c) for c in value):
                    raise UserError(f"{path}:{lineno}: {name} {printable(repr(value))} is not a plain name; the "
                                    f"rows name files under aligned/<user_id>/ of the dataset, never a path")
            rel = f"aligned/{user}/landmark_aligned_face.{face}.{image}"
            here = f"{path.name}:{lineno}"
            # compared as files, so a user folder linked to another's cannot list one face under two names
            where, first = seen.setdefault(file_id(root / rel) or rel, (here, rel))
            if where != here:
                same = rel if first == rel else f"{rel} is {first}"
                raise UserError(f"{here} names the face of {where} again ({same}); a face listed "
                                f"twice could be trained on and tested on; remove one of the rows")
            target = (root / rel).resolve()  # a link under aligned/ never leads out of the dataset
            if not target.is_relative_to(top):
                raise UserError(f"{here}: {rel} leads to {target}, outside the Adience folder "
                                f"{root}; copy the faces into it")
            if not (root / rel).is_file():
                missing.append(f"{path.name}:{lineno} names {rel}")
            rows.paths.append(rel)
            rows.ages.append(age_bucket(age))
            rows.genders.append(GENDERS[gender])
    if missing:  # a list entry without its image would be skipped by im2rec and left out of the mean unsaid
        raise UserError(f"{len(missing):,} face image(s) of the fold files are missing under {root} (first: "
                        f"{missing[0]}); restore them or remove their rows")
    return rows


@dataclass
class TaskLists:
    task: str
    classes: list[str]
    train: list[ListEntry]
    val: list[ListEntry]
    test: list[ListEntry]
    files: dict[str, Path] = field(default_factory=dict)
    left_out: str = ""  # the fold rows this task does not use, counted, for the summary

    @property
    def total(self) -> int:
        return len(self.train) + len(self.val) + len(self.test)


def split_task(task: str, paths: list[str], labels: list[int], classes: list[str], seed: int = 42,
               fraction: float = 0.15, prefix: str = "") -> TaskLists:
    """Stratified test split of int(fraction N), then a val split of the same size from the rest."""
    y = np.asarray(labels)
    n_hold = int(fraction * len(y))
    if n_hold < 1 or len(y) - 2 * n_hold < 1:
        raise UserError(f"{task}: {len(y)} usable faces are too few for train/val/test splits")
    keep, test = stratified_split(y, n_hold, seed)
    train_part, val_part = stratified_split(y[keep], n_hold, seed)
    train, val = keep[train_part], keep[val_part]

    def entries(order: np.ndarray) -> list[ListEntry]:
        return [ListEntry(i, (float(y[j]),), f"{prefix}{paths[j]}") for i, j in enumerate(order.tolist())]

    return TaskLists(task, classes, entries(train), entries(val), entries(test))


def build_adience_lists(root: str | Path, out: str | Path | None = None, *, seed: int = 42, absolute: bool = False,
                        fraction: float = 0.15,
                        beside: Callable[[Path, dict[str, TaskLists]], object] | None = None) -> dict[str, TaskLists]:
    """Age and gender lists from the fold files under `root`; written under `out/age`, `out/gender` when given,
    with what `beside(folder, tasks)` writes into the folder of lists (the means) in the same step."""
    root = Path(root)
    rows = read_folds(root)
    prefix = f"{root.resolve()}/" if absolute else ""
    age_idx = [i for i, a in enumerate(rows.ages) if a is not None]
    tasks = {
        "age": split_task("age", [rows.paths[i] for i in age_idx], [AGE_CLASSES.index(rows.ages[i]) for i in age_idx],
                          AGE_CLASSES, seed, fraction, prefix),
        "gender": split_task("gender", rows.paths, rows.genders, GENDER_CLASSES, seed, fraction, prefix),
    }
    filtered = f"{rows.skipped:,} row(s) without an age range or an m/f gender" if rows.skipped else ""
    no_bucket = len(rows.ages) - len(age_idx)
    tasks["gender"].left_out = filtered
    tasks["age"].left_out = "; ".join(x for x in (filtered, f"{no_bucket:,} age range(s) fitting no bucket"
                                                  if no_bucket else "") if x)
    if out is None:
        return tasks
    require_own_lists_folder(out, "adience lists")  # a run's folder or another builder's lists are left alone
    # the lists land together, the marker last: a failure or a stop leaves the folder as it was; an earlier
    # run's means go unless `beside` wrote new ones
    with written_whole(out, last=LISTS_MARKER, stale=[f"{name}/mean.json" for name in tasks]) as tmp:
        for name, lists in tasks.items():
            folder = output_subfolder(tmp, name)
            for split in ("train", "val", "test"):
                write_lst(folder / f"{split}.lst", getattr(lists, split))
                lists.files[split] = Path(out) / name / f"{split}.lst"
            atomic_write_text(folder / "labels.txt", "".join(f"{c}\n" for c in lists.classes))
            lists.files["labels"] = Path(out) / name / "labels.txt"
        if beside is not None:
            beside(tmp, tasks)
        write_lists_marker(tmp, "adience lists")
    return tasks


# -- a fake Adience tree for tests ---------------------------------------------------------------------
FAKE_AGES = ["(0, 2)", "(4, 6)", "(8, 12)", "(15, 20)", "(25, 32)", "(38, 42)", "(48, 53)", "(60, 100)", "(27, 32)"]
FAKE_BAD = [("None", "m"), ("35", "f"), ("(25, 32)", "u"), ("(25, 32)", "")]  # dropped for both tasks
FAKE_NO_BUCKET = "(8, 23)"  # dropped for age only


def make_fake_adience(out: str | Path, faces: int = 80, seed: int = 0, size: int = 64) -> Path:
    """A miniature Adience folder: 5 fold files (with header and rows the filter drops) and aligned JPEGs.

    Face i has age FAKE_AGES[i % 9] and gender m/f alternating; every 10th face also gets a row that
    fits no age bucket; FAKE_BAD rows (4 per fold) are dropped for both tasks. Image colours encode the
    age bucket (hue) and gender (a stripe), so tiny networks can learn them. An extra README.txt checks
    that only the fold files are read.
    """
    from PIL import Image

    if isinstance(faces, int) and faces < 20:
        raise UserError("a fake Adience set needs at least 20 faces")
    check_range("--faces", faces, 20, MAX_FAKE_IMAGES)
    check_range("--size", size, 8, MAX_FAKE_SIDE)
    # a generator never replaces files it did not make (a real Adience's fold files); a stopped one leaves nothing
    with new_output_folder(out):
        rng = np.random.default_rng(seed)
        root = Path(out)
        folds: list[list[str]] = [[] for _ in range(5)]
        for i in range(faces):
            age = FAKE_NO_BUCKET if i % 10 == 9 else FAKE_AGES[i % len(FAKE_AGES)]
            gender = "mf"[i % 2]
            user, image, face_id = f"{1000 + i // 4:04d}@N00", f"{1000000 + i}_{seed}.jpg", str(i + 1)
            folder = output_subfolder(root, f"aligned/{user}")
            bucket = age_bucket(age)
            k = AGE_CLASSES.index(bucket) if bucket else 0
            img = np.zeros((size, size, 3), np.float32)
            img[:] = (30 * k, 255 - 30 * k, 120)
            if gender == "f":
                img[:, : size // 3] = 240
            img += rng.normal(0, 10, img.shape)
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
                folder / f"landmark_aligned_face.{face_id}.{image}", quality=92)
            folds[i % 5].append("\t".join([user, image, face_id, age, gender, "0", "0", "100", "100", "0", "0", "50"]))
        for k, lines in enumerate(folds):
            bad = ["\t".join(["9999@N00", "x.jpg", "1", age, gender, "0", "0", "1", "1", "0", "0", "1"])
                   for age, gender in FAKE_BAD]
            (root / f"fold_frontal_{k}_data.txt").write_text("\t".join(HEADER) + "\n" + "\n".join(lines + bad) + "\n")
        (root / "README.txt").write_text("not a fold file\n")
        return root


def write_task_means(tasks: dict[str, TaskLists], root: str | Path | None, workers: int | None = None,
                     progress=None, folder: str | Path | None = None) -> dict[str, Path]:
    """mean.json beside each task's lists: the mean R, G, B of that task's training images. `folder`: where the
    lists are being written (`build_adience_lists`'s `beside`), by default where they lie; returns where each
    mean was written."""
    from deepvision.datasets.mean import compute_mean, write_mean_json

    written = {}
    for name, lists in tasks.items():
        train = lists.files.get("train")
        if train is None:
            raise UserError("write the lists (give an output folder) before computing their means")
        here = train.parent if folder is None else Path(folder) / name
        result = compute_mean(here / "train.lst", root=root, workers=workers,
                              progress=(lambda d, t, n=name: progress(n, d, t)) if progress else None)
        written[name] = write_mean_json(here / "mean.json", result)
        lists.files["mean"] = train.parent / "mean.json"
    return written
