"""im2rec --list: walk an image folder exactly as MXNet's tools/im2rec.py does and write .lst files.

`list_images` is im2rec.py's sorted walk (one label per folder with `recursive`, directory links
followed), made safe: a directory link back into its own ancestry is not followed (im2rec.py walks it
until the path is too long), only regular files are listed (a FIFO, device or broken link named like an
image is refused, never left out without a word), and names a .lst line cannot hold (a tab, a line
break) are left out and reported. `make_list` refuses one image reached twice (a symbolic or hard
link, a second path to a folder), which packing would refuse, shuffles with `random.seed(100)` and writes the
chunks and train/val/test ratios; on trees without such links the output is im2rec.py's, byte for byte.
"""

from __future__ import annotations

import glob
import json
import os
import random
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from deepvision.data.lst import ListEntry, labels_file_for, labels_files
from deepvision.errors import UserError
from deepvision.fileio import atomic_write_text, open_regular_file, written_whole
from deepvision.placement import require_own_folder
from deepvision.safeload import (
    check_class_names,
    is_image_file,
    not_utf8,
    printable,
    read_text_file,
    refuse_linked_files,
)

DEFAULT_EXTS = (".jpeg", ".jpg", ".png")


def write_lst(path: str | Path, entries: Iterable[ListEntry]) -> None:
    """Write a .lst file atomically (temporary file, then rename)."""
    lines = []
    for e in entries:
        if "\t" in e.path or len(f"a{e.path}b".splitlines()) > 1:
            raise UserError(f"cannot write {path}: the file name {e.path!r} holds a tab or a line break, which a "
                            f".lst line cannot hold; rename the file")
        if not_utf8(e.path):
            raise UserError(f"cannot write {path}: the file name {printable(repr(e.path))} is not UTF-8 text (a name "
                            f"in another encoding), which a .lst file cannot hold; rename the file")
        labels = "\t".join(f"{v:f}" for v in e.labels)
        lines.append(f"{e.index}\t{labels}\t{e.path}\n")
    atomic_write_text(path, "".join(lines))


LISTS_MARKER = "lists.json"  # written last by each list builder: {"builder": "cars lists"}


def require_own_lists_folder(out: str | Path, builder: str) -> None:
    """Refuse, before anything is written, an --out that is not new, empty or an earlier folder of this
    `builder` ("cars lists"), known by the LISTS_MARKER it writes last: a run folder's labels.txt, a
    user's files or ANOTHER builder's lists (whose mean.json or images/ would stay beside the new lists)
    are never replaced."""
    other = _builder_of(Path(out) / LISTS_MARKER)
    if other not in (None, builder):
        raise UserError(f"--out {out} holds the lists an earlier {printable(other)[:40]} wrote ({LISTS_MARKER}); "
                        f"{builder} would replace some of its files and leave the rest: choose a new or empty folder")
    require_own_folder(out, LISTS_MARKER, f'{{"builder": "{builder}"', builder)


def _builder_of(marker: Path) -> str | None:
    """The builder a LISTS_MARKER names, else None (no marker, or not one a builder wrote)."""
    try:
        with open_regular_file(marker) as f:
            found = re.match(r'\{"builder": "([^"]{1,60})"', f.read(256).decode("utf-8", "replace"))
    except OSError:
        return None
    return found[1] if found else None


def write_lists_marker(out: str | Path, builder: str) -> Path:
    """Write OUT/LISTS_MARKER, naming `builder`: the sign that lets its next run replace the folder's lists."""
    path = Path(out) / LISTS_MARKER
    atomic_write_text(path, json.dumps({"builder": builder}) + "\n")
    return path


def write_split_lists(out: str | Path, splits: dict[str, Iterable[ListEntry]], builder: str,
                      beside: Callable[[Path], dict[str, str]] | None = None) -> dict[str, Path]:
    """Write `out/NAME.lst` for every split (creating `out`), then the marker of `builder`; returns the
    lists' paths by split name. `beside` writes more files into the folder (the lists already there) and
    returns their names by key, returned as paths too: they land in `out` with the lists or not at all."""
    out = Path(out)
    files = {}
    require_own_lists_folder(out, builder)
    # the lists land together, the marker last: a failure or a stop leaves the folder as it was; an earlier
    # run's mean.json (the folder is the builder's own) goes unless `beside` wrote a new one
    with written_whole(out, last=LISTS_MARKER, stale=("mean.json",)) as tmp:
        for name, entries in splits.items():
            write_lst(tmp / f"{name}.lst", entries)
            files[name] = out / f"{name}.lst"
        files.update({key: out / name for key, name in (beside(tmp) if beside else {}).items()})
        write_lists_marker(tmp, builder)
    return files


