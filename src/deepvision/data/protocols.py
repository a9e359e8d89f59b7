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

from deepvision.errors import UserError


@dataclass
class SkipLog:
    """The samples a loader skipped as unreadable in its last epoch (data.skip_corrupt), one description
    each. Every loader keeps one and fills it the same way whatever its source. At the end of an epoch
    it warns (when `warn` is on) and enforces `limit` (data.max_skipped_fraction, when set). The engine
    turns both off and does them itself across ranks (skipped.txt, one line per epoch)."""

    source: str = "data"
    epoch: list[str] = field(default_factory=list)
    warn: bool = True
    limit: float | None = None

    def begin(self) -> None:
        self.epoch = []

    def add(self, described: list[str]) -> None:
        self.epoch.extend(described)

    def end(self, epoch: int, scored: int) -> None:
        """Close the epoch's record: one UserWarning when something was skipped and `warn` is on; a
        UserError when `limit` is set and the skipped samples exceed it."""
        if not self.epoch:
            return
        if self.warn:
            warnings.warn(f"{self.source}: skipped {len(self.epoch)} unreadable sample(s) in epoch {epoch} "
                          f"(data.skip_corrupt; first: {self.epoch[0]})", stacklevel=3)
        if self.limit is not None:
            check_skip_limit(len(self.epoch), scored, self.limit, self.source, f"first: {self.epoch[0]}")


def check_skip_limit(count: int, scored: int, limit: float, what: str, listed: str, training: bool = True) -> None:
    """Raise UserError when nothing was left to use or more than `limit` of the samples were skipped."""
    total = count + scored
    if scored == 0:
        raise UserError(f"all {total} {what} samples are unreadable ({listed}); nothing to "
                        f"{'train' if training else 'score'} on: repair or remove those files")
    if count > limit * total:
        raise UserError(f"{count} of {total} {what} samples are unreadable ({listed}), more than "
                        f"data.max_skipped_fraction={limit:g}; repair or remove those files")


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
