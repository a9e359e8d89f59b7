"""Stanford Cars -> make/model list files (docs/transfer.md).

Annotations come from the dataset's MATLAB files, read with scipy.io:

- `cars_annos.mat` (all 16,185 images in `car_ims/`, the layout the reference used): `annotations`
  (relative_im_path, bbox_x1..bbox_y2, class, test) and `class_names`;
- or the devkit: `devkit/cars_meta.mat` (`class_names`), `devkit/cars_train_annos.mat` (images in
  `cars_train/`) and `cars_test_annos_withlabels.mat` (in `devkit/` or the root; images in `cars_test/`).

The official train/test split is ignored (the reference pooled everything). The label is
`"<make>:<model>"` with the year dropped: from a user-supplied CSV with the reference's columns (image
filename, make, model, vehicle type, year; a header row; the basename of the filename is looked up in the
image folder), or parsed from the class name `"<Make> <Model> [<body type>] <Year>"`: the make is the first
word, or the first two for AM General, Aston Martin and Land Rover; the year is the last word; a trailing
body type (Sedan, Coupe, Convertible, SUV, Hatchback, Wagon, Minivan, Van, Cargo Van, Wagon Van, Passenger
Van, and Crew/Extended/Regular/Club/Quad Cab, SuperCab) is dropped, so the years and body styles of one
model share a label. Labels are numbered in sorted order (scikit-learn's LabelEncoder).

Split: validation then test, each `int(0.15 * N)` images computed from the full N, drawn by two
successive stratified splits (seed 42 by default; the reference had none). The mean file holds the fixed
ImageNet constants R 123.68, G 116.779, B 103.939.
"""

from __future__ import annotations

import csv
import filecmp
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from deepvision.data.lst import ListEntry
from deepvision.data.splits import stratified_split
from deepvision.datasets.detection.readers.common import file_problem, inside
from deepvision.datasets.listing import LISTS_MARKER, write_split_lists
from deepvision.errors import UserError
from deepvision.fileio import atomic_write_text, file_id, same_file
from deepvision.placement import refuse_output_over_inputs
from deepvision.safeload import check_class_names, check_mat_file, csv_rows, first_repeat, printable, read_text_file

IMAGENET_MEAN = {"R": 123.68, "G": 116.779, "B": 103.939}
MULTIWORD_MAKES = ("AM General", "Aston Martin", "Land Rover")
BODY_TYPES = ("Crew Cab", "Extended Cab", "Regular Cab", "Club Cab", "Quad Cab", "Cargo Van", "Wagon Van",
              "Passenger Van", "SuperCab", "Sedan", "Coupe", "Convertible", "SUV", "Hatchback", "Wagon", "Minivan",
              "Van")


@dataclass
class CarsLists:
    classes: list[str]  # "make:model", index = label
    train: list[ListEntry]
    val: list[ListEntry]
    test: list[ListEntry]
    files: dict[str, Path] = field(default_factory=dict)


def make_model(class_name: str) -> str:
    """'Chevrolet Silverado 1500 Extended Cab 2012' -> 'Chevrolet:Silverado 1500'."""
    words = class_name.split()
    if len(words) < 2:
        raise UserError(f"class name {class_name!r} is not '<make> <model> <year>'")
    if words[-1].isdigit() and len(words[-1]) == 4:
        words = words[:-1]
    text = " ".join(words)
    make = next((m for m in MULTIWORD_MAKES if text.startswith(m + " ")), words[0])
    model = text[len(make):].strip()
    for body in BODY_TYPES:
        if model.endswith(" " + body):
            model = model[: -len(body) - 1].strip()
            break
    return label_of(make, model or make, f"class name {printable(class_name)!r}")


def label_of(make: str, model: str, where: str) -> str:
    """The label `"<make>:<model>"`, refused (naming `where`) when either part is empty or holds the ':'
    that joins them: make "A:B" with model "C" and make "A" with model "B:C" would be one class, and rows
    without a make and model one class ":"."""
    for what, value in (("make", make), ("model", model)):
        if not value:
            raise UserError(f"{where}: the {what} is empty; every image needs a make and a model (fill it in or "
                            f"remove the row)")
        if ":" in value:
            raise UserError(f"{where}: the {what} {printable(value)!r} holds ':', which joins make and model in a "
                            f"label (make 'A:B' + model 'C' and make 'A' + model 'B:C' would be one class); "
                            f"rename it")
    return f"{make}:{model}"


