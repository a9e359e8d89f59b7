"""One loader for every source: a `BatchSource` makes batches, a `BatchLoader` runs it.

A source is a dataset plus the maker of its batches: `make(epoch, indices)` returns one batch and the
samples it skipped as unreadable. Tensors (`tensor_loader`), files and HDF5-backed datasets
(`dataset_loader`), record files with CPU or nvJPEG decoding (`records.loader`) and detection indexes
(`detection.loader`) are sources. The loader owns everything else, the same way for each of them:

* sampling: epoch orders from (seed, epoch) alone, sharded across ranks, with the last-batch policy and
  `max_steps` (`sampling.EpochPlan`);
* where batches are made: inline (tensors already on the device), in worker processes (a `DataLoader`
  over (epoch, indices) tasks that keeps decoding across epoch boundaries), or in a thread with its own
  CUDA stream (nvJPEG);
* pinned batches, the move to `device` and the normalisation there (uint8 crosses the bus);
* the skip record (`protocols.SkipLog`) and the skip limit (`data.max_skipped_fraction`).
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing as mp
import queue
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from deepvision.data.protocols import SkipLog
from deepvision.data.sampling import EpochPlan, default_workers
from deepvision.errors import UserError

RUN_IN = ("inline", "workers", "thread")


class BatchSource:
    """A dataset and the maker of its batches. Subclasses set `run_in` and implement `__len__` and `make`.

    run_in: "inline" (the main thread, e.g. tensors on the GPU), "workers" (worker processes) or "thread"
    (a thread that runs ahead, e.g. nvJPEG decoding on its own CUDA stream).
    """

    run_in = "workers"
    name = "data"  # what the skip warning names
    prefetch = 2  # batches each worker (or the thread) prepares ahead

    def __len__(self) -> int:
        raise NotImplementedError

    def make(self, epoch: int, indices: list[int]) -> tuple[Any, Any, list[str]]:
        """(inputs, targets, one description per sample skipped as unreadable) for dataset samples
        `indices` in epoch `epoch`. An unreadable sample raises UserError unless the source skips them."""
        raise NotImplementedError

    def finish(self, x: Any, y: Any) -> tuple[Any, Any]:
        """In the main process: the batch's tensors from what `make` returned (where a worker sent
        something lighter than tensors)."""
        return x, y

    def start_workers(self, workers: int, largest_batch: int) -> None:
        """Called once before the worker processes fork."""

    def fork_context(self) -> contextlib.AbstractContextManager[None]:
        """Held while worker processes fork."""
        return contextlib.nullcontext()


class _Tasks:
    """Sampler of (epoch, indices) tasks: the batches of epoch `loader._stream_start`, then of the following
    epochs, so the workers keep working across epoch boundaries instead of idling while the last batches
    drain. The loader counts batches per epoch and restarts the stream when the next epoch is not the one
    that follows. Held by weak reference, so a dropped loader is freed at once and its workers stop."""

    def __init__(self, loader: BatchLoader) -> None:
        self.loader = weakref.ref(loader)

    def _owner(self) -> BatchLoader:
        loader = self.loader()
        if loader is None:
            raise RuntimeError("the loader of this sampler was garbage-collected")
        return loader

    def __iter__(self) -> Iterator[tuple[int, list[int]]]:
        epoch = self._owner()._stream_start
        while True:
            batches = self._owner().batches(epoch)
            if not batches:
                return
            for b in batches:
                yield epoch, b.tolist()
            epoch += 1

    def __len__(self) -> int:
        return len(self._owner().batches())


class _Worker(Dataset):
    """The source as a DataLoader dataset keyed by tasks. A UserError comes back as a value, so the main
    process raises it with its own one-line message instead of the worker's traceback."""

    def __init__(self, source: BatchSource) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, task: tuple[int, list[int]]) -> Any:
        try:
            return self.source.make(*task)
        except UserError as exc:
            return exc


