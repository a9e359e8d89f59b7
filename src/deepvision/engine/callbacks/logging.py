"""The MXNet-format `train.log` and the terminal display, as callbacks over one `Reporter`."""

from __future__ import annotations

import time
from pathlib import Path

from deepvision.engine.callbacks.base import Callback
from deepvision.engine.reporting import fit_line, format_metrics
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
    """The console: a progress bar per training and validation pass (on a terminal; heartbeat lines
    elsewhere) with the ETA and the running loss and accuracy, and one summary line per epoch that
    fits 80 columns. Epochs count from 1 here; train.log keeps MXNet's 0-based `Epoch[N]`."""

    LIVE_EVERY_S = 0.5  # running metrics are recomputed at most this often (a device sync on GPUs)

    def __init__(self) -> None:
        self._live_at = 0.0
        self._prev_lr: float | None = None

    def on_epoch_start(self, epoch: int, steps: int) -> None:
        self.trainer.reporter.start_epoch(epoch, steps, self.trainer.cfg.train.epochs)
        self._live_at = time.monotonic()

    def on_batch_end(self, epoch: int, batch: int) -> None:
        live = None
        now = time.monotonic()
        if now - self._live_at >= self.LIVE_EVERY_S:
            self._live_at = now
            meter = getattr(self.trainer, "train_meter", None)
            if meter is not None:  # the epoch's running loss and accuracy (rank-5 stays in the log lines)
                live = {k: v for k, v in meter.compute().items() if k != "top5" and not k.startswith("loss_")}
        self.trainer.reporter.advance(1, live)

    def on_log(self, epoch: int, batch: int, speed: float, window: dict[str, float]) -> None:
        self.trainer.reporter.speedometer_console(epoch, batch, speed, window)

    def on_train_epoch_end(self, epoch: int, train: dict[str, float], seconds: float) -> None:
        self.trainer.reporter.end_epoch()

    def on_val_start(self, steps: int) -> None:
        rep = self.trainer.reporter
        rep.start_phase(f"epoch {rep.epoch + 1}/{rep.epochs} val", steps)

    def on_val_batch_end(self, batch: int) -> None:
        self.trainer.reporter.advance(1)

    def on_val_end(self, metrics: dict[str, float]) -> None:
        self.trainer.reporter.end_epoch()

    def on_epoch_end(self, epoch: int, logs: EpochRecord) -> None:
        self.trainer.reporter.echo(self.summary(logs))
        self._prev_lr = logs.lr

    def summary(self, logs: EpochRecord) -> str:
        """'epoch 3/15  loss 0.1897 acc 94.78%  val loss 0.1377 acc 94.81%  23.5s  lr 0.0478  best'."""
        t = self.trainer
        # rank-5 is the first to give way to the 80 columns (train rank-5: in history.csv and train.log)
        train = {k: v for k, v in logs.train.items() if k != "top5" and not k.startswith("loss_")}
        # a detector's loss components (loss_classifier, ...) give way too: history.csv and train.log keep them
        parts = {k.removeprefix("loss_"): v for k, v in logs.train.items() if k.startswith("loss_")}
        required = [f"epoch {logs.epoch}/{t.cfg.train.epochs}", format_metrics(train)]
        optional = [f"{logs.seconds:.1f}s"]
        if self._prev_lr is None or logs.lr != self._prev_lr:
            optional.append(f"lr {logs.lr:.3g}")
        if logs.val:
            required.append("val " + format_metrics({k: v for k, v in logs.val.items() if k != "top5"}))
            optional.append(f"val {format_metrics({'top5': logs.val['top5']})}" if logs.val.get("top5") else "")
        if t.best_epoch == logs.epoch and logs.val:
            optional.append("best")
        optional.append(f"({format_metrics(parts)})" if parts else "")
        optional.append(f"{logs.samples_per_s:,.0f} samples/s")
        return fit_line(required, optional)

    def on_train_end(self) -> None:
        self.trainer.reporter.end_epoch()
