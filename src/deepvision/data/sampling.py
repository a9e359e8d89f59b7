"""Epoch orders shared by every loader: seeded reshuffling, DDP sharding and last-batch policies.

The order of epoch `e` depends only on (seed, e), never on earlier epochs, so resuming from a
checkpoint replays exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import torch

from deepvision.errors import UserError

LAST_BATCH = ("keep", "drop", "pad", "rollover")


def default_workers() -> int:
    """Loader worker processes: the cores this process may use (its CPU affinity, so a container's or
    taskset's limit counts), shared among the processes torchrun starts on the node, at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2
    return max(1, min(8, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))))


def epoch_permutation(n: int, seed: int, epoch: int, shuffle: bool) -> torch.Tensor:
    if not shuffle:
        return torch.arange(n)
    g = torch.Generator().manual_seed(_mix(seed, epoch))
    return torch.randperm(n, generator=g)


def _mix(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch) * 7919 + 12345) % (2**63 - 1)


def epoch_indices(n: int, batch_size: int, *, seed: int, epoch: int, shuffle: bool, rank: int = 0, world: int = 1,
                  last_batch: str = "keep", training: bool = True) -> list[torch.Tensor]:
    """The batches (index tensors) rank `rank` reads in epoch `epoch`.

    Training with several ranks pads the order by wrapping so every rank gets the same number of
    batches (as torch's DistributedSampler does). Evaluation never pads: each sample is scored once.
    Sharding interleaves (rank::world), so the union of the ranks' k-th batches is exactly the
    k-th global batch of batch_size * world samples. Under `keep`, a training epoch never ends in a
    batch of one sample: it joins the batch before it.
    """
    if last_batch not in LAST_BATCH:
        raise ValueError(f"last_batch must be one of {LAST_BATCH}, got {last_batch!r}")
    order = epoch_permutation(n, seed, epoch, shuffle)
    if training and last_batch == "rollover" and epoch > 0:
        # Samples left over by the previous epoch come first (MXNet's roll_over).
        prev = epoch_permutation(n, seed, epoch - 1, shuffle)
        carry = _leftover(n, batch_size * world, epoch - 1, seed, shuffle)
        if carry:
            order = torch.cat([prev[n - carry :], order])
    if not training:
        mine = order[rank::world]
        return list(torch.split(mine, batch_size)) if len(mine) else []
    global_batch = batch_size * world
    total = len(order)
    if last_batch in ("drop", "rollover"):
        usable = (total // global_batch) * global_batch
        order = order[:usable]
    elif last_batch == "pad":
        usable = math.ceil(total / global_batch) * global_batch
        order = _wrap(order, usable)
    else:  # keep: pad only to a multiple of world so ranks stay in step
        order = _wrap(order, math.ceil(total / world) * world)
    mine = order[rank::world]
    batches = list(torch.split(mine, batch_size)) if len(mine) else []
    if last_batch == "keep" and len(batches) > 1 and len(batches[-1]) == 1:
        # BatchNorm cannot train on a single sample (PyTorch refuses it): the lone one joins the batch before
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


def _leftover(n: int, global_batch: int, epoch: int, seed: int, shuffle: bool) -> int:
    """How many samples epoch `epoch` left unread under the rollover policy."""
    return ((epoch + 1) * n) % global_batch


def _wrap(order: torch.Tensor, size: int) -> torch.Tensor:
    if size <= len(order):
        return order[:size]
    reps = math.ceil(size / len(order))
    return order.repeat(reps)[:size]


class EpochPlan:
    """Which batches one rank reads in each epoch: the base of `loader.BatchLoader` and of the batch sampler.

    Subclasses set the attributes through `__init__` and read `batches()`; `set_epoch`, `len()` and
    `num_samples` come from here.
    """

    def __init__(self, n: int, batch_size: int, *, seed: int = 0, shuffle: bool = True, training: bool = True,
                 rank: int = 0, world: int = 1, last_batch: str = "keep", max_steps: int | None = None) -> None:
        if last_batch not in LAST_BATCH:
            raise ValueError(f"last_batch must be one of {LAST_BATCH}, got {last_batch!r}")
        self.n, self.batch_size, self.seed = int(n), int(batch_size), int(seed)
        self.shuffle, self.training = shuffle, training
        self.rank, self.world = int(rank), int(world)
        self.last_batch = last_batch
        self.max_steps = max_steps if training else None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def batches(self, epoch: int | None = None) -> list[torch.Tensor]:
        """This rank's batches (index tensors) in `epoch` (default: the current one)."""
        batches = epoch_indices(self.n, self.batch_size, seed=self.seed,
                                epoch=self.epoch if epoch is None else epoch, shuffle=self.shuffle, rank=self.rank,
                                world=self.world, last_batch=self.last_batch, training=self.training)
        return batches[: self.max_steps] if self.max_steps else batches

    def __len__(self) -> int:
        return len(self.batches())

    @property
    def largest_batch(self) -> int:
        """The most samples one batch can hold (a lone last training sample joins the batch before it)."""
        return self.batch_size + 1 if self.training and self.last_batch == "keep" else self.batch_size

    @property
    def num_samples(self) -> int:
        return sum(len(b) for b in self.batches())


_LAST_BATCH_ALIASES = {"discard": "drop", "roll_over": "rollover", "keep": "keep", "drop": "drop", "pad": "pad",
                       "rollover": "rollover"}


class EpochBatchSampler(EpochPlan):
    """Batches of indices for one epoch (`sampling.epoch_indices`): seeded reshuffle, DDP sharding and the
    last-batch policy. Defaults rank/world to the initialised process group."""

    def __init__(self, n: int, batch_size: int, *, seed: int = 0, shuffle: bool = True, training: bool = True,
                 rank: int | None = None, world: int | None = None, last_batch: str = "keep") -> None:
        rank, world = _rank_world(rank, world)
        super().__init__(n, batch_size, seed=seed, shuffle=shuffle, training=training, rank=rank, world=world,
                         last_batch=_last_batch(last_batch))

    def __iter__(self) -> Iterator[list[int]]:
        for b in self.batches():
            yield b.tolist()


def _rank_world(rank: int | None, world: int | None) -> tuple[int, int]:
    if rank is None or world is None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            rank = dist.get_rank() if rank is None else rank
            world = dist.get_world_size() if world is None else world
    rank, world = int(rank or 0), int(world or 1)
    if not 0 <= rank < world:
        raise UserError(f"rank {rank} is not in 0..{world - 1} (num_parts/world {world})")
    return rank, world


def _last_batch(policy: str) -> str:
    if policy not in _LAST_BATCH_ALIASES:
        raise UserError(f"last_batch must be one of {', '.join(LAST_BATCH)}, got {policy!r}")
    return _LAST_BATCH_ALIASES[policy]
