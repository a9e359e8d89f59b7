"""Data sources by name (`data.source` in a config) and the generic split logic around them.

A source turns a `DataConfig` into named splits. Small datasets come back as `TensorSplit`s (uint8
tensors, batched by indexing); large ones as datasets read by worker processes. `load_data` then
maps the config's train/val/test roles onto those splits, carves seeded stratified validation/test
splits out of the training part when asked, and `build_loaders` makes the per-role loaders.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import deepvision.data.builtin_sources  # noqa: F401  (registers the built-in sources)
from deepvision.config.names import source_option_keys
from deepvision.config.schema import DataConfig
from deepvision.data.source_registry import RawData, registered_sources, task_of_source
from deepvision.data.splits import stratified_split
from deepvision.data.tensors import Split, SubsetDataset, TensorSplit, adapt_tensor_split, to_tensor_split
from deepvision.errors import UserError, unknown

__all__ = ["DATA_FORMS", "DataBundle", "RawData", "Split", "SubsetDataset", "TensorSplit", "adapt_tensor_split",
           "data_config_for_path", "load_data", "to_tensor_split"]

DATA_FORMS = "a folder of class sub-folders, a .lst, a .rec or an HDF5 file"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


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


def _is_hdf5(path: Path) -> bool:
    if path.suffix.lower() in (".hdf5", ".h5", ".he5", ".hdf"):
        return True
    from deepvision.fileio import open_regular_file

    try:
        with open_regular_file(path) as f:
            return f.read(8) == HDF5_SIGNATURE
    except OSError:
        return False


def data_config_for_path(cfg: DataConfig, data: str | Path, image_root: str | None = None) -> DataConfig:
    """A copy of `cfg` whose training split is every sample of the data at `data`, in any form training
    reads from a path: a folder of class sub-folders, a .lst list (images under `image_root`, default
    its folder), a .rec (or .idx) record file, or an HDF5 image file (.hdf5/.h5 or the HDF5 signature).
    No validation or test split is carved from it."""
    path = Path(data)
    if not path.exists():
        raise UserError(f"data not found: {data} (give {DATA_FORMS})")
    d = copy.deepcopy(cfg)
    d.val, d.test, d.val_fraction, d.test_fraction, d.max_samples = None, None, 0.0, 0.0, None
    if path.is_dir():
        d.source, d.root, d.train = "folder", str(path), "."
    elif path.suffix == ".lst":
        d.source, d.train, d.root = "lst", str(path.absolute()), image_root or str(path.parent)  # read as given
    elif path.suffix in (".rec", ".idx"):
        d.source, d.train, d.root = "rec", str(path.with_suffix(".rec")), None
    elif _is_hdf5(path):
        d.source, d.train, d.root = "hdf5", str(path), None
    else:
        raise UserError(f"{data}: give {DATA_FORMS}")
    d.options = {k: v for k, v in d.options.items() if k in source_option_keys(d.source, d.options)}
    return d


def load_data(cfg: DataConfig, roles: tuple[str, ...] = ("train", "val", "test")) -> DataBundle:
    """Load the splits a config asks for and assign train/val/test roles.

    Only the named `roles` are read (training needs no test file); the training split is always read,
    since validation and test parts may be carved out of it. With both `data.val` and `data.val_fraction`
    set, the named split is used when the data has it, else the fraction is carved.
    """
    sources = registered_sources()
    if task := task_of_source(cfg.source):  # callers read classification splits, whatever the config's task
        raise UserError(f"data.source {cfg.source} is read by the {task} task only (task: {task} with a {task} "
                        f"model), not as classification data")
    if cfg.source not in sources:
        raise unknown("data source", cfg.source, sources)
    defaults = DataConfig()
    read = [r for r in ("train", "val", "test") if r == "train" or r in roles or (r == "test" and cfg.test_fraction)]
    raw = sources[cfg.source](cfg, list(dict.fromkeys(getattr(cfg, role) for role in read if getattr(cfg, role))))
    split_of: dict[str, Split | None] = {}
    for role in ("train", "val", "test"):
        name = getattr(cfg, role)
        if not name or role not in read:  # a test split is looked for when one would be carved over it
            split_of[role] = None
        elif name in raw.splits:
            split_of[role] = raw.splits[name]
        elif role == "test" and name == defaults.test:
            split_of[role] = None  # the default test split is optional
        elif role == "val" and cfg.val_fraction > 0:
            split_of[role] = None  # no such split: val_fraction of the training split is carved instead
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
            if role == "val" and split_of[role] is not None:
                continue  # the data has the named val split: val_fraction is only the fallback
            if split_of[role] is not None:
                cfg.refuse_carving_over(role)
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
