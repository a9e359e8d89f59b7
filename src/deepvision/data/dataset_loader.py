"""Map-style datasets of (PIL image, label) as a batch source: image folders, list files, HDF5 views.

Each sample is transformed in a worker with a random generator seeded by (seed, epoch, index), so
augmentation does not depend on the worker count and resumed runs replay it exactly.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import default_collate

from deepvision.data.augment_plan import sample_seed
from deepvision.data.loader import BatchSource
from deepvision.data.transforms import SampleTransform
from deepvision.errors import UserError


class DatasetSource(BatchSource):
    """Batches (uint8 N x C x H x W, int64 N) of a map-style dataset, transformed sample by sample.

    With `skip_errors` (data.skip_corrupt) a sample whose reading raises UserError is left out of its
    batch and described by its file; a batch of nothing but such samples keeps its (0, C, H, W) shape.
    """

    prefetch = 4

    def __init__(self, dataset: Any, transform: SampleTransform, *, seed: int = 0, skip_errors: bool = False) -> None:
        self.dataset, self.transform, self.seed, self.skip_errors = dataset, transform, seed, skip_errors

    def __len__(self) -> int:
        return len(self.dataset)

    def make(self, epoch: int, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        samples, skipped = [], []
        for index in indices:
            try:
                img, label = self.dataset[index]
            except UserError:
                if not self.skip_errors:
                    raise
                skipped.append(describe_sample(self.dataset, index))
                continue
            rng = random.Random(sample_seed(self.seed, epoch, index))
            try:
                x = self.transform(img, rng)
            except UserError as exc:  # an image the resize would make too large (augment_plan.short_side_size)
                if not self.skip_errors:
                    raise UserError(f"cannot read {describe_sample(self.dataset, index)}: {exc}") from None
                skipped.append(describe_sample(self.dataset, index))
                continue
            samples.append((x, int(label)))
        if not samples:
            return self._blank()[None][:0], torch.zeros(0, dtype=torch.int64), skipped
        x, y = default_collate(samples)  # in a worker: stacked straight into shared memory
        return x, y, skipped

    def _blank(self) -> torch.Tensor:
        pre = self.transform.pre
        side = max(pre.resize or 0, *pre.size)
        return self.transform(Image.new("L" if pre.channels == 1 else "RGB", (side, side)), random.Random(0))


def describe_sample(dataset: Any, index: int, unknown: str | None = None) -> str:
    """Sample `index` of `dataset` as messages name it: its record (file, 0-based position, id, byte offset),
    else its file, else `unknown` (default "sample N", 0-based)."""
    ds, i = dataset, index
    try:  # through subset views
        while isinstance(getattr(ds, "indices", None), np.ndarray) and "dataset" in vars(ds):
            ds, i = ds.dataset, int(ds.indices[i])
        if callable(getattr(ds, "describe", None)):
            return ds.describe(i)
        paths = getattr(ds, "paths", None)
        if paths is None and getattr(ds, "samples", None) is not None:
            paths = [s[0] for s in ds.samples]
        if paths is not None:
            return str(paths[i])
    except (IndexError, TypeError, KeyError):
        pass
    return unknown or f"sample {index}"

