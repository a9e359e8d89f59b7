"""The task interface: everything the trainer does not know about the problem it trains.

A task owns preparing a batch, forward + loss, the metrics of a phase, the history columns, and
what evaluation and prediction do with the model's outputs. The trainer loop, checkpoints, resume,
DDP, AMP, gradient clipping and accumulation, callbacks and the run directory are generic.

Adding a task is a new module with a `Task` subclass decorated with `@register_task("name")`
(see docs/architecture.md); configs select it with the top-level key `task:`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from deepvision.config.schema import Config
from deepvision.data.preprocess import Preprocess
from deepvision.data.protocols import Loader


class Meter(Protocol):
    """Accumulates one phase's metrics over batches (on the device: no host sync per batch)."""

    def update(self, outputs: Any, targets: Any, loss: torch.Tensor | None) -> None: ...

    def compute(self, distributed: bool = False, since_mark: bool = False) -> dict[str, float]:
        """Metric name -> value (names as in `Task.train_metrics`/`val_metrics`) plus "count" (samples).
        Under DDP the sums are reduced across ranks. `since_mark`: only the batches after `mark()`."""

    def mark(self) -> None:
        """Remember the current sums (the speedometer's window starts here)."""


class TaskData(Protocol):
    """A run's data as a task resolved it."""

    classes: list[str]
    channels: int
    preprocess: Preprocess

    def counts(self) -> dict[str, int]:
        """Samples per role (train/val/test) that exist."""

    def loaders(self, roles: tuple[str, ...], *, seed: int, rank: int, world: int, device: torch.device,
                max_steps: int | None) -> dict[str, Loader]: ...


class Task(ABC):
    """Base class of tasks; subclasses set the class attributes and implement the abstract methods."""

    name: ClassVar[str] = ""
    train_metrics: ClassVar[tuple[str, ...]] = ("loss",)
    val_metrics: ClassVar[tuple[str, ...]] = ("loss",)
    default_monitor: ClassVar[str] = "val_loss"
    minimize: ClassVar[tuple[str, ...]] = ()  # metrics where lower is better, besides every "*loss"
    check_input: ClassVar[bool] = True  # check the model accepts the preprocessed input size before training
    supports_channels_last: ClassVar[bool] = True  # the model may run in channels_last memory format
    cpu_autocast: ClassVar[bool] = True  # train.amp=auto may train in bf16 on CPUs with AMX (engine/precision.py)

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    @abstractmethod
    def load_data(self, roles: tuple[str, ...], model_input: tuple[int, int, int] | None,
                  model_preprocess: dict[str, Any] | None) -> TaskData:
        """Read the configured data for `roles` and resolve its preprocessing."""

    def setup(self, pre: Preprocess, device: torch.device, channels_last: bool) -> None:
        """Called once the run's preprocessing and device are known, before the first batch."""
        self.pre, self.device, self.channels_last = pre, device, channels_last

    def data_record(self) -> dict[str, Any] | None:
        """What identifies the data `load_data` read beyond the config's settings (the files of a built dataset's
        splits), stored in the run's checkpoints; None: the settings say it all."""
        return None

    def notes(self, data: TaskData) -> list[str]:
        """[WARN] lines about the data read, said before training starts (val/test splits holding training
        samples); the data's own `notes()` where it has them."""
        return list(getattr(data, "notes", list)())

    def num_outputs(self, num_classes: int) -> int:
        """Width of the model's output for `num_classes` data classes."""
        return num_classes

    @abstractmethod
    def to_device(self, batch: Any, device: torch.device) -> tuple[Any, Any]:
        """Move a loader batch to `device` and normalise it: (inputs, targets)."""

    @abstractmethod
    def train_loss(self, model: nn.Module, x: Any, y: Any) -> tuple[torch.Tensor, Any]:
        """Forward in training mode: (scalar loss to back-propagate, outputs for the meter)."""

    @abstractmethod
    def eval_outputs(self, model: nn.Module, x: Any, y: Any) -> tuple[Any, torch.Tensor | None]:
        """Forward in evaluation mode (under inference_mode): (outputs for the meter, loss or None)."""

    @abstractmethod
    def meter(self, device: torch.device, phase: str) -> Meter:
        """A fresh meter for `phase` ("train" or "val")."""

    def lower_is_better(self, column: str) -> bool:
        """Whether a smaller value of history column `column` (e.g. "val_loss") is better."""
        metric = column.split("_", 1)[-1]
        return metric.endswith("loss") or metric in self.minimize

    def history_fields(self) -> list[str]:
        from deepvision.runs.history import history_fields

        return history_fields(self.train_metrics, self.val_metrics)


def overlap_note(role: str, shared: int, total: int) -> str:
    """The warning for `shared` of a `role` split's `total` samples being training samples too."""
    return (f"[WARN] {shared:,} of the {total:,} {role} images are training images too: {role} scores do not "
            f"measure generalisation")
