"""The declared interfaces between data sources, loaders and the engine.

A `Loader` is what the engine iterates: batches of (inputs, targets) for one role, whose order and
augmentation depend only on (seed, epoch), and a `SkipLog` of the samples it skipped as unreadable in
its last epoch. A split that has a fast loader of its own (record files) declares it by implementing
`LoaderFactory`; `loaders.build_loaders` checks for the protocol, not for attribute names.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass
class SkipLog:
    """The samples a loader skipped as unreadable in its last epoch (data.skip_corrupt), one description
    each. Every loader keeps one; the engine reads `epoch` after each pass and turns `warn` off because it
    reports skips itself (skipped.txt, data.max_skipped_fraction)."""

    source: str = "data"
    epoch: list[str] = field(default_factory=list)
    warn: bool = True

    def begin(self) -> None:
        self.epoch = []

    def add(self, described: list[str]) -> None:
        self.epoch.extend(described)

    def end(self, epoch: int) -> None:
        """Close the epoch's record: one UserWarning when something was skipped and `warn` is on."""
        if self.epoch and self.warn:
            warnings.warn(f"{self.source}: skipped {len(self.epoch)} unreadable sample(s) in epoch {epoch} "
                          f"(data.skip_corrupt; first: {self.epoch[0]})", stacklevel=3)


@runtime_checkable
class Loader(Protocol):
    """Batches of one role for one rank."""

    def __iter__(self) -> Iterator[tuple[Any, Any]]: ...

    def __len__(self) -> int:
        """Batches per epoch on this rank."""

    skips: SkipLog

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