class BatchLoader(EpochPlan):
    """Batches of one role for one rank from any `BatchSource` (the engine's `protocols.Loader`).

    workers: processes for a "workers" source (default: `sampling.default_workers()`; 0 makes batches in
    the main process). pin_memory: page-locked batches for fast copies to CUDA. device: where batches
    go (None: left where the source made them). normalize: per-channel (a, b), 1 x C x 1 x 1, applied on
    `device` as float32 x * a + b. min_batch: in training, a trailing batch smaller than this is dropped.
    max_skipped_fraction: the loader raises after an epoch that skipped more than this fraction of its
    samples (None: no limit here, as when the engine checks it across ranks).
    """

    def __init__(self, source: BatchSource, batch_size: int, *, training: bool, shuffle: bool = True,
                 seed: int = 0, rank: int = 0, world: int = 1, last_batch: str = "keep",
                 max_steps: int | None = None, workers: int | None = None, pin_memory: bool = False,
                 device: torch.device | str | None = None, normalize: tuple[torch.Tensor, torch.Tensor] | None = None,
                 prefetch: int | None = None, min_batch: int = 1, max_skipped_fraction: float | None = None) -> None:
        if source.run_in not in RUN_IN:
            raise ValueError(f"source.run_in must be one of {RUN_IN}, got {source.run_in!r}")
        super().__init__(len(source), batch_size, seed=seed, shuffle=shuffle and training, training=training,
                         rank=rank, world=world, last_batch=last_batch, max_steps=max_steps)
        self.source, self.min_batch = source, int(min_batch)
        self.workers = default_workers() if workers is None else int(workers)
        self.pin_memory = bool(pin_memory)
        self.device = torch.device(device) if device is not None else None
        self.normalize = normalize
        self.prefetch = max(1, int(prefetch if prefetch is not None else source.prefetch))
        self.skips = SkipLog(source.name, limit=max_skipped_fraction)  # what the last epoch skipped as unreadable
        self._loader: DataLoader | None = None
        self._stream: Iterator[Any] | None = None  # the DataLoader iterator over `_Tasks`
        self._stream_start = 0
        self._stream_next: int | None = None  # the epoch the stream is positioned at, None: mid-epoch
        self._finalizer: weakref.finalize | None = None

    def batches(self, epoch: int | None = None) -> list[torch.Tensor]:
        out = super().batches(epoch)
        return out[:-1] if self.training and out and len(out[-1]) < self.min_batch else out

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        epoch = self.epoch
        self.skips.begin()
        scored = 0
        made = {"inline": self._made_inline, "workers": self._made_by_workers, "thread": self._made_by_thread}
        for x, y, skipped in made[self.source.run_in](epoch):
            self.skips.add(skipped)
            x, y = self._finish(x, y)
            scored += len(y)
            yield x, y
        self.skips.end(epoch, scored)

    def _made_inline(self, epoch: int) -> Iterator[tuple[Any, Any, list[str]]]:
        for b in self.batches(epoch):
            yield self.source.make(epoch, b.tolist())

    def _made_by_workers(self, epoch: int) -> Iterator[tuple[Any, Any, list[str]]]:
        count = len(self.batches(epoch))
        stream = self._stream_at(epoch)
        for done in range(1, count + 1):
            try:
                item = next(stream)
            except BaseException:
                self._stream = None
                raise
            if isinstance(item, UserError):
                self._stream = None
                raise item
            if done == count:
                self._stream_next = epoch + 1  # the workers are already making the next epoch's batches
            yield item

    def _made_by_thread(self, epoch: int) -> Iterator[tuple[Any, Any, list[str]]]:
        """A thread makes up to `prefetch` batches ahead, on its own CUDA stream when the source's device
        is a GPU, while the model trains on the current one."""
        batches = [b.tolist() for b in self.batches(epoch)]
        device = getattr(self.source, "device", None)
        cuda = device is not None and torch.device(device).type == "cuda"
        results: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def put(item: Any) -> None:
            while not stop.is_set():
                with contextlib.suppress(queue.Full):
                    results.put(item, timeout=0.1)
                    return

        def produce() -> None:
            stream = torch.cuda.Stream(device) if cuda else None
            try:
                for idx in batches:
                    if stop.is_set():
                        return
                    with torch.cuda.stream(stream) if cuda else contextlib.nullcontext():
                        item = self.source.make(epoch, idx)
                    if cuda:
                        stream.synchronize()
                    put(item)
            except BaseException as exc:  # handed to the consumer, raised there
                put(exc)

        thread = threading.Thread(target=produce, name="deepvision-batches", daemon=True)
        thread.start()
        # a daemon thread still inside a torch op when the interpreter finalizes aborts the whole process
        halt = atexit.register(lambda: (stop.set(), thread.join(timeout=10)))  # ("terminate called without ...")
        try:
            for _ in batches:
                item = results.get()
                if isinstance(item, BaseException):
                    raise item
                if cuda:  # made on the producer's stream: keep its memory until this stream is done with it
                    item[0].record_stream(torch.cuda.current_stream(device))
                yield item
        finally:
            stop.set()
            thread.join()
            atexit.unregister(halt)

    def _finish(self, x: Any, y: Any) -> tuple[Any, Any]:
        x, y = self.source.finish(x, y)
        if self.device is not None:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        if self.normalize is not None:
            a, b = (t.to(x.device) for t in self.normalize)
            x = x.to(torch.float32).mul_(a).add_(b)
        return x, y

    def _data_loader(self) -> DataLoader:
        if self._loader is None:
            workers = self.workers
            context = "fork" if workers > 0 and "fork" in mp.get_all_start_methods() else None
            if context:
                self.source.start_workers(workers, self.largest_batch)
            self._loader = DataLoader(_Worker(self.source), batch_size=None, sampler=_Tasks(self), num_workers=workers,
                multiprocessing_context=context, pin_memory=self.pin_memory, persistent_workers=workers > 0,
                prefetch_factor=self.prefetch if workers > 0 else None,
                # a private generator: starting the workers must not draw from the global RNG, or a
                # resumed run's dropout masks would differ from an uninterrupted run's
                generator=torch.Generator().manual_seed(self.seed))
            if workers > 0:
                # Stop the persistent workers when this loader dies, even inside a garbage cycle: the
                # finalizer runs before the collector tears the loader's queues apart.
                self._finalizer = weakref.finalize(self, _stop_workers, self._loader)
        return self._loader

    def _stream_at(self, epoch: int) -> Iterator[Any]:
        """The task stream positioned at the first batch of `epoch` (restarted unless it is already there)."""
        if self._stream is None or self._stream_next != epoch:
            self._stream_start = epoch
            with self.source.fork_context():
                self._stream = iter(self._data_loader())  # forks the workers the first time (they persist)
        self._stream_next = None  # in progress until this epoch's batches are all consumed
        return self._stream

    def close(self) -> None:
        """Stop the worker processes now (they also stop when the loader is garbage-collected)."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._loader = self._stream = None

    def __enter__(self) -> BatchLoader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_loader": None, "_finalizer": None, "_stream": None, "_stream_next": None}


def _stop_workers(loader: DataLoader) -> None:
    it = getattr(loader, "_iterator", None)
    if it is not None and hasattr(it, "_shutdown_workers"):
        if getattr(it, "_worker_pids_set", False):  # a worker the signal that stops us killed is no error now
            torch.utils.data._utils.signal_handling._remove_worker_pids(id(it))
            it._worker_pids_set = False
        it._shutdown_workers()
    loader._iterator = None
