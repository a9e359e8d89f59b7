"""Per-epoch records: history.csv and run.json, TensorBoard scalars, the loss/accuracy plots."""

from __future__ import annotations

from typing import Any

from deepvision.engine.callbacks.base import Callback
from deepvision.errors import UserError
from deepvision.runs.history import EpochRecord


class HistoryWriter(Callback):
    """history.csv (exact floats) and the run's state after every epoch."""

    def on_epoch_end(self, epoch: int, logs: EpochRecord) -> None:
        t = self.trainer
        t.run.write_history(t.history, t.task.history_fields())
        t.run.update_state(status="running", epochs_done=logs.epoch, best_epoch=t.best_epoch)


class TensorBoardLogger(Callback):
    """Every history column as a scalar (`train.tensorboard`): `true` requires TensorBoard (a one-line error
    naming the extra when it cannot be imported), the default writes event files only when it is installed."""

    def __init__(self, required: bool = False) -> None:
        self.writer = None
        self.writer_class = _summary_writer(required)

    def on_train_start(self) -> None:
        if self.writer_class is not None:
            self.writer = self.writer_class(str(self.trainer.run.tensorboard_dir))

    def on_epoch_end(self, epoch: int, logs: EpochRecord) -> None:
        if self.writer is None:
            return
        for k, v in logs.row().items():
            if k != "epoch" and v is not None:
                self.writer.add_scalar(k, v, logs.epoch)

    def on_train_end(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _summary_writer(required: bool) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception as exc:  # missing, or broken (e.g. a protobuf clash): optional unless asked for
        if required:
            raise UserError(f"train.tensorboard: true, but TensorBoard cannot be imported ({exc}); install it with "
                            f"pip install 'deepvision[tensorboard]', or set train.tensorboard=false") from None
        return None
    return SummaryWriter


class Plotter(Callback):
    """plots/ after long epochs (> 30 s) and when training stops."""

    def on_epoch_end(self, epoch: int, logs: EpochRecord) -> None:
        if logs.seconds > 30:
            self.plot()

    def on_train_end(self) -> None:
        self.plot()

    def plot(self) -> None:
        t = self.trainer
        if not t.history:
            return
        from deepvision.runs.plots import plot_run

        try:
            plot_run(t.run, t.history)
        except (OSError, UserError) as exc:  # plots are a convenience; never lose a run over them
            t.reporter.line(f"could not write plots: {exc}")
