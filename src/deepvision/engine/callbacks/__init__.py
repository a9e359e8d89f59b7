"""Callbacks on training events; `default_callbacks` is what `deepvision train` runs."""

from __future__ import annotations

from typing import Any

from deepvision.engine.callbacks.base import Callback, CallbackList
from deepvision.engine.callbacks.checkpoint import Checkpointer
from deepvision.engine.callbacks.finetune import FreezeBody
from deepvision.engine.callbacks.holdout import TestEvaluator
from deepvision.engine.callbacks.logging import MXNetLog, Terminal
from deepvision.engine.callbacks.records import HistoryWriter, Plotter, TensorBoardLogger

__all__ = ["Callback", "CallbackList", "Checkpointer", "FreezeBody", "HistoryWriter", "MXNetLog", "Plotter",
           "TensorBoardLogger", "Terminal", "TestEvaluator", "default_callbacks"]


def default_callbacks(cfg: Any) -> list[Callback]:
    """What `deepvision train` runs after the trainer's own `Checkpointer` (always first, so the log
    and history never name an epoch whose checkpoint is missing): the log, the terminal,
    history.csv, TensorBoard, plots, and the test split's scores (`train.test`, last: after the epoch's
    checkpoint and summary line)."""
    callbacks: list[Callback] = [MXNetLog(), Terminal(), HistoryWriter()]
    if cfg.train.tensorboard is not False:
        callbacks.append(TensorBoardLogger(required=cfg.train.tensorboard is True))
    callbacks.append(Plotter())
    if cfg.train.test != "off":
        callbacks.append(TestEvaluator(cfg.train.test_every))
    return callbacks
