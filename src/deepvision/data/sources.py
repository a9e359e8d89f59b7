"""Data sources by name (`data.source` in a config) and the generic split logic around them.

A source turns a `DataConfig` into named splits. Small datasets come back as `TensorSplit`s (uint8
tensors, batched by indexing); large ones as datasets read by worker processes. `load_data` then
maps the config's train/val/test roles onto those splits, carves seeded stratified validation/test
splits out of the training part when asked, and `build_loaders` makes the per-role loaders.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

import deepvision.data.builtin_sources
from deepvision.config.schema import DataConfig
from deepvision.data.source_registry import RawData, registered_sources, task_of_source
from deepvision.data.splits import stratified_split
from deepvision.data.tensors import Split, SubsetDataset, TensorSplit, adapt_tensor_split, to_tensor_split
from deepvision.errors import UserError, unknown

with contextlib.suppress(ImportError):  # record files need the `records` extra (OpenCV)
    import deepvision.data.record_source  # noqa: F401

__all__ = ["DataBundle", "RawData", "Split", "SubsetDataset", "TensorSplit", "adapt_tensor_split", "list_sources",
           "load_data", "to_tensor_split"]


def list_sources() -> list[str]:
    return sorted(registered_sources())


@dataclass
class DataBundle:
    """The resolved data of a run: one split per role (train/val/test), plus class names."""

    train: Split | None
    val: Split | None
    test: Split | None
    classes: list[str]
    channels: int
    size: tuple[int, int] | None
    description: str = ""

    def role(self, name: str) -> Split | None:
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def counts(self) -> dict[str, int]:
        return {r: len(s) for r in ("train", "val", "test") if (s := self.role(r)) is not None}


def load_data(cfg: DataConfig, roles: tuple[str, ...] = ("train", "val", "test")) -> DataBundle:
    """Load the splits a config asks for and assign train/val/test roles.

    Only the named `roles` are read (training needs no test file); the training split is always read,
    since validation and test parts may be carved out of it.
    """
    sources = registered_sources()
    if task_of_source(cfg.source):
        raise UserError(f"data.source {cfg.source} is read by the {task_of_source(cfg.source)} task: set "
                        f"task: {task_of_source(cfg.source)}")
    if cfg.source not in sources:
        raise unknown("data source", cfg.source, sources)
    defaults = DataConfig()
    wanted = [getattr(cfg, role) for role in ("train", "val", "test") if role == "train" or role in roles]
    raw = sources[cfg.source](cfg, list(dict.fromkeys(name for name in wanted if name)))
    split_of: dict[str, Split | None] = {}
    for role in ("train", "val", "test"):
        name = getattr(cfg, role)
        if not name or (role != "train" and role not in roles):
            split_of[role] = None
        elif name in raw.splits:
            split_of[role] = raw.splits[name]
        elif role == "test" and name == defaults.test:
            split_of[role] = None  # the default test split is optional
        else:
            have = ", ".join(sorted(raw.splits)) or "none"
            raise UserError(f"data.{role}: split '{name}' not found in {cfg.source} data at {cfg.root}; "
                            f"available: {have}")
    if split_of["train"] is None:
        raise UserError("data.train must name the training split")
    if len(split_of["train"]) == 0:
        raise UserError(f"the training split '{cfg.train}' is empty")
    # Carve held-out parts from the training part: test first, then validation (sizes from full N).
    n = len(split_of["train"])
    for role, fraction in (("test", cfg.test_fraction), ("val", cfg.val_fraction)):
        if fraction > 0:
            if split_of[role] is not None and getattr(cfg, role) != getattr(defaults, role):
                raise UserError(f"data.{role} and data.{role}_fraction are both set; use one of them")
            count = int(round(fraction * n))
            keep, out = stratified_split(_targets(split_of["train"]), count, cfg.split_seed + (role == "val"))
            split_of[role] = split_of["train"].subset(out)
            split_of["train"] = split_of["train"].subset(keep)
    if cfg.max_samples:
        for role, split in split_of.items():
            if split is not None and len(split) > cfg.max_samples:
                split_of[role] = split.subset(np.arange(cfg.max_samples))
    for role, split in split_of.items():
        labels = _targets(split) if split is not None else None
        if labels is not None and len(labels) and (labels.min() < 0 or labels.max() >= len(raw.classes)):
            raise UserError(f"{role} labels range {labels.min()}..{labels.max()} but the data names "
                            f"{len(raw.classes)} classes")
    counts = "/".join(str(len(split_of[r])) for r in ("train", "val", "test") if split_of[r] is not None)
    return DataBundle(split_of["train"], split_of["val"], split_of["test"], list(raw.classes), raw.channels, raw.size,
                      f"{cfg.source}:{cfg.train} ({counts})")


def _targets(split: Split) -> np.ndarray:
    return np.asarray(split.targets)