def _loadmat(path: Path) -> dict:
    import scipy.io
    from scipy.io.matlab import MatReadError

    if not path.exists():
        raise UserError(f"Stanford Cars file missing: {path}")
    check_mat_file(path, what="Stanford Cars file")  # a compressed variable is inflated whole by loadmat
    try:
        return scipy.io.loadmat(path, squeeze_me=True)
    except (MatReadError, ValueError, TypeError, OSError, NotImplementedError) as exc:
        raise UserError(f"cannot read {path} as a MATLAB file ({exc})") from None


def _class_names(mat: dict, path: Path) -> list[str]:
    names = mat.get("class_names")
    if names is None:
        raise UserError(f"{path} has no 'class_names' (found: {', '.join(k for k in mat if not k.startswith('__'))})")
    names = np.atleast_1d(names)
    if names.ndim != 1 or not all(isinstance(n, str) for n in names.tolist()):
        raise UserError(f"{path}: 'class_names' must be a 1 x K cell array of strings, got shape {names.shape}")
    return [str(n) for n in names.tolist()]


def _annotations(mat: dict, path: Path, path_field: str, num_classes: int) -> tuple[list[str], list[int]]:
    ann = mat.get("annotations")
    if ann is None:
        raise UserError(f"{path} has no 'annotations' struct array")
    ann = np.atleast_1d(ann)
    fields = ann.dtype.names or ()
    missing = [f for f in (path_field, "class") if f not in fields]
    if ann.ndim != 1 or missing:
        raise UserError(f"{path}: 'annotations' must be a 1 x N struct array with fields {path_field} and class; "
                        f"got shape {ann.shape} with fields {', '.join(fields) or 'none'}")
    paths, labels = [], []
    for i, row in enumerate(ann):
        where = f"{path}: annotation {i + 1}"
        name = row[path_field]
        if not isinstance(name, str):  # a cell of two paths, or a number, names no one image
            raise UserError(f"{where} has {path_field} {_shown(name)}, not one image path")
        k = _one_number(row["class"], f"{where} has class")
        if not 1 <= k <= num_classes:
            raise UserError(f"{where} has class {k:g}, outside 1..{num_classes}")
        paths.append(name)
        labels.append(int(k) - 1)
    return paths, labels


def _shown(value: object) -> str:
    """A field's value as a message shows it: an array as numpy prints it, text quoted, at most 60 characters."""
    text = str(value) if isinstance(value, np.ndarray) and value.ndim else repr(np.asarray(value).tolist())
    return printable(text if len(text) <= 60 else text[:57] + "...")


