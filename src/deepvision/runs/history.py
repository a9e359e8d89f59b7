"""The history schema, defined once: one typed record per epoch and the `history.csv` columns.

A task names its metrics (classification: loss, acc, top5); an epoch's record holds the training
and validation values of those metrics, and `row()` flattens it into the history columns

    epoch, lr, train_<metric>..., val_<metric>..., samples_per_s, seconds

so `history.csv`, the checkpoint's history, TensorBoard, plots and the journal all read the same names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

CLASSIFICATION_METRICS = ("loss", "acc", "top5")


def history_fields(train_metrics: tuple[str, ...] = CLASSIFICATION_METRICS,
                   val_metrics: tuple[str, ...] = CLASSIFICATION_METRICS) -> list[str]:
    """The `history.csv` columns for a task's metrics."""
    return ["epoch", "lr", *(f"train_{m}" for m in train_metrics), *(f"val_{m}" for m in val_metrics),
            "samples_per_s", "seconds"]


HISTORY_FIELDS = history_fields()  # classification runs


@dataclass
class EpochRecord:
    """What one epoch produced: fed to every callback's `on_epoch_end(epoch, logs)`."""

    epoch: int  # 1-based count of completed epochs
    lr: float
    train: dict[str, float]
    val: dict[str, float] | None
    samples_per_s: float
    seconds: float
    fields: list[str] = field(default_factory=lambda: list(HISTORY_FIELDS))

    def row(self) -> dict[str, Any]:
        """The flat history row (every schema column; None where there is no value)."""
        flat: dict[str, Any] = {"epoch": self.epoch, "lr": self.lr, "samples_per_s": self.samples_per_s,
                                "seconds": self.seconds}
        flat.update({f"train_{k}": v for k, v in self.train.items() if k != "count"})
        flat.update({f"val_{k}": v for k, v in (self.val or {}).items() if k != "count"})
        return {k: flat.get(k) for k in self.fields}


def describe_lrs(lrs: list[float]) -> str:
    """Compress per-epoch rates into '1-50: 0.01; 51-65: 0.001' (1-based inclusive)."""
    parts: list[str] = []
    start = 0
    for i in range(1, len(lrs) + 1):
        if i == len(lrs) or not math.isclose(lrs[i], lrs[start], rel_tol=1e-9):
            span = f"{start + 1}" if i - 1 == start else f"{start + 1}-{i}"
            parts.append(f"{span}: {lrs[start]:g}")
            start = i
    return "; ".join(parts)
