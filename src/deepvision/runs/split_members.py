"""What a classification run's splits hold: per role, a sha256 over its members (after carving) with their labels.

A run records `members_record` in its checkpoints; scoring its own splits and resuming its training compare it
with the splits drawn now (`members_change`): images added to the data, moved between class folders, or a list,
record or HDF5 file replaced make `val_fraction`/`test_fraction` carve other images, and a "test" split could
hold images the run trained on. Members are named without reading image content: image files by their path
relative to the split's common folder (data moved to another root is the same data), records by id and offset,
in-memory rows (HDF5, MNIST) by their bytes, already in memory. A run trained before the record stores none.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

from deepvision.data.sources import DataBundle, TensorSplit
from deepvision.safeload import printable

KIND = "members"
ROLES = ("train", "val", "test")


def is_members_record(recorded: Any) -> bool:
    """Whether `recorded` (a checkpoint's `data_splits`) is a classification record of this module."""
    return isinstance(recorded, dict) and recorded.get("kind") == KIND and isinstance(recorded.get("splits"), dict)


def members_record(bundle: DataBundle, roles: tuple[str, ...] = ROLES) -> dict[str, Any]:
    """Per role of `roles` the bundle holds, its sample count and the sha256 over its sorted members with their
    labels."""
    splits = {}
    for role in roles:
        split = bundle.role(role)
        if split is not None and (digest := _digest(split)) is not None:
            splits[role] = {"count": len(split), "sha256": digest}
    return {"kind": KIND, "splits": splits}


def members_change(recorded: Any, now: dict[str, Any], roles: tuple[str, ...] = ROLES
                   ) -> tuple[str, str, str] | None:
    """The first of `roles` whose members `recorded` names and `now` (a `members_record`) does not, with the
    split as recorded and as it is now; None when they agree or nothing was recorded for those roles."""
    if not is_members_record(recorded):
        return None
    for role in roles:
        then, current = recorded["splits"].get(role), now["splits"].get(role)
        if isinstance(then, dict) and _identity(then) != _identity(current):
            return role, _show(then), _show(current)
    return None


def data_name(data: Any) -> str:
    """How a refusal names the data: its root, else its training split (a list, record or HDF5 file)."""
    return str(data.root or data.train)


def change_message(change: tuple[str, str, str], data: str, checkpoint: str, consequence: str, fix: str) -> str:
    """The one line refusing a changed split."""
    role, old, new = change
    return (f"the {role} split of {printable(data)} is not the one {checkpoint} was trained with ({old} -> {new}): "
            f"images were added, moved or replaced since, and {consequence}; {fix}")


def _digest(split: Any) -> str | None:
    h = hashlib.sha256()
    labels = np.asarray(split.targets, dtype=np.int64)
    if isinstance(split, TensorSplit):  # rows held in memory: their bytes, in order
        h.update(b"rows\0" + labels.tobytes())
        h.update(memoryview(np.ascontiguousarray(split.images.numpy())).cast("B"))
        return h.hexdigest()
    members = _file_members(split)
    if members is None:
        members = _record_members(split)
    if members is None:
        return None
    for line in sorted(f"{m}\t{int(label)}" for m, label in zip(members, labels, strict=True)):
        h.update(line.encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()


def _file_members(split: Any) -> list[str] | None:
    """Image paths relative to the folder they have in common, or None for a split not read from files."""
    base = getattr(split, "dataset", split)
    paths = getattr(base, "paths", None)
    if paths is None:
        return None
    indices = getattr(split, "indices", None)
    chosen = [p if os.path.isabs(p) else os.path.abspath(p) for p in map(str, paths if indices is None else
                                                                            (paths[i] for i in indices))]
    prefix = os.path.commonprefix(chosen)  # by characters (fast over a million paths): cut back to a folder
    cut = prefix.rfind(os.sep) + 1
    return [p[cut:] for p in chosen]


def _record_members(split: Any) -> list[str] | None:
    """Records by id and byte offset in their file, or None for a split not read from a record file."""
    indices = getattr(split, "indices", None)
    if indices is not None and hasattr(split, "dataset"):  # a view of a record dataset
        members = _record_members(split.dataset)
        return None if members is None else [members[i] for i in indices]
    file, ids = getattr(split, "file", None), getattr(split, "ids", None)
    offsets = getattr(file, "offsets", None)
    if ids is None or offsets is None:
        return None
    positions = getattr(split, "positions", None)
    offsets = offsets if positions is None else offsets[positions]
    return [f"{int(i)}@{int(o)}" for i, o in zip(np.asarray(ids), np.asarray(offsets), strict=True)]


def _identity(entry: Any) -> tuple[Any, Any] | None:
    return (entry.get("count"), entry.get("sha256")) if isinstance(entry, dict) else None


def _show(entry: Any) -> str:
    if not isinstance(entry, dict):
        return "no such split"
    count = entry.get("count")
    images = f"{count:,} images, " if isinstance(count, int) else ""
    return f"{images}sha256 {printable(str(entry.get('sha256')))[:12]}"