def list_images(root: str | Path, recursive: bool, exts: Iterable[str],
                categories: dict[str, int] | None = None, loops: list[str] | None = None,
                rejected: list[str] | None = None) -> Iterator[tuple[int, str, int]]:
    """(index, path relative to root, label) for every image, in im2rec.py's order.

    With `recursive`, every folder holding images gets the next label in sorted-walk order (recorded in
    `categories` as relative folder -> label); otherwise only files directly in root, all labelled 0.
    Directory links are followed, as im2rec.py does, except a link back to one of its own ancestors
    (a cycle, which im2rec.py walks until the path is too long): it is skipped and its relative path
    appended to `loops`. Only regular files are listed: a FIFO, device or broken link named like an image is
    refused naming it (`safeload.is_image_file`: the user meant it as an image; a FIFO would block the packer).
    Paths with a tab or a line break, which a .lst line cannot hold, are left out and appended to
    `rejected` (im2rec.py writes them and every reader then refuses the list).
    """
    root = str(root)
    exts = {e.lower() for e in exts}
    i = 0
    if recursive:
        cat: dict[str, int] = {} if categories is None else categories
        ancestors: dict[str, frozenset[tuple[int, int]]] = {}
        for path, dirs, files in os.walk(root, followlinks=True):
            here = ancestors.get(path, frozenset()) | {_dir_id(path)}
            for d in list(dirs):
                sub = os.path.join(path, d)
                ident = _dir_id(sub)
                if ident in here:  # a link back into its own ancestry: following it never ends
                    dirs.remove(d)
                    if loops is not None:
                        loops.append(os.path.relpath(sub, root))
                else:
                    ancestors[sub] = here
            dirs.sort()
            files.sort()
            for fname in files:
                fpath = os.path.join(path, fname)
                if os.path.splitext(fname)[1].lower() in exts and is_image_file(fpath, root):
                    rel = os.path.relpath(fpath, root)
                    if unlistable(rel):
                        if rejected is not None:
                            rejected.append(rel)
                        continue
                    rel_dir = os.path.relpath(path, root)
                    if rel_dir not in cat:
                        cat[rel_dir] = len(cat)
                    yield i, rel, cat[rel_dir]
                    i += 1
    else:
        for fname in sorted(os.listdir(root)):
            fpath = os.path.join(root, fname)
            if os.path.splitext(fname)[1].lower() in exts and is_image_file(fpath, root):
                rel = os.path.relpath(fpath, root)
                if unlistable(rel):
                    if rejected is not None:
                        rejected.append(rel)
                    continue
                yield i, rel, 0
                i += 1


def image_extensions(exts: Iterable[str]) -> list[str]:
    """The extensions of `--exts`, each with its leading dot (`png` is `.png`, as the user meant; matched
    without it, no file would be listed); one that names no extension is refused."""
    out = []
    for ext in exts:
        text = ext.strip()
        if text in ("", ".") or any(c in "/\\" or c.isspace() for c in text):
            raise UserError(f"--exts {printable(repr(ext))} is not a file extension; give extensions such as .jpg "
                            f".png")
        out.append(text if text.startswith(".") else f".{text}")
    return list(dict.fromkeys(out))


