"""Built-in data sources: scikit-learn digits, MNIST (idx and text), image folders, list files, MXNet
record files (`rec`) and HDF5 image files (`hdf5`).

    data:
      source: rec
      train: data/imagenet_train.rec     # PREFIX.idx beside it, or rebuilt by scanning
      val: data/imagenet_val.rec
      mean: data/imagenet_mean.json
      options: {labels: data/labels.txt}  # class names; default: the PREFIX.labels.txt im2rec wrote, else numbers

Record splits are `RecordDataset`s whose `make_loader` builds the fast `RecordLoader`; record options
(`data.options`): `labels`, `idx` (split name -> .idx path), `decoder` (auto | simplejpeg | cv2 |
nvjpeg: batches decoded and augmented on the GPU), `memory_format` (channels_last | contiguous),
`prefetch` (batches per worker). `hdf5` reads files written by `datasets.hdf5.HDF5DatasetWriter`
(images N x H x W [x C], labels, label_names) into memory as uint8 tensors; `data.options.data_key`
names the image dataset (default: images).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from deepvision import safeload
from deepvision.config.schema import MAX_CLASSES, DataConfig
from deepvision.data import mnist
from deepvision.data.lst import labels_files, read_lst
from deepvision.data.preprocess import open_image
from deepvision.data.source_registry import RawData, register_source, resolve_path
from deepvision.data.tensors import SubsetDataset, TensorSplit, to_tensor_split
from deepvision.errors import UserError
from deepvision.safeload import IMAGE_EXTS, check_class_names, image_files, input_file, name_lines, printable


def digits_images(size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 handwritten digits as uint8 `size` x `size` images (ink = 255)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    small = np.round(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    big = small if size == 8 else np.stack([np.asarray(Image.fromarray(im, "L").resize((size, size), Image.BILINEAR))
                                            for im in small])
    return big, d.target.astype(np.int64)


@register_source("digits", options=("size",))
def digits_source(cfg: DataConfig, wanted: list[str]) -> RawData:
    """The embedded default: one split named 'all' (or 'train'); carve val/test with fractions."""
    size = cfg.options.get("size", 28)
    if not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= 512:
        raise UserError(f"data.options.size must be an integer from 8 to 512, got {size!r}")
    images, labels = digits_images(size)
    split = to_tensor_split(images, labels)
    return RawData({"all": split, "train": split}, [str(i) for i in range(10)], 1, (size, size))


@register_source("synthetic", options=("samples", "classes", "size", "channels", "seed"))
def synthetic_source(cfg: DataConfig, wanted: list[str]) -> RawData:
    """Random uint8 images (benchmarks, smoke tests): `options` samples (default 1024), classes (10),
    size (224), channels (3), seed (0). Every requested split name gets its own random tensor."""
    opts = {"samples": 1024, "classes": 10, "size": 224, "channels": 3, "seed": 0, **cfg.options}
    limits = {"samples": 10**9, "classes": MAX_CLASSES, "size": safeload.MAX_FAKE_SIDE, "seed": 2**32 - 1}
    for key, top in limits.items():  # bounded before anything is allocated (classes 1e10 built 1e10 names)
        safeload.check_range(f"data.options.{key}", opts[key], int(key != "seed"), top)
    safeload.check_choice("data.options.channels", opts["channels"], (1, 3))
    safeload.check_declared_bytes("data.options of the synthetic source (samples x channels x size x size per "
                                  "split)", len(wanted) * opts["samples"] * opts["channels"] * opts["size"] ** 2)
    splits = {}
    for k, name in enumerate(wanted):
        g = torch.Generator().manual_seed(opts["seed"] + k)
        shape = (opts["samples"], opts["channels"], opts["size"], opts["size"])
        images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
        labels = torch.randint(0, opts["classes"], (opts["samples"],), generator=g)
        splits[name] = TensorSplit(images, labels)
    side = opts["size"]
    return RawData(splits, [str(i) for i in range(opts["classes"])], opts["channels"], (side, side))


@register_source("mnist", options=("download",))
def mnist_source(cfg: DataConfig, wanted: list[str]) -> RawData:
    """MNIST idx files in `data.root` (plain or .gz). Splits: train, test (either may be absent)."""
    if not cfg.root:
        raise UserError("data.root is not set: give the folder holding the MNIST idx files with --data-root DIR "
                        "(or --set data.root=DIR); fetch them with `deepvision data download mnist --root DIR`")
    root = Path(cfg.root)
    if not root.is_dir():
        raise UserError(f"MNIST folder not found: {root} (set data.root, or fetch the files with "
                        f"`deepvision data download mnist --root {safeload.shell_word(root)}`)")
    if cfg.options.get("download"):  # training reads files; fetching them is a step of its own
        raise UserError(f"data.options.download is not a training option; fetch MNIST first with "
                        f"`deepvision data download mnist --root {safeload.shell_word(root)}`")
    present = set(mnist.available_splits(root))
    splits = {}
    for name in wanted:
        canonical = mnist.ALIASES.get(name, name)
        if canonical not in mnist.FILES:
            raise UserError(f"unknown MNIST split '{name}'; valid: train, test")
        if canonical in present:
            splits[name] = to_tensor_split(*mnist.load_mnist_split(root, canonical))
        elif name != "test":
            mnist.load_mnist_split(root, canonical)  # raises the precise missing-file error
    sizes = {name: tuple(split.images.shape[-2:]) for name, split in splits.items()}  # as the headers declare
    if len(set(sizes.values())) > 1:
        raise UserError(f"the idx files in {root} hold images of different sizes ("
                        f"{', '.join(f'{n} {h}x{w}' for n, (h, w) in sizes.items())}); every split must have one size")
    return RawData(splits, mnist.CLASSES, 1, next(iter(sizes.values()), (28, 28)))


@register_source("mnist_text", options=())
def mnist_text_source(cfg: DataConfig, wanted: list[str]) -> RawData:
    """The tutorial text format. Split names are file paths (relative to data.root when set)."""
    splits = {}
    for name in wanted:
        path = resolve_path(cfg.root, name)
        if name != "test" or (path.exists() and not path.is_dir()):  # the default test split is optional
            splits[name] = to_tensor_split(*mnist.read_text(path), path)  # a FIFO is named, never opened
    return RawData(splits, mnist.CLASSES, 1, (28, 28))


class ImageFileDataset:
    """(PIL image, label) pairs read from image files; decoding happens in loader workers."""

    def __init__(self, paths: list[str], labels: list[int], channels: int) -> None:
        self.paths, self.channels = paths, channels
        self.targets = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        return open_image(self.paths[i], self.channels), int(self.targets[i])

    def subset(self, idx: np.ndarray) -> SubsetDataset:
        return SubsetDataset(self, idx)


def _class_folders(folder: Path) -> list[str]:
    names = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    check_class_names(names, str(folder))
    return names


def _refuse_overlapping_classes(folder: Path, classes: list[str]) -> None:
    """UserError when a class folder leads (through a link) back to the split folder or above it, or into
    another class folder: its images would be listed under two classes (`train/c -> ..` makes every image
    also class c). `im2rec --list --recursive` skips such links the same way."""
    here = folder.resolve()
    real = {cls: (folder / cls).resolve() for cls in classes}
    for cls, target in real.items():
        if not (folder / cls).is_symlink():
            continue  # a real sub-folder lies inside the split folder and beside the others
        if here == target or here.is_relative_to(target):
            raise UserError(f"{folder / cls} leads back to {target}, the split folder or a folder above it: "
                            f"every image there would also be class {printable(cls)!r}; remove the link")
        for other, other_target in real.items():
            if other != cls and (target == other_target or target.is_relative_to(other_target)):
                raise UserError(f"{folder / cls} leads into {folder / other}: its images would be listed under "
                                f"both classes; remove the link or copy the images")


VAL_FOLDERS = ("val", "valid", "validation")  # the names image-folder datasets give their validation split


def split_folder(root: Path, name: str) -> Path:
    """The folder of split `name`: `root/name` in any case (`Test/`), root itself for '.' or 'all', and the
    layouts datasets come in: `train` is root itself when root holds only class folders (no `train/`),
    `val` may be spelled `valid` or `validation`. Two folders for one split are refused: name the one to
    read as a path (`./Test`), which is taken as written."""
    if name in (".", "all"):
        return root
    subs = sorted(d for d in root.iterdir() if d.is_dir()) if name and "/" not in name and root.is_dir() else []
    spelled = lambda split: [d for d in subs if d.name.casefold() in (VAL_FOLDERS if split == "val" else (split,))]
    if len(found := spelled(name.casefold())) > 1:  # taking one would leave the other out without a word
        raise UserError(f"{root} holds both {found[0]} and {found[1]} for the split {name!r}; name the one to read "
                        f"as a path, e.g. ./{found[0].name}")
    if name == "train" and not found and not (spelled("val") or spelled("test")):
        return root
    return found[0] if found else root / name


@register_source("folder", options=())
def folder_source(cfg: DataConfig, wanted: list[str]) -> RawData:
    """ImageFolder layout: `root/<split>/<class>/*.jpg`, or `root/<class>/*.jpg` (root is the training
    split); the split name '.' means root itself (see `split_folder`)."""
    if not cfg.root or not Path(cfg.root).is_dir():
        raise UserError(f"image folder not found: {cfg.root} (set data.root to a folder of class sub-folders)")
    root = Path(cfg.root)
    channels = cfg.channels or 3
    train_dir = split_folder(root, cfg.train or "")
    if not train_dir.is_dir():
        raise UserError(f"training folder not found: {train_dir}")
    classes = _class_folders(train_dir)
    if not classes:
        raise UserError(f"{train_dir} holds no class sub-folders (expected {train_dir}/<class>/<image>)")
    index, splits, seen = {c: i for i, c in enumerate(classes)}, {}, {}
    for name in wanted:
        folder = split_folder(root, name)
        if not folder.is_dir() or (name != cfg.train and folder == train_dir):
            continue
        paths, labels = [], []
        found = _class_folders(folder)
        if loose := image_files(folder, recursive=False):  # they belong to no class: never left out unnoticed
            raise UserError(f"{folder} holds {len(loose)} image(s) beside its class folders ({printable(loose[0].name)}"
                            f"{', ...' * (len(loose) > 1)}), which belong to no class; move them into a class folder")
        _refuse_overlapping_classes(folder, found)
        for cls in found:
            if cls not in index:
                raise UserError(f"{folder}/{cls} is not a class of the training folder {train_dir}")
            if not (files := image_files(folder / cls)):  # a class with no sample (ImageFolder refuses it too)
                kinds = sorted({f.suffix.lower() or f.name for f in safeload.tree_entries(folder / cls, hidden=False)})
                unread = f"; its files ({printable(', '.join(kinds[:6]))}) are not read" if kinds else ""
                raise UserError(f"{folder / cls} holds no image ({', '.join(IMAGE_EXTS)}), so class {printable(cls)!r} "
                                f"would have no sample{unread}; add its images (in a format read) or remove the folder")
            safeload.refuse_linked_files(files, seen, f"the data under {root}")  # one image in two classes or splits
            paths += map(str, files)
            labels += [index[cls]] * len(files)
        if not paths:
            raise UserError(f"no images ({', '.join(IMAGE_EXTS)}) found under {folder}")
        splits[name] = ImageFileDataset(paths, labels, channels)
    return RawData(splits, classes, channels, None)


@register_source("lst", options=("labels", "image_root"))
def lst_source(cfg: DataConfig, wanted: list[str]) -> RawData:
    """MXNet list files, images under `data.options.image_root`, else `data.root`, else the list's folder.

    Class names: `data.options.labels` (a labels.txt, one name per line, optionally 'id name'), else the
    PREFIX.labels.txt `im2rec --list` wrote beside the lists, else the label numbers.
    """
    channels = cfg.channels or 3
    names, limit = class_limit(cfg)
    splits, top, files, seen = {}, -1, [], {}
    for name in wanted:
        path = resolve_path(cfg.root, name, compare=True)  # as the run records it (engine.resolve)
        if name == "test" and (path.is_dir() or not path.exists()):  # the default test split is optional
            continue
        entries = read_lst(path)  # a FIFO or a folder is named as what it is, never opened
        if not entries:
            raise UserError(f"list file {path} is empty")
        first = entries[0]
        if (other := next((e for e in entries if len(e.labels) != len(first.labels)), None)) is not None:
            raise UserError(f"list file {path} mixes label counts: entry {first.index} has "
                            f"{len(first.labels)} label(s), entry {other.index} has {len(other.labels)}; "
                            f"a classification list gives every image the same number")
        base = Path(cfg.options.get("image_root") or cfg.root or path.parent)
        paths = [e.path if Path(e.path).is_absolute() else str(base / e.path) for e in entries]
        safeload.refuse_linked_files(paths, seen, f"the lists of {cfg.root or path.parent}")  # one image, two labels
        labels = class_labels(np.array([e.label for e in entries], dtype=np.float64),
                              lambda k, p=path, e=entries: f"{p}: entry {e[k].index}", limit, names is not None)
        top = max(top, int(labels.max()))
        splits[name] = ImageFileDataset(paths, labels.tolist(), channels)
        files.append(path)
    return RawData(splits, class_names_for(cfg, files, top + 1), channels, None)


def class_limit(cfg: DataConfig) -> tuple[list[str] | None, int]:
    """(class names from data.options.labels or None, the number of classes labels may address)."""
    labels_file = cfg.options.get("labels")
    if not labels_file:
        return None, MAX_CLASSES
    names = read_class_names(labels_file, 0, cfg.root)
    return names, len(names)


def class_labels(values: np.ndarray, name: Callable[[int], str], limit: int, labels_file: bool = False) -> np.ndarray:
    """Single-label class numbers as int64, checked before anything is sized by them: every value must
    be a whole number in [0, limit). `name(k)` names value k's entry ("FILE: entry 7", a record as its file
    names it); `labels_file` says the limit is the length of a labels file (else it is MAX_CLASSES)."""
    values = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(values) | (values < 0) | (values != np.floor(values)) | (values >= limit)
    if np.any(bad):
        k = int(np.flatnonzero(bad)[0])
        v = values[k]
        if np.isfinite(v) and v >= 0 and v == np.floor(v):
            hint = ("named by the labels file (data.options.labels)" if labels_file else
                    "allowed without a labels file; if there really are more classes, name them in data.options.labels")
            raise UserError(f"{name(k)} has label {v:g}, beyond the class numbers 0..{limit - 1:,} {hint}")
        raise UserError(f"{name(k)} has label {np.format_float_positional(v, trim='-')}; single-label "
                        f"data needs whole class numbers 0, 1, ... ({int(np.count_nonzero(bad)):,} such label(s))")
    return values.astype(np.int64)


def class_names_for(cfg: DataConfig, data_files: list[Path], count: int) -> list[str]:
    """Class names of list/record data: `data.options.labels` and the labels files beside each split's file
    (see `lst.labels_files`), which must all name the same classes; the label numbers when there is none."""
    found = [(f, f"found beside {d.name}") for d in data_files for f in labels_files(d)]
    if cfg.options.get("labels"):
        found.insert(0, (resolve_path(cfg.root, cfg.options["labels"]), "given as the labels file"))
    return agreed_names([(f"{f} ({where})", read_class_names(f, 0)) for f, where in found], count)


def agreed_names(found: list[tuple[str, list[str]]], count: int) -> list[str]:
    """The class names every one of `found` ((where from, names), the first taken) gives, '0'..'count-1'
    when none: two disagreeing are refused (one label number would mean two classes), as are fewer names
    than `count`, the labels' top + 1."""
    if not found:
        return read_class_names(None, count)
    (first, names), shown = found[0], lambda n: ", ".join(map(printable, n[:4])) + (", ..." if len(n) > 4 else "")
    for where, theirs in found[1:]:
        if theirs != names:
            raise UserError(f"{where} names the classes {shown(theirs)}, but {first} names {shown(names)}: one "
                            f"label number would mean two classes; make the files agree")
    if len(names) < count:
        raise UserError(f"{first} names {len(names)} classes but the labels go up to {count - 1}; fix it or name "
                        f"another file in data.options.labels")
    return names


