"""Worker-process loader for datasets read from files (image folders, list files, records).

Each sample is transformed inside a worker with a random generator seeded by (seed, epoch, index),
so augmentation does not depend on the worker count and resumed runs replay it exactly.
"""

from __future__ import annotations

import random
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from deepvision.data.sampling import EpochPlan, default_workers
from deepvision.data.transforms import SampleTransform, sample_seed
from deepvision.errors import UserError


class _Keyed(Dataset):
    """Dataset addressed by (index, epoch) keys, applying the seeded per-sample transform."""

    def __init__(self, dataset: Any, transform: SampleTransform, seed: int, skip_errors: bool = False) -> None:
        self.dataset, self.transform, self.seed, self.skip_errors = dataset, transform, seed, skip_errors

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, epoch = key
        try:
            img, label = self.dataset[index]
        except UserError:
            if not self.skip_errors:
                raise
            # an unreadable sample (data.skip_corrupt): a blank stand-in labelled -(index + 1), dropped after
            # collation, so even a batch of nothing but bad files keeps its (0, C, H, W) shape and its place
            return self._blank(), -(index + 1)
        rng = random.Random(sample_seed(self.seed, epoch, index))
        return self.transform(img, rng), int(label)

    def _blank(self) -> torch.Tensor:
        pre = self.transform.pre
        side = max(pre.resize or 0, *pre.size)
        return self.transform(Image.new("L" if pre.channels == 1 else "RGB", (side, side)), random.Random(0))


class _EpochBatches:
    """The DataLoader's batch sampler; holds its loader weakly so no reference cycle keeps workers alive."""

    def __init__(self, loader: DatasetLoader) -> None:
        self._loader = weakref.ref(loader)

    @property
    def loader(self) -> DatasetLoader:
        loader = self._loader()
        if loader is None:
            raise RuntimeError("the DatasetLoader was garbage-collected")
        return loader

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.loader.epoch
        for batch in self.loader.batches():
            yield [(i, epoch) for i in batch.tolist()]

    def __len__(self) -> int:
        return len(self.loader.batches())


class DatasetLoader(EpochPlan):
    """Batches (uint8 N x C x H x W, int64 N) from a map-style dataset of (PIL image, label)."""

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        *,
        training: bool,
        transform: SampleTransform,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        last_batch: str = "keep",
        workers: int | None = None,
        max_steps: int | None = None,
        pin_memory: bool = False,
        skip_errors: bool = False,
    ) -> None:
        super().__init__(len(dataset), batch_size, seed=seed, shuffle=shuffle and training, training=training,
                         rank=rank, world=world, last_batch=last_batch, max_steps=max_steps)
        self.dataset, self.skip_errors = dataset, skip_errors
        workers = default_workers() if workers is None else workers
        self._loader = DataLoader(
            _Keyed(dataset, transform, seed, skip_errors),
            batch_sampler=_EpochBatches(self),
            num_workers=workers,
            pin_memory=pin_memory,
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
            # A private generator: building the worker iterator must not draw from the global RNG,
            # or a resumed run's dropout masks would differ from an uninterrupted run's.
            generator=torch.Generator().manual_seed(seed),
        )

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.skips.begin()
        try:
            for x, y in self._loader:
                if self.skip_errors:
                    keep = y >= 0
                    if not bool(keep.all()):
                        self.skips.add([self._describe(int(-v) - 1) for v in y[~keep].tolist()])
                        x, y = x[keep], y[keep]
                yield x, y.to(torch.int64)
        except UserError as exc:  # re-raised from a worker with its traceback in the message
            raise UserError(worker_message(exc)) from None
        self.skips.end(self.epoch)

    def _describe(self, index: int) -> str:
        """The file of sample `index` (through subset views), when the dataset lists its files."""
        ds, i = self.dataset, index
        try:
            while isinstance(getattr(ds, "indices", None), np.ndarray) and "dataset" in vars(ds):
                ds, i = ds.dataset, int(ds.indices[i])
            paths = getattr(ds, "paths", None)
            if paths is None and getattr(ds, "samples", None) is not None:
                paths = [s[0] for s in ds.samples]
            return str(paths[i]) if paths is not None else f"sample {index}"
        except (IndexError, TypeError, KeyError):
            return f"sample {index}"

    def close(self) -> None:
        """Stop the worker processes now (they would otherwise live until garbage collection)."""
        iterator = getattr(self._loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        self._loader._iterator = None


def worker_message(exc: BaseException) -> str:
    """The one-line message of an error a DataLoader worker raised (without the worker's traceback)."""
    text = str(exc)
    if "Original Traceback" not in text:
        return text
    for line in reversed(text.strip().splitlines()):
        name, sep, message = line.partition(": ")
        if sep and name.endswith(type(exc).__name__):
            return message
    return text.strip().splitlines()[-1]
