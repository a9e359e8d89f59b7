"""Worker-process loader for datasets read from files (image folders, list files, records).

Each sample is transformed inside a worker with a random generator seeded by (seed, epoch, index),
so augmentation does not depend on the worker count and resumed runs replay it exactly.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from deepvision.data.sampling import epoch_indices
from deepvision.data.transforms import SampleTransform, sample_seed


class _Keyed(Dataset):
    """Dataset addressed by (index, epoch) keys, applying the seeded per-sample transform."""

    def __init__(self, dataset: Any, transform: SampleTransform, seed: int) -> None:
        self.dataset, self.transform, self.seed = dataset, transform, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, epoch = key
        img, label = self.dataset[index]
        rng = random.Random(sample_seed(self.seed, epoch, index))
        return self.transform(img, rng), int(label)


class _EpochBatches:
    def __init__(self, loader: DatasetLoader) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.loader.epoch
        for batch in self.loader._batches():
            yield [(i, epoch) for i in batch.tolist()]

    def __len__(self) -> int:
        return len(self.loader._batches())


def default_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 2)))


class DatasetLoader:
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
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.training = training
        self.shuffle = shuffle and training
        self.seed, self.rank, self.world = seed, rank, world
        self.last_batch = last_batch
        self.max_steps = max_steps if training else None
        self.epoch = 0
        workers = default_workers() if workers is None else workers
        self._loader = DataLoader(
            _Keyed(dataset, transform, seed),
            batch_sampler=_EpochBatches(self),
            num_workers=workers,
            pin_memory=pin_memory,
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[torch.Tensor]:
        batches = epoch_indices(
            len(self.dataset), self.batch_size, seed=self.seed, epoch=self.epoch, shuffle=self.shuffle,
            rank=self.rank, world=self.world, last_batch=self.last_batch, training=self.training,
        )
        return batches[: self.max_steps] if self.max_steps else batches

    def __len__(self) -> int:
        return len(self._batches())

    @property
    def num_samples(self) -> int:
        return sum(len(b) for b in self._batches())

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self._loader:
            yield x, y.to(torch.int64)
