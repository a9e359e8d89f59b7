"""Callbacks: what happens around training, on named events (the Keras/Ultralytics contract).

The trainer calls, in order: `on_train_start()`, then per epoch `on_epoch_start(epoch, steps)`,
`on_batch_end(epoch, batch)` after every batch, `on_log(epoch, batch, speed, window)` every
`train.log_every` batches, `on_train_epoch_end(epoch, train, seconds)` once the training pass is
done, `on_val_start(steps)`, `on_val_batch_end(batch)` and `on_val_end(metrics)` around the
validation pass, `on_epoch_end(epoch, logs)` with the epoch's `EpochRecord` after validation, and
`on_train_end()` when training stops (finished, interrupted or failed). `on_checkpoint_saved(path)`
follows each periodic checkpoint. `epoch` is 0-based (the MXNet log format); `logs.epoch` counts
completed epochs.

Callbacks with `main_only = True` run on rank 0 only under DDP.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepvision.runs.history import EpochRecord

if TYPE_CHECKING:
    from deepvision.engine.trainer import Trainer


class Callback:
    main_only = True

    def set_trainer(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def on_train_start(self) -> None: ...

    def on_epoch_start(self, epoch: int, steps: int) -> None: ...

    def on_batch_end(self, epoch: int, batch: int) -> None: ...

    def on_log(self, epoch: int, batch: int, speed: float, window: dict[str, float]) -> None: ...

    def on_train_epoch_end(self, epoch: int, train: dict[str, float], seconds: float) -> None: ...

    def on_val_start(self, steps: int) -> None: ...

    def on_val_batch_end(self, batch: int) -> None: ...

    def on_val_end(self, metrics: dict[str, float]) -> None: ...

    def on_checkpoint_saved(self, path: Path) -> None: ...

    def on_epoch_end(self, epoch: int, logs: EpochRecord) -> None: ...

    def on_train_end(self) -> None: ...


EVENTS = tuple(name for name in vars(Callback) if name.startswith("on_"))


class CallbackList:
    """Dispatches each event to every callback, in order."""

    def __init__(self, callbacks: list[Callback], trainer: Trainer, is_main: bool) -> None:
        for c in callbacks:
            unknown = [name for name in dir(c) if name.startswith("on_") and name not in EVENTS]
            if unknown:  # a misspelled handler would silently never run
                raise TypeError(f"{type(c).__name__} defines {', '.join(unknown)}, which is no training event; "
                                f"events: {', '.join(EVENTS)}")
        self.callbacks = [c for c in callbacks if is_main or not c.main_only]
        for c in self.callbacks:
            c.set_trainer(trainer)
        # per-batch events are on the hot path: dispatch only to callbacks that override them
        self._batch_end = [c for c in self.callbacks if type(c).on_batch_end is not Callback.on_batch_end]
        self._val_batch_end = [c for c in self.callbacks
                               if type(c).on_val_batch_end is not Callback.on_val_batch_end]

    def __getattr__(self, event: str) -> Any:
        if event not in EVENTS:
            raise AttributeError(f"no training event {event!r}; events: {', '.join(EVENTS)}")

        def dispatch(*args: Any) -> None:
            for c in self.callbacks:
                getattr(c, event)(*args)

        return dispatch

    def on_batch_end(self, epoch: int, batch: int) -> None:
        for c in self._batch_end:
            c.on_batch_end(epoch, batch)

    def on_val_batch_end(self, batch: int) -> None:
        for c in self._val_batch_end:
            c.on_val_batch_end(batch)

    def find(self, kind: type) -> Any:
        return next((c for c in self.callbacks if isinstance(c, kind)), None)
