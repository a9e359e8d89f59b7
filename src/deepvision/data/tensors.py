"""In-memory and index-view splits, and the tensor helpers shared by in-memory sources."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F

from deepvision.safeload import check_declared_bytes


@dataclass
class TensorSplit:
    """A split held in memory: uint8 images N x C x H x W and int64 labels N; `origin`, for rows read from a
    file, is its (st_dev, st_ino) and each row's number there (a file given as two splits shares rows)."""

    images: torch.Tensor
    labels: torch.Tensor
    origin: tuple[tuple[int, int], np.ndarray] | None = None

    @property
    def targets(self) -> np.ndarray:
        return self.labels.numpy()

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: np.ndarray) -> TensorSplit:
        t = torch.as_tensor(idx, dtype=torch.long)
        origin = None if self.origin is None else (self.origin[0], self.origin[1][np.asarray(idx)])
        return TensorSplit(self.images.index_select(0, t), self.labels.index_select(0, t), origin)


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


def to_tensor_split(images: np.ndarray, labels: np.ndarray, origin: str | os.PathLike | None = None) -> TensorSplit:
    """N x H x W (grayscale) or N x H x W x C uint8 arrays -> TensorSplit in NCHW; `origin`: the file read."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2).contiguous()
    rows = None if origin is None else (((st := os.stat(origin)).st_dev, st.st_ino), np.arange(len(labels)))
    return TensorSplit(x, torch.from_numpy(np.asarray(labels, dtype=np.int64)), rows)


def stored_size(h: int, w: int, size: tuple[int, int] | None, resize: int | None,
                crop: bool = False) -> tuple[int, int]:
    """The height and width `adapt_tensor_split` stores h x w images at (known before any is converted)."""
    if resize:
        return (resize, w * resize // h) if h <= w else (h * resize // w, resize)
    if size is not None and (h, w) != tuple(size) and not (crop and h >= size[0] and w >= size[1]):
        return (size[0], size[1])
    return (h, w)


def adapt_tensor_split(split: TensorSplit, channels: int, size: tuple[int, int] | None, resize: int | None,
                       crop: bool = False) -> TensorSplit:
    """Convert stored tensors to the configured channels and stored size (once, at load time). With `crop` (random
    crops in training, centre crops in evaluation) images at least as large as `size` keep their native size; the
    loader crops them."""
    x = split.images
    if x.shape[1] != channels:
        if channels == 3:
            x = x.expand(-1, 3, -1, -1).contiguous()
        else:
            w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            x = (x.float() * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    h, w_ = x.shape[-2:]
    target = stored_size(h, w_, size, resize, crop)
    if target != (h, w_):
        check_declared_bytes(f"{'data.resize' if resize else 'data.image_size'} for this in-memory split ({len(x):,} "
                             f"images at {target[0]}x{target[1]})", torch.Size((len(x), x.shape[1], *target)).numel())
        out = torch.empty((len(x), x.shape[1], *target), dtype=torch.uint8)
        for i in range(0, len(x), 256):  # in chunks: the float copy stays small
            part = F.interpolate(x[i : i + 256].float(), size=target, mode="bilinear", antialias=True,
                                 align_corners=False)
            out[i : i + 256] = part.round().clamp(0, 255).to(torch.uint8)
        x = out
    return TensorSplit(x, split.labels, split.origin)