def read_class_names(path: str | Path | None, count: int, root: str | None = None) -> list[str]:
    """Names from a labels file (one name per line, e.g. 'n01440764 tench'; a relative path under `root`,
    the data root, first), or '0'..'count-1'. The file is bounded, UTF-8 and a regular file (a FIFO or a
    folder in its place is named, never opened or passed over)."""
    if not path:
        if count > MAX_CLASSES:  # never build a billion names from one stray label
            raise UserError(f"the labels go up to {count - 1:,}, beyond {MAX_CLASSES - 1:,}; give a labels file "
                            f"naming the classes (data.options.labels) or fix the labels")
        return [str(i) for i in range(count)]
    p = resolve_path(root, path)
    names = name_lines(safeload.read_text_file(p, "labels file"))
    if len(names) < count:
        raise UserError(f"{p} names {len(names)} classes but the labels go up to {count - 1}")
    check_class_names(names, str(p))
    return names


@register_source("rec", options=("labels", "idx", "decoder", "memory_format", "prefetch"))
def rec_source(cfg: DataConfig, wanted: list[str]) -> RawData:
    """MXNet record files; split names are .rec paths (an .idx path is accepted too)."""
    try:
        from deepvision.data.records.loader import RecordDataset, check_record_options
    except ImportError as exc:
        raise UserError(f"record files need OpenCV: pip install 'deepvision[records]' ({exc})") from None
    check_record_options(cfg.options)
    channels = cfg.channels or 3
    idx_paths = cfg.options.get("idx") or {}
    names, limit = class_limit(cfg)
    splits, top, files = {}, -1, []
    for name in wanted:
        path = resolve_path(cfg.root, name)
        path = path.with_suffix(".rec") if path.suffix == ".idx" else path
        if name == "test" and (path.is_dir() or not path.exists()):  # the default test split is optional
            continue
        input_file(path, "record file", " (data.source: rec expects .rec paths in data.train/val/test; pack "
                                        "images with `deepvision im2rec`)")
        ds = RecordDataset(path, idx_paths.get(name), channels=channels, skip_corrupt=cfg.skip_corrupt,
                           decoder=cfg.options.get("decoder", "auto"))
        if len(ds) == 0:
            raise UserError(f"record file {path} holds no record")
        # check the float labels before `targets` truncates them to integers
        labels = class_labels(ds.labels[:, 0], ds.describe, limit, names is not None)
        top = max(top, int(labels.max()))
        splits[name] = ds
        files.append(path)
    return RawData(splits, class_names_for(cfg, files, top + 1), channels, None)


