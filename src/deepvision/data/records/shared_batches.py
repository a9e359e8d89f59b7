"""Reusable batch buffers in shared memory, so a worker hands the main process only a slot number."""

from __future__ import annotations

import itertools
import mmap
import os
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import get_worker_info

if TYPE_CHECKING:
    from deepvision.data.records.pipeline import _Spec


def _batch_layout(shape: tuple[int, int, int, int], spec: _Spec) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(shape, order) of the batch in memory: N x H x W x C for channels_last, else N x C x H x W."""
    n, c, h, w = shape
    return ((n, h, w, c), (0, 3, 1, 2)) if spec.channels_last else ((n, c, h, w), (0, 1, 2, 3))


class _SlotPool:
    """Reusable batch buffers in anonymous shared memory, mapped before the workers fork.

    Each worker owns `per_worker` slots. A worker fills a free slot and sends only its number; the
    main process wraps the slot in a tensor and marks it free again when the last tensor or view using
    it is freed. Reusing the buffers saves allocating and page-faulting ~150 KB of fresh shared memory
    per 224 x 224 image. A worker whose slots are all still held (a consumer keeping many batches)
    falls back to a fresh shared-memory batch, so holding batches never blocks the loader.
    """

    def __init__(self, workers: int, per_worker: int, batch_size: int, spec: _Spec) -> None:
        th, tw = spec.size
        nbytes = batch_size * spec.channels * th * tw * spec.dtype.itemsize
        total = workers * per_worker
        self.per_worker, self.spec = per_worker, spec
        self._map = mmap.mmap(-1, total * nbytes + total)  # MAP_SHARED | MAP_ANONYMOUS: inherited by fork
        flat = np.frombuffer(self._map, dtype=np.uint8)
        self.buffers = flat[: total * nbytes].reshape(total, nbytes)
        self.busy = flat[total * nbytes :]
        self.key = next(_POOL_KEYS)
        _POOLS[self.key] = self

    def acquire(self, worker: int) -> int:
        """A free slot of `worker` (now marked busy), or -1 when all of them are in use."""
        start = worker * self.per_worker
        for slot in range(start, start + self.per_worker):
            if not self.busy[slot]:
                self.busy[slot] = 1
                return slot
        return -1

    def release(self, slot: int) -> None:
        self.busy[slot] = 0

    def tensor(self, slot: int, shape: tuple[int, int, int, int], *, release: bool = False) -> torch.Tensor:
        """An N x C x H x W view of the slot in the batch layout. With `release` (main process), the slot
        is marked free when the last tensor or view of it is freed."""
        spec = self.spec
        mem_shape, order = _batch_layout(shape, spec)
        raw = self.buffers[slot][: int(np.prod(shape)) * spec.dtype.itemsize]
        arr = raw.view(spec.dtype).reshape(mem_shape)
        if release:  # torch keeps `arr` itself alive as long as any tensor or view uses its memory
            weakref.finalize(arr, _release_slot, self.busy, slot)
        return torch.from_numpy(arr).permute(*order)


def _new_batch(shape: tuple[int, int, int, int], spec: _Spec) -> torch.Tensor:
    """An uninitialised N x C x H x W batch; in a worker it lives in shared memory already, so handing it
    to the main process copies nothing."""
    mem_shape, order = _batch_layout(shape, spec)
    numel = int(np.prod(shape))
    dtype = torch.from_numpy(np.empty(0, spec.dtype)).dtype
    if get_worker_info() is not None and numel and hasattr(torch.UntypedStorage, "_new_shared"):
        storage = torch.UntypedStorage._new_shared(numel * spec.dtype.itemsize)
        flat = torch.empty(0, dtype=dtype).set_(storage, 0, (numel,), (1,))
        return flat.view(mem_shape).permute(*order)
    return torch.empty(mem_shape, dtype=dtype).permute(*order)


def _release_slot(busy: np.ndarray, slot: int) -> None:
    busy[slot] = 0


_POOLS: weakref.WeakValueDictionary[int, _SlotPool] = weakref.WeakValueDictionary()


_POOL_KEYS = itertools.count()


class _SlotRef:
    """What a worker sends for a batch in a slot; becomes the tensor in the main process (`tensor()`), or a pinned
    copy in the DataLoader's pin-memory thread (`pin_memory()`), which frees the slot at once. A reference the main
    process drops unused (a prefetched batch discarded when an epoch is abandoned) frees its slot too."""

    __slots__ = ("pool", "slot", "shape", "origin", "claimed")

    def __init__(self, pool: int, slot: int, shape: tuple[int, int, int, int]) -> None:
        self.pool, self.slot, self.shape = pool, slot, shape
        self.origin = os.getpid()  # the worker; the copy unpickled in the main process keeps this pid
        self.claimed = False

    def tensor(self) -> torch.Tensor:
        self.claimed = True
        return _POOLS[self.pool].tensor(self.slot, self.shape, release=True)

    def pin_memory(self, device: Any = None) -> torch.Tensor:
        return self.tensor().pin_memory()

    def __del__(self) -> None:
        if not self.claimed and os.getpid() != self.origin:
            pool = _POOLS.get(self.pool)
            if pool is not None:
                pool.release(self.slot)
