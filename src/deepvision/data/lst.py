"""MXNet list files: `index<TAB>label[<TAB>label2 ...]<TAB>path`, one image per line (written by
`deepvision.datasets.listing`)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from deepvision.errors import UserError
from deepvision.safeload import input_file, plain_float, read_bytes, record_index

MAX_LIST_BYTES = 2**30  # ImageNet's train.lst (1.28 million images) is about 80 MB


@dataclass(frozen=True)
class ListEntry:
    index: int
    labels: tuple[float, ...]
    path: str

    @property
    def label(self) -> float:
        return self.labels[0]


def read_list_text(path: str | Path) -> str:
    """The text of a .lst file; UserError when it is missing, not a regular file (a FIFO is never
    opened), larger than `MAX_LIST_BYTES` (checked from its size before reading) or not UTF-8 text."""
    path = input_file(path, "list file")
    try:
        return read_bytes(path, "list file", MAX_LIST_BYTES).decode("utf-8-sig")  # a leading byte-order mark is dropped
    except FileNotFoundError:
        raise UserError(f"list file not found: {path}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text list file (expected UTF-8 'index<TAB>label<TAB>path' lines)") from None


def read_lst(path: str | Path) -> list[ListEntry]:
    """Parse a .lst file; malformed lines raise UserError naming the line."""
    path = Path(path)
    text = read_list_text(path)
    entries, first, indexes = [], {}, {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 3:
            raise UserError(f"{path}:{lineno}: expected 'index<TAB>label<TAB>path', got {line[:80]!r}")
        try:
            index, labels = record_index(parts[0]), tuple(plain_float(v) for v in parts[1:-1])
        except (ValueError, OverflowError):
            raise UserError(f"{path}:{lineno}: the index must be a whole number from 0 to 2**64-1 and the labels "
                            f"numbers, got {line[:80]!r}") from None
        if not all(math.isfinite(v) for v in labels):
            raise UserError(f"{path}:{lineno}: labels must be finite numbers, got {line[:80]!r}")
        if first.setdefault(os.path.normpath(parts[-1]), (labels, lineno))[0] != labels:  # one image, two classes
            raise UserError(f"{path}:{lineno}: {parts[-1]} is listed again with other labels (first on line "
                            f"{first[os.path.normpath(parts[-1])][1]}); an image has one label")
        if indexes.setdefault(index, lineno) != lineno:  # MXNet keys a list by index: one of the two would go
            raise UserError(f"{path}: lines {indexes[index]} and {lineno} both have index {index}; each image needs "
                            f"its own index (the record's key in the .idx)")
        entries.append(ListEntry(index, labels, parts[-1]))
    return entries


def labels_file_for(prefix: str | Path) -> Path:
    """Where `im2rec --list PREFIX` writes the class names: PREFIX.labels.txt."""
    return Path(f"{prefix}.labels.txt")


def labels_files(data_file: str | Path) -> list[Path]:
    """The class-names files beside a .lst/.rec, most specific first: NAME.labels.txt for NAME.lst or
    NAME.rec (as im2rec writes it), the same for a shorter prefix of NAME ('set' for set_train.rec,
    set_0_val.rec), and labels.txt in the same folder (as `deepvision imagenet lists` writes it). Whatever
    is there counts (a FIFO or a folder in its place is named by the reader, never passed over)."""
    path = Path(data_file)
    parts = path.stem.split("_")
    candidates = [labels_file_for(path.with_name("_".join(parts[:k]))) for k in range(len(parts), 0, -1)]
    return [c for c in [*candidates, path.with_name("labels.txt")] if os.path.lexists(c)]
