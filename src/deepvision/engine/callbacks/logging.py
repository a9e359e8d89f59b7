"""The MXNet-format `train.log` and the terminal display, as callbacks over one `Reporter`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepvision.engine.callbacks.base import Callback
from deepvision.runs.history import EpochRecord


class MXNetLog(Callback):
    """train.log lines in the reference format (Speedometer, Train-/Validation- metrics, Time cost,
    Saved checkpoint), so one parser serves old and new logs."""

    def on_log(self, epoch: int, batch: int, speed: float, window: dict[str, float]) -> None:
        self.trainer.reporter.speedometer_log(epoch, batch, speed, window)

    def on_train_epoch_end(self, epoch: int, train: dict[str, float], seconds: float) -> None:
        rep = self.trainer.reporter
        rep.line(f"Epoch[{epoch}] Resetting Data Iterator", console=False)
        rep.metrics(epoch, "Train", train, console=False)
        rep.line(f"Epoch[{epoch}] Time cost={seconds:.3f}", console=False)

    def on_checkpoint_saved(self, path: Path) -> None:
        self.trainer.reporter.line(f'Saved checkpoint to "{path}"', console=False)

    def on_epoch_end(self, epoch: int, logs: EpochRecord) -> None:
        if logs.val is not None:
            self.trainer.reporter.metrics(epoch, "Validation", logs.val, console=False)


class Terminal(Callback):
    """The progress bar (on a terminal) or speedometer lines, and one summary line per epoch."""

    def on_epoch_start(self, epoch: int, steps: int) -> None:
        self.trainer.reporter.start_epoch(epoch, steps, self.trainer.cfg.train.epochs)

    def on_batch_end(self, epoch: int, batch: int) -> None:
        self.trainer.reporter.advance()

    def on_log(self, epoch: int, batch: int, speed: float, window: dict[str, float]) -> None:
        self.trainer.reporter.speedometer_console(epoch, batch, speed, window)

    def on_train_epoch_end(self, epoch: int, train: dict[str, float], seconds: float) -> None:
        self.trainer.reporter.end_epoch()

    def on_epoch_end(self, epoch: int, logs: EpochRecord) -> None:
        val = f"  val: {_fmt(logs.val)}" if logs.val else ""
        self.trainer.reporter.echo(
            f"epoch {logs.epoch}/{self.trainer.cfg.train.epochs}  lr {logs.lr:.4g}  train: {_fmt(logs.train)}{val}  "
            f"{logs.seconds:.1f}s {logs.samples_per_s:,.0f} samples/s")

    def on_train_end(self) -> None:
        self.trainer.reporter.end_epoch()


def _fmt(m: dict[str, Any]) -> str:
    """'acc 0.9 top5 1.0 loss 0.3' for classification; every metric (loss last) for other tasks."""
    keys = [k for k in m if k not in ("count", "loss")] + (["loss"] if "loss" in m else [])
    return "  ".join(f"{k} {m[k]:.4f}" for k in keys if m[k] is not None)
