"""What a detection run trained on: the built dataset's split files it read, by role.

A run records `split_record` in its checkpoints; scoring its own splits and resuming its training compare it
with the dataset as it is (`split_record_change`): a dataset rebuilt since (another seed, other annotations,
another data.root) draws other splits, and its test split may hold images the run trained on. A run trained
before the record existed stores none and is compared with nothing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from deepvision.config.schema import DataConfig
from deepvision.data.detection.index import load_index
from deepvision.errors import UserError
from deepvision.safeload import printable

ROLES = ("train", "val", "test")


def split_record(data: DataConfig) -> dict[str, Any]:
    """The build command of the dataset at data.root and, per role whose split data.train/val/test names, the
    split, the sha256 of its file and its image count (dataset.json's), or no sha256 where the dataset holds no
    such split (a split that appears later is a change too)."""
    index = load_index(data.root, [])
    listed, counts = index.info.get("splits", []), index.info.get("counts")
    splits: dict[str, Any] = {}
    for role in ROLES:
        name = getattr(data, role)
        if not name:
            continue
        path = Path(data.root) / f"{name}.json"
        held = name in listed and path.is_file()  # a regular file: never a FIFO read here
        entry = counts.get(name) if held and isinstance(counts, dict) else None
        count = entry.get("images") if isinstance(entry, dict) else None
        splits[role] = {"split": name, "sha256": _sha256(path) if held else None,
                        "images": count if isinstance(count, int) else None}
    command = index.info.get("command")
    return {"command": command if isinstance(command, str) else None, "splits": splits}


def split_record_change(recorded: Any, data: DataConfig) -> tuple[str, str, str] | None:
    """The first role whose split is not the one `recorded` (a checkpoint's `split_record`) names, with the
    split as recorded and as it is now ("test", "split 'test', 3 images, sha256 1a2b3c4d5e6f", ...); None when
    every split is as recorded, or nothing was recorded (a run trained before the record existed)."""
    if not isinstance(recorded, dict) or not isinstance(recorded.get("splits"), dict):
        return None
    then, now = recorded["splits"], split_record(data)["splits"]
    for role in ROLES:
        if _identity(then.get(role)) != _identity(now.get(role)):
            return role, _show(then.get(role)), _show(now.get(role))
    return None


def rebuild_hint(recorded: Any) -> str:
    """How to get the recorded splits back: the recorded build command, run again."""
    command = recorded.get("command") if isinstance(recorded, dict) else None
    return f"rebuild it as it was ({printable(command)[:200]})" if isinstance(command, str) and command else \
        "rebuild it as it was"


def refuse_rebuilt(recorded: Any, data: DataConfig, checkpoint: str, consequence: str, alternative: str) -> None:
    """Refuse splits other than the ones `checkpoint` recorded (`recorded`, its `split_record`): one line naming
    the first changed role, `consequence` of going on, the rebuild that restores them, or `alternative`."""
    change = split_record_change(recorded, data)
    if change is not None:
        role, old, new = change
        raise UserError(f"the {role} split of {printable(data.root)} is not the one {checkpoint} was trained with "
                        f"({old} -> {new}): the dataset was rebuilt or edited since, and {consequence}; "
                        f"{rebuild_hint(recorded)}, or {alternative}")


def _sha256(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as exc:
        raise UserError(f"could not read {path}: {exc.strerror or exc}") from None


def _identity(entry: Any) -> tuple[Any, Any] | None:
    return (entry.get("split"), entry.get("sha256")) if isinstance(entry, dict) else None


def _show(entry: Any) -> str:
    if not isinstance(entry, dict):
        return "none"
    name = printable(str(entry.get("split")))[:60]
    if not entry.get("sha256"):
        return f"no split '{name}'"
    images = entry.get("images")
    count = f"{images:,} images, " if isinstance(images, int) else ""
    return f"split '{name}', {count}sha256 {printable(str(entry['sha256']))[:12]}"