def _dir_id(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (-1, hash(path))
    return st.st_dev, st.st_ino


def unlistable(name: str) -> bool:
    """True for a path the .lst format cannot hold: a tab or anything `str.splitlines` breaks on."""
    return "\t" in name or len(f"a{name}b".splitlines()) > 1


def make_list(
    prefix: str | Path,
    root: str | Path,
    *,
    recursive: bool = False,
    exts: Iterable[str] = DEFAULT_EXTS,
    shuffle: bool = True,
    chunks: int = 1,
    train_ratio: float = 1.0,
    test_ratio: float = 0.0,
    categories: dict[str, int] | None = None,
    loops: list[str] | None = None,
    rejected: list[str] | None = None,
) -> list[Path]:
    """Write PREFIX.lst (or PREFIX[_k]_train/_val/_test.lst) like `im2rec.py --list`; returns the files.

    `categories`, `loops` and `rejected` collect what `list_images` reports (folder labels, directory
    links that loop, file names a list cannot hold). With `recursive`, the class names (each label's
    folder, relative to root) also go to PREFIX.labels.txt, one per line in label order; the lst and
    rec sources read it automatically. An image reached twice (a symbolic or hard link) is refused.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"image folder not found: {root}")
    if chunks < 1:
        raise UserError(f"--chunks must be >= 1, got {chunks}")
    if not (0 <= train_ratio <= 1 and 0 <= test_ratio <= 1 and train_ratio + test_ratio <= 1):
        raise UserError(f"--train-ratio ({train_ratio}) and --test-ratio ({test_ratio}) must be in [0, 1] and sum "
                        f"to at most 1")
    exts = image_extensions(exts)
    cat: dict[str, int] = {} if categories is None else categories
    left_out: list[str] = [] if rejected is None else rejected
    image_list = list(list_images(root, recursive, exts, cat, loops, left_out))
    # a symbolic or hard link (or a linked folder) lists one image twice, under two classes with --recursive:
    # the packer and the lst source refuse such a list, so it is refused here, before anything is written
    refuse_linked_files((root / rel for _, rel, _ in image_list), {}, f"the list of {root}")
    if not image_list:  # an empty list would pack an empty record file and train on nothing
        where = f"in or under {root}" if recursive else f"directly in {root} (--recursive reads its sub-folders)"
        unlisted = f"; {len(left_out)} left out for a tab or a line break in the name" if left_out else ""
        raise UserError(f"no image file ({', '.join(exts)}) {where}{unlisted}; no list written")
    if recursive and cat:  # the folder names become labels.txt, which every reader checks: refuse them now
        # as the readers take them: stripped (" dog" and "dog" are one name there)
        check_class_names([name.strip() for name in sorted(cat, key=cat.get)], f"the class folders under {root}")
    names = "".join(f"{name}\n" for name in sorted(cat, key=cat.get)) if recursive and cat else None
    if names is not None:
        _refuse_renaming_records(prefix, names)
    if shuffle:
        random.seed(100)  # im2rec.py's seed: the same folder gives the same list
        random.shuffle(image_list)
    n = len(image_list)
    if chunks > max(n, 1):  # im2rec.py would write one (mostly empty) list per chunk
        raise UserError(f"--chunks {chunks} is more than the {n} image(s) found under {root}; use at most {max(n, 1)}")
    chunk_size = (n + chunks - 1) // chunks
    prefix = str(prefix)
    written: list[Path] = []

    def write(name: str, items: list[tuple[int, str, int]]) -> None:
        path = Path(name)
        write_lst(path, (ListEntry(i, (float(label),), rel) for i, rel, label in items))
        written.append(path)

    for k in range(chunks):
        chunk = image_list[k * chunk_size : (k + 1) * chunk_size]
        suffix = f"_{k}" if chunks > 1 else ""
        sep = int(chunk_size * train_ratio)
        sep_test = int(chunk_size * test_ratio)
        if train_ratio == 1.0:
            write(f"{prefix}{suffix}.lst", chunk)
        else:
            if test_ratio:
                write(f"{prefix}{suffix}_test.lst", chunk[:sep_test])
            if train_ratio + test_ratio < 1.0:
                write(f"{prefix}{suffix}_val.lst", chunk[sep_test + sep :])
            write(f"{prefix}{suffix}_train.lst", chunk[sep_test : sep_test + sep])
    if names is not None:  # the class names, for training from these lists or their records
        atomic_write_text(labels_file_for(prefix), names)
    return written


def _refuse_renaming_records(prefix: str | Path, names: str) -> None:
    """Refuse other class names for PREFIX.labels.txt while a record file packed under the present ones
    (PREFIX*.rec, which reads that file) stays: its label numbers would take the new names."""
    labels = labels_file_for(prefix)
    try:
        if read_text_file(labels, "labels file") == names:
            return
    except (FileNotFoundError, UserError):  # absent, or unreadable: nothing a record could read either
        return
    base = Path(prefix)
    recs = sorted(r for r in base.parent.glob(f"{glob.escape(base.name)}*.rec") if labels in labels_files(r))
    if recs:
        raise UserError(f"{recs[0]} was packed under the class names of {labels}; these lists name other classes, "
                        f"which would rename its records: remove {recs[0].name} and its .idx, or choose another "
                        f"prefix")
