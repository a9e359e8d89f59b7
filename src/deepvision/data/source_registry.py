"""The registry of data sources (`data.source` names), and where data files named in a config are looked
up. Sources register themselves on import."""

from __future__ import annotations

import contextlib
import filecmp
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deepvision.config.names import register_names, register_source_options
from deepvision.config.schema import DataConfig
from deepvision.data.tensors import Split
from deepvision.errors import UserError


@dataclass
class RawData:
    """What a source returns: its splits by name plus what it knows about the images."""

    splits: dict[str, Split]
    classes: list[str]
    channels: int
    size: tuple[int, int] | None  # stored (H, W) when all samples share one, else None


SourceFn = Callable[[DataConfig, list[str]], RawData]
_SOURCES: dict[str, SourceFn] = {}


def register_source(name: str, options: tuple[str, ...] | None = None) -> Callable[[SourceFn], SourceFn]:
    """Register `fn(cfg, splits) -> RawData` as `data.source: name`, reading the `data.options` keys `options`."""

    def wrap(fn: SourceFn) -> SourceFn:
        _SOURCES[name] = fn
        if options is not None:
            register_source_options(name, options)
        return fn

    return wrap


_TASK_SOURCES: dict[str, str] = {}  # sources a task reads itself (not classification splits): name -> task
register_names("data.source", "data source", lambda: [*_SOURCES, *_TASK_SOURCES])


def register_task_source(name: str, task: str) -> None:
    """`data.source: name` is read by the task `task` (e.g. detection datasets), not by `load_data`."""
    _TASK_SOURCES[name] = task


def task_of_source(name: str) -> str | None:
    return _TASK_SOURCES.get(name)


def registered_sources() -> dict[str, SourceFn]:
    """Name -> source function of every source imported so far."""
    return dict(_SOURCES)


def resolve_path(root: str | Path | None, name: str | Path, compare: bool = False) -> Path:
    """A data file named in a config: absolute as given; relative ones under `data.root` first, then in the working
    directory (a stray copy there never shadows the root's; with `compare`, one that differs is refused naming both)."""
    p = Path(name)
    if p.is_absolute() or not root:
        return p
    under_root = Path(root) / p
    with contextlib.suppress(OSError):  # an unreadable copy is named by its reader, or unread
        if compare and under_root.is_file() and p.is_file() and not filecmp.cmp(under_root, p, shallow=False):
            raise UserError(f"{p} is both {under_root} (under data.root) and {p.absolute()} (in the working directory),"
                            f" which differ; give the one to read as an absolute path, or remove the other")
    return under_root if under_root.exists() or not p.exists() else p