@register_source("hdf5", options=("labels", "data_key"))
def hdf5_source(cfg: DataConfig, wanted: list[str]) -> RawData:
    """HDF5 image files (e.g. FER2013 as the reference stores it); split names are file paths."""
    from deepvision.data.hdf5 import HDF5Dataset

    key = cfg.options.get("data_key")
    file_names, limit = class_limit(cfg)
    splits, shapes = {}, {}  # shapes: (height, width, channels) -> the first file of that shape
    found = [] if file_names is None else [(f"{cfg.options['labels']} (given as the labels file)", file_names)]
    for name in wanted:
        path = resolve_path(cfg.root, name)
        if name == "test" and (path.is_dir() or not path.exists()):  # the default test split is optional
            continue
        input_file(path, "HDF5 file")
        data, labels = (ds := HDF5Dataset(path, key, in_memory=True)).data, ds.targets
        found += [(f"{path} (its label_names)", ds.classes)] if ds.named else []
        if data.dtype.kind not in "iuf" or data.ndim not in (3, 4) or data.shape[3:] not in ((), (1,), (3,)):
            raise UserError(f"{path}: the data is {data.shape} {data.dtype}; an image source needs N x H x W [x C] "
                            f"(C = 1 or 3) integer or float pixels (feature files are for the classifier tools)")
        safeload.check_image_side(f"{path}: the image size (height x width)", *data.shape[1:3])
        if data.dtype != np.uint8:
            rows = data.reshape(len(data), -1)
            wrong = ~(np.isfinite(rows) & (rows >= 0) & (rows <= 255)).all(axis=1)  # clipping would hide them
            if wrong.any():
                row = rows[bad := int(np.flatnonzero(wrong)[0])]
                what = (f"values beyond 0-255 (first in row {bad:,}: {row.min() if row.min() < 0 else row.max():g})"
                        if np.isfinite(row).all() else f"NaN or infinite values (first in row {bad:,})")
                raise UserError(f"{path}: the images hold {what}; image data must be 8-bit pixels 0-255 (scale "
                                f"16-bit or signed data to that range first)")
            data = np.clip(np.rint(data), 0, 255).astype(np.uint8)
        shapes.setdefault((*data.shape[1:3], data.shape[3] if data.ndim == 4 else 1), path)
        if len(shapes) > 1:  # one model for both: the other split would be converted to its shape without a word
            raise UserError(f"{' and '.join(f'{f} holds {s}' for s, f in shapes.items())} images (height, width, "
                            f"channels): the splits of one source must agree; convert one file to the other's shape")
        class_labels(labels, f"{path}: row {{}}".format, limit, file_names is not None)  # HDF5Dataset refuses 0 rows
        splits[name] = to_tensor_split(data, labels, path)
    top = max((int(s.labels.max()) for s in splits.values() if len(s)), default=-1)
    return RawData(splits, agreed_names(found, top + 1), *next(((s[2], s[:2]) for s in shapes), (1, None)))