def _one_number(value: object, what: str) -> float:
    """The whole number a numeric annotation field holds; UserError (`what` and the value) when it holds
    several or none ([1, 2] is not its first value), text, a logical or a fraction."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise UserError(f"{what} {_shown(value)}, not a number")
    if arr.size != 1:
        raise UserError(f"{what} {_shown(value)}, not one number")
    number = float(arr.reshape(-1)[0])
    if not number.is_integer():
        raise UserError(f"{what} {number:g}, not a whole number")
    return number


def _check_inside(root: Path, paths: list[str], source: Path, seen: dict[object, tuple[Path, int, str]]) -> None:
    """Refuse an image path that leaves the Stanford Cars folder (absolute, '..' above it, or a link out of
    it), as the detection readers do: the lists are packed as they are, so it would pack a file from
    elsewhere. An image named twice (`seen` holds those of the files read before) is refused too."""
    for i, name in enumerate(paths):
        inside(root, name, f"{source}: annotation {i + 1}")
    _refuse_repeats(paths, source, "annotation", seen, root)


def _refuse_repeats(paths: list[str], source: Path, what: str, seen: dict[object, tuple[Path, int, str]],
                    root: Path | None) -> None:
    """UserError when an entry (`what` numbered from 1 in `source`) names the image of an entry met before,
    in this file or in one whose entries `seen` collects: listed twice, it could be trained on and tested on.
    Images are compared as files under `root` (device and inode, links followed), so two names reaching
    one file through a link are one image; by their normalised path where there is no file."""
    entries = (((file_id(root / name) if root is not None else None) or os.path.normpath(name), (source, i, name))
               for i, name in enumerate(paths, 1))
    repeat = first_repeat(entries, seen)
    if repeat is not None:
        (first_source, first_i, first), (_, i, name) = repeat
        at = f"{what} {first_i}" + ("" if first_source == source else f" of {first_source}")
        same = printable(name) if first == name else f"{printable(name)} is {printable(first)}"
        raise UserError(f"{source}: {what} {i} names the image of {at} again ({same}); an image listed twice "
                        f"could be trained on and tested on; remove one of them")


def _test_annotations(root: Path) -> Path | None:
    """devkit/cars_test_annos_withlabels.mat or the one beside devkit/ (where the file is published); one
    in each place is refused unless the two are byte-identical: taking the first would be a guess."""
    found = [p for p in (root / "devkit" / "cars_test_annos_withlabels.mat", root / "cars_test_annos_withlabels.mat")
             if p.exists()]
    if len(found) == 2 and not same_file(*found) and not (
            file_problem(found[0]) is None is file_problem(found[1]) and filecmp.cmp(*found, shallow=False)):
        raise UserError(f"cars_test_annos_withlabels.mat is both in {found[0].parent} and in {root}, and the two "
                        f"files differ; remove or move the wrong one")
    return found[0] if found else None


def read_annotations(root: str | Path) -> tuple[list[str], list[str]]:
    """(image paths relative to root, class names) for every annotated image."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"Stanford Cars root not found: {root}")
    allinone = root / "cars_annos.mat"
    devkit = [root / "devkit" / "cars_meta.mat", root / "devkit" / "cars_train_annos.mat", root / "cars_train",
              root / "cars_test"]
    if allinone.exists() and all(p.exists() for p in devkit) and _test_annotations(root) is not None:
        raise UserError(f"{root} holds two layouts of Stanford Cars: cars_annos.mat with car_ims/, and the devkit "
                        f"(devkit/cars_meta.mat, its train and test annotations, cars_train/, cars_test/); move one "
                        f"of them to a folder of its own and give the folder to read as --root")
    if allinone.exists():  # a FIFO or folder in its place is named as such by _loadmat, never opened
        mat = _loadmat(allinone)
        names = _class_names(mat, allinone)
        meta = root / "devkit" / "cars_meta.mat"  # car_devkit.tgz unpacked beside: its names must be the same
        if meta.exists() and (other := _class_names(_loadmat(meta), meta)) != names:
            i = next((i for i, (a, b) in enumerate(zip(names, other)) if a != b), min(len(names), len(other)))
            how = (f"class {i + 1} is {printable(repr(names[i]))[:60]} in one and {printable(repr(other[i]))[:60]} in "
                   f"the other" if i < min(len(names), len(other)) else f"{len(names)} and {len(other)} classes")
            raise UserError(f"{allinone} and {meta} name the classes differently ({how}); the labels would come from "
                            f"one without a word: remove or move the wrong file")
        paths, labels = _annotations(mat, allinone, "relative_im_path", len(names))
        _check_inside(root, paths, allinone, {})
        return paths, [names[k] for k in labels]
    meta = root / "devkit" / "cars_meta.mat"
    if not meta.exists():
        raise UserError(f"{root} holds neither cars_annos.mat (with car_ims/) nor devkit/cars_meta.mat; point --root "
                        f"at the Stanford Cars folder")
    names = _class_names(_loadmat(meta), meta)
    train = root / "devkit" / "cars_train_annos.mat"
    test = _test_annotations(root)
    out_paths, out_names = [], []
    seen: dict[object, tuple[Path, int, str]] = {}  # across both files: a test image linked to a training one
    for mat_path, folder in ((train, "cars_train"), (test, "cars_test")):
        if mat_path is None:
            raise UserError(f"cars_test_annos_withlabels.mat not found in {root}/devkit or {root}; the test images "
                            f"need their labels")
        paths, labels = _annotations(_loadmat(mat_path), mat_path, "fname", len(names))
        paths = [f"{folder}/{p}" for p in paths]
        _check_inside(root, paths, mat_path, seen)
        out_paths += paths
        out_names += [names[k] for k in labels]
    return out_paths, out_names


