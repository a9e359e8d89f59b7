"""The declared interfaces between data sources, loaders and the engine.

A `Loader` is what the engine iterates: batches of (inputs, targets) for one role, whose order and
augmentation depend only on (seed, epoch). A split that has a fast loader of its own (record files)
declares it by implementing `LoaderFactory`; `loaders.build_loaders` checks for the protocol, not
for attribute names.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Loader(Protocol):
    """Batches of one role for one rank."""

    def __iter__(self) -> Iterator[tuple[Any, Any]]: ...

    def __len__(self) -> int:
        """Batches per epoch on this rank."""

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration yields."""


@runtime_checkable
class LoaderFactory(Protocol):
    """A split that builds its own loader (records: the fused decode + augment pipeline)."""

    def make_loader(self, cfg: Any, pre: Any, *, batch_size: int, device: Any, training: bool, shuffle: bool,
                    seed: int, rank: int, world: int, last_batch: str, max_steps: int | None) -> Loader: ...


def close_loader(loader: Any) -> None:
    """Stop a loader's worker processes, when it has any."""
    close = getattr(loader, "close", None)
    if close is not None:
        close()
