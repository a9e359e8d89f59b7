"""Checkpointing as a callback: last.pt every epoch, periodic `<prefix>-NNNN.pt`, best.pt.

This callback decides *what* to save, which epoch is best (one place owns last/best) and which
periodic checkpoints retention must spare: those saved just before a learning-rate step (where the
reference's workflow resumes from). The run directory (`RunDir.save_checkpoint`) owns the files: it
writes, links and prunes them, keeping the newest `checkpoint.keep` periodic ones plus the spared.
"""

from __future__ import annotations

import math
from typing import Any

from deepvision.engine.callbacks.base import Callback
from deepvision.engine.distributed import gather_object
from deepvision.runs import checkpoint as ckpt_io
from deepvision.runs.history import EpochRecord, lr_steps


def monitored(row: dict[str, Any], monitor: str) -> float | None:
    """The value of `monitor` in a history row; val_* falls back to train_* when the run has no
    validation split. None when missing or NaN."""
    value = row.get(monitor)
    if value is None and monitor.startswith("val_"):
        value = row.get("train_" + monitor.removeprefix("val_"))
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


class Checkpointer(Callback):
    main_only = False  # every rank's RNG state is gathered (a collective); rank 0 writes

    def __init__(self, history: list[dict[str, Any]], monitor: str, lower_is_better: bool) -> None:
        self.monitor, self.lower = monitor, lower_is_better
        self.best_epoch: int | None = None
        self.best_value: float | None = None
        for row in history:
            if self.is_improvement(row):
                self.best_epoch, self.best_value = row["epoch"], monitored(row, monitor)

    def is_improvement(self, row: dict[str, Any]) -> bool:
        value = monitored(row, self.monitor)
        if value is None:
            return False
        return self.best_value is None or (value < self.best_value if self.lower else value > self.best_value)

    def on_epoch_end(self, epoch: int, logs: EpochRecord) -> None:
        t = self.trainer
        rng = ckpt_io.rng_state()
        if t.dist.enabled:  # every rank's generators, so a resumed DDP run continues each stream
            rng = {"ranks": gather_object(rng, t.dist)}
        if not t.dist.is_main:
            return
        epochs_done = logs.epoch
        row = logs.row()
        best = self.is_improvement(row)
        if best:
            self.best_epoch, self.best_value = epochs_done, monitored(row, self.monitor)
        cc = t.cfg.checkpoint
        periodic = epochs_done % cc.period == 0 or epochs_done == t.cfg.train.epochs
        path = t.run.save_checkpoint(t.checkpoint_payload(epochs_done, rng), epochs_done, prefix=cc.prefix,
                                     periodic=periodic, best=best, keep=cc.keep, protect=self.lr_step_epochs())
        if path is not None:
            t.callbacks.on_checkpoint_saved(path)

    def lr_step_epochs(self) -> set[int]:
        """Completed-epoch counts whose checkpoint precedes a learning-rate step (including the coming
        epoch's rate, when training goes on)."""
        t = self.trainer
        lrs = [row["lr"] for row in t.history if row.get("lr") is not None]
        if len(lrs) < t.cfg.train.epochs:
            lrs.append(t.lr_at(len(lrs)))
        return {epoch - 1 for epoch in lr_steps(lrs)}
