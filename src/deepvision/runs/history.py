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


CONTINUOUS_SCHEDULES = ("cosine", "poly")


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)


def lr_steps(lrs: list[float]) -> list[int]:
    """The 1-based epochs that start a new rate in steps: piecewise/step boundaries and manual changes.

    A change counts when the rate was flat before it or stays flat after it; the epoch-by-epoch moves
    of cosine or poly schedules (never flat) are not steps. Plots mark these epochs, and checkpoint
    retention keeps the checkpoint saved just before each of them.
    """
    steps = []
    for i in range(1, len(lrs)):
        if _same(lrs[i], lrs[i - 1]):
            continue
        flat_before = i >= 2 and _same(lrs[i - 1], lrs[i - 2])
        flat_after = i + 1 < len(lrs) and _same(lrs[i + 1], lrs[i])
        if flat_before or flat_after:
            steps.append(i + 1)
    return steps


def describe_lrs(lrs: list[float], schedule: str | None = None) -> str:
    """Summarise per-epoch rates (1-based inclusive ranges): flat stretches as '1-50: 0.01; 51-65: 0.001',
    runs of changing rates as '1-8: cosine 0.05→0.000546' (`schedule` names a decaying run; a rising
    one is a warm-up)."""
    parts: list[str] = []
    i, n = 0, len(lrs)
    while i < n:
        j = i
        while j + 1 < n and _same(lrs[j + 1], lrs[i]):
            j += 1
        if j > i or i + 2 >= n or _same(lrs[i + 1], lrs[i + 2]):
            span = f"{i + 1}" if j == i else f"{i + 1}-{j + 1}"
            parts.append(f"{span}: {lrs[i]:g}")
            i = j + 1
            continue
        # a run of changing rates, in one direction, up to the start of the next flat stretch
        rising = lrs[i + 1] > lrs[i]
        j = i + 1
        while (j + 1 < n and not _same(lrs[j + 1], lrs[j]) and (lrs[j + 1] > lrs[j]) == rising
               and not (j + 2 < n and _same(lrs[j + 2], lrs[j + 1]))):
            j += 1
        label = "warm-up" if rising else (schedule if schedule in CONTINUOUS_SCHEDULES else "decay")
        parts.append(f"{i + 1}-{j + 1}: {label} {lrs[i]:.3g}→{lrs[j]:.3g}")
        i = j + 1
    return "; ".join(parts)
