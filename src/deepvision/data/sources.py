"""Data sources by name (`data.source` in a config) and the generic split logic around them.

A source turns a `DataConfig` into named splits. Small datasets come back as `TensorSplit`s (uint8
tensors, batched by indexing); large ones as datasets read by worker processes. `load_data` then
maps the config's train/val/test roles onto those splits, carves seeded stratified validation/test
splits out of the training part when asked, and `build_loaders` makes the per-role loaders.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F

from deepvision.config.schema import DataConfig
from deepvision.data.splits import stratified_split
from deepvision.errors import UserError, unknown


@dataclass
class TensorSplit:
    """A split held in memory: uint8 images N x C x H x W and int64 labels N."""

    images: torch.Tensor
    labels: torch.Tensor

    @property
    def targets(self) -> np.ndarray:
        return self.labels.numpy()

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: np.ndarray) -> TensorSplit:
        t = torch.as_tensor(idx, dtype=torch.long)
        return TensorSplit(self.images.index_select(0, t), self.labels.index_select(0, t))


class SubsetDataset(torch.utils.data.Dataset):
    """A view of a file dataset restricted to some indices; keeps `targets` for stratification."""

    def __init__(self, dataset: Any, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)

    @property
    def targets(self) -> np.ndarray:
        return np.asarray(self.dataset.targets)[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.dataset[int(self.indices[i])]

    def subset(self, idx: np.ndarray) -> SubsetDataset:
        return SubsetDataset(self.dataset, self.indices[np.asarray(idx)])

    def __getattr__(self, name: str) -> Any:  # e.g. a record dataset's `read_raw`
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


Split = Union[TensorSplit, Any]  # noqa: UP007  (a TensorSplit, or a map-style dataset with `targets`)


@dataclass
class RawData:
    """What a source returns: its splits by name plus what it knows about the images."""

    splits: dict[str, Split]
    classes: list[str]
    channels: int
    size: tuple[int, int] | None  # stored (H, W) when all samples share one, else None
    info: dict[str, Any] = field(default_factory=dict)


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


SourceFn = Callable[[DataConfig, list[str]], RawData]
_SOURCES: dict[str, SourceFn] = {}


def register_source(name: str) -> Callable[[SourceFn], SourceFn]:
    """Register `fn(cfg, wanted_split_names) -> RawData` under `data.source: name`."""

    def wrap(fn: SourceFn) -> SourceFn:
        _SOURCES[name] = fn
        return fn

    return wrap


def list_sources() -> list[str]:
    _ensure_loaded()
    return sorted(_SOURCES)


def _ensure_loaded() -> None:
    import deepvision.data.builtin_sources  # registers the built-in sources

    with contextlib.suppress(ImportError):
        import deepvision.data.record_source  # noqa: F401


def load_data(cfg: DataConfig, roles: tuple[str, ...] = ("train", "val", "test")) -> DataBundle:
    """Load the splits a config asks for and assign train/val/test roles.

    Only the named `roles` are read (training needs no test file); the training split is always read,
    since validation and test parts may be carved out of it.
    """
    _ensure_loaded()
    if cfg.source not in _SOURCES:
        raise unknown("data source", cfg.source, _SOURCES)
    defaults = DataConfig()
    wanted = [getattr(cfg, role) for role in ("train", "val", "test") if role == "train" or role in roles]
    raw = _SOURCES[cfg.source](cfg, list(dict.fromkeys(name for name in wanted if name)))
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


# -- tensor helpers shared by in-memory sources ------------------------------------------------------
def to_tensor_split(images: np.ndarray, labels: np.ndarray) -> TensorSplit:
    """N x H x W (grayscale) or N x H x W x C uint8 arrays -> TensorSplit in NCHW."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2).contiguous()
    return TensorSplit(x, torch.from_numpy(np.asarray(labels, dtype=np.int64)))


def adapt_tensor_split(
    split: TensorSplit, channels: int, size: tuple[int, int] | None, resize: int | None, crop: bool = False
) -> TensorSplit:
    """Convert stored tensors to the configured channels and stored size (once, at load time).

    With `crop` (random crops in training, centre crops in evaluation) images at least as large as
    `size` keep their native size; the loader crops them.
    """
    x = split.images
    if x.shape[1] != channels:
        if channels == 3:
            x = x.expand(-1, 3, -1, -1).contiguous()
        else:
            w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            x = (x.float() * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    h, w_ = x.shape[-2:]
    target = None
    if resize:
        target = (resize, w_ * resize // h) if h <= w_ else (h * resize // w_, resize)
    elif size is not None and (h, w_) != tuple(size) and not (crop and h >= size[0] and w_ >= size[1]):
        target = tuple(size)
    if target is not None and target != (h, w_):
        x = F.interpolate(x.float(), size=target, mode="bilinear", antialias=True, align_corners=False)
        x = x.round().clamp(0, 255).to(torch.uint8)
    return TensorSplit(x, split.labels)