def read_label_csv(path: str | Path, images: str, root: str | Path | None = None) -> tuple[list[str], list[str]]:
    """(image paths, 'make:model' labels) from the reference's CSV (filename, make, model, type, year).
    With `root`, the image folder and every image must lie inside it, links followed (as for the .mat
    annotations): the lists are packed as they are, so a path out of it would pack a file from elsewhere."""
    path = Path(path)
    if root is not None:
        _check_image_folder(Path(root), images)
    rows = list(csv_rows(csv.reader(read_text_file(path, "label CSV").splitlines()), path))
    paths, labels = [], []
    for lineno, row in enumerate(rows[1:], 2):
        if not row:
            continue
        if len(row) < 3:
            raise UserError(f"{path}:{lineno}: expected filename, make, model, type, year; got {row}")
        paths.append(f"{images}/{Path(row[0].strip()).name}")
        if root is not None:
            inside(Path(root), paths[-1], f"{path}:{lineno}", advice="")
        labels.append(label_of(row[1].strip(), row[2].strip(), f"{path}:{lineno}"))
    if not paths:
        raise UserError(f"{path} lists no images")
    _refuse_repeats(paths, path, "entry", {}, Path(root) if root is not None else None)
    return paths, labels


def _check_image_folder(root: Path, images: str) -> None:
    """Refuse an --images that is not a folder inside `root` (links followed): the help and the lists'
    relative paths say "under ROOT", so a folder elsewhere would be packed as part of the data set."""
    rel = PurePosixPath(images.replace("\\", "/"))
    folder = root / rel
    if not images or rel.is_absolute() or os.path.normpath(str(rel)).split("/")[0] == ".." \
            or not folder.resolve().is_relative_to(root.resolve()):
        raise UserError(f"--images {images} is not a folder under --root {root}; the images must lie inside the "
                        f"data set")
    if not folder.is_dir():
        raise UserError(f"--images {images}: no such folder under --root {root}")


OUTPUT_FILES = ("train.lst", "val.lst", "test.lst", "labels.txt", "mean.json", LISTS_MARKER)


def _refuse_outputs_over_csv(out: Path, csv_path: Path) -> None:
    """Refuse, before anything is read or written, an --out whose lists, labels.txt or mean.json would
    replace the label CSV (compared by inode, so links and `..` detours are caught)."""
    for name in OUTPUT_FILES:
        try:
            refuse_output_over_inputs(out / name, [csv_path])
        except UserError:
            raise UserError(f"--out {out} would overwrite the input {csv_path} (--csv) with its {name}; choose "
                            f"another folder") from None


def build_cars_lists(root: str | Path, out: str | Path | None = None, *, csv_path: str | Path | None = None,
                     images: str = "car_ims", fraction: float = 0.15, seed: int = 42,
                     absolute: bool = False, check_files: bool = True) -> CarsLists:
    """Read the annotations, split them and (with `out`) write the lists, labels.txt and mean.json."""
    root = Path(root)
    if out is not None and csv_path is not None:
        _refuse_outputs_over_csv(Path(out), Path(csv_path))
    if csv_path is not None:
        paths, labels = read_label_csv(csv_path, images, root)
    else:
        paths, class_names = read_annotations(root)
        labels = [make_model(n) for n in class_names]
    if check_files:
        absent = [p for p in paths if not (root / p).is_file()]
        if absent:
            raise UserError(f"{len(absent)} annotated images are missing under {root} (first: {absent[0]})")
    classes = sorted(set(labels))
    check_class_names(classes, str(csv_path or root))  # the lines of labels.txt, before anything is written
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[c] for c in labels])
    n = len(y)
    count = int(fraction * n)
    if count < 1 or n - 2 * count < 1:
        raise UserError(f"{n} images are too few for validation and test splits of {fraction:g} each")
    rest, val = stratified_split(y, count, seed)
    keep, test = stratified_split(y[rest], count, seed)
    train, test = rest[keep], rest[test]
    prefix = f"{root.resolve()}/" if absolute else ""

    def entries(order: np.ndarray) -> list[ListEntry]:
        return [ListEntry(i, (float(y[j]),), f"{prefix}{paths[j]}") for i, j in enumerate(order)]

    lists = CarsLists(classes, entries(train), entries(val), entries(test))
    if out is not None:
        from deepvision.datasets.mean import write_mean_json


        def labels_and_mean(tmp: Path) -> dict[str, str]:  # with the lists, in one step
            atomic_write_text(tmp / "labels.txt", "".join(f"{c}\n" for c in classes))
            write_mean_json(tmp / "mean.json", IMAGENET_MEAN)
            return {"labels": "labels.txt", "mean": "mean.json"}

        lists.files.update(write_split_lists(Path(out), {n: getattr(lists, n) for n in ("train", "val", "test")},
                                             "cars lists", labels_and_mean))
    return lists
