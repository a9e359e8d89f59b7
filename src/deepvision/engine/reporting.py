"""Console and log-file output of training: MXNet-style lines, a progress bar on terminals.

Lines written to train.log follow the reference format so one parser serves old and new logs:

    Epoch[0] Batch [100]	Speed: 5120.33 samples/sec	Train-accuracy=0.912000
    Epoch[0] Train-accuracy=0.930000
    Epoch[0] Time cost=1.234
    Saved checkpoint to "runs/x/checkpoints/lenet-0001.pt"
    Epoch[0] Validation-accuracy=0.970000
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

METRIC_NAMES = {"acc": "accuracy", "top5": "top_k_accuracy_5", "loss": "cross-entropy"}


class Reporter:
    """Writes lines to the console and train.log (rank 0 only); drives a rich progress bar on a TTY."""

    def __init__(self, log_path: Path | None, enabled: bool = True, progress: str = "auto",
                 stream: TextIO | None = None, topk: int = 5) -> None:
        self.enabled = enabled
        self.names = {**METRIC_NAMES, "top5": f"top_k_accuracy_{topk}"}
        self.stream = stream or sys.stdout
        # kept open for the whole run (closed in close()), line-buffered so a crash loses nothing
        self.file = open(log_path, "a", encoding="utf-8", buffering=1) if (enabled and log_path) else None  # noqa: SIM115
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.use_bar = enabled and (progress == "bar" or (progress == "auto" and tty))
        self._progress = None
        self._task = None

    # -- plain lines ------------------------------------------------------------------------
    def line(self, text: str, console: bool | str = True) -> None:
        """Write `text` to train.log; print it too (or the shorter `console` text when a string)."""
        if not self.enabled:
            return
        if self.file:
            self.file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
        if console:
            self.echo(console if isinstance(console, str) else text)

    def echo(self, text: str) -> None:
        """Console only."""
        if not self.enabled:
            return
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    def speedometer(self, epoch: int, batch: int, speed: float, metrics: dict[str, float]) -> None:
        """train.log gets one line per metric, as the reference Speedometer wrote them; the console
        one compact line (or a progress-bar update on a terminal)."""
        self.speedometer_log(epoch, batch, speed, metrics)
        self.speedometer_console(epoch, batch, speed, metrics)

    def speedometer_log(self, epoch: int, batch: int, speed: float, metrics: dict[str, float]) -> None:
        head = f"Epoch[{epoch}] Batch [{batch}]\tSpeed: {speed:.2f} samples/sec"
        for key in _keys(metrics):
            self.line(f"{head}\tTrain-{self.names.get(key, key)}={metrics[key]:f}", console=False)

    def speedometer_console(self, epoch: int, batch: int, speed: float, metrics: dict[str, float]) -> None:
        if self.use_bar and self._progress is not None:
            self._progress.update(self._task, description=self._describe(epoch, metrics, speed))
        else:
            self.echo(f"Epoch[{epoch}] Batch [{batch}]  {speed:,.0f} samples/s  {_compact(metrics, self.names)}")

    def metrics(self, epoch: int, prefix: str, metrics: dict[str, float], console: bool = True) -> None:
        for key in _keys(metrics):
            self.line(f"Epoch[{epoch}] {prefix}-{self.names.get(key, key)}={metrics[key]:f}", console=False)
        if console:
            self.echo(f"Epoch[{epoch}] {prefix}: {_compact(metrics, self.names)}")

    # -- progress bar -------------------------------------------------------------------------
    def start_epoch(self, epoch: int, total: int, epochs: int) -> None:
        if not self.use_bar:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console(file=self.stream)
        self._progress = Progress(
            TextColumn("[bold]epoch {task.fields[ep]}/{task.fields[of]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.description}"), TimeRemainingColumn(), console=console, transient=True,
            refresh_per_second=4,
        )
        self._progress.start()
        self._task = self._progress.add_task("", total=total, ep=epoch + 1, of=epochs)

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def end_epoch(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    @staticmethod
    def _describe(epoch: int, m: dict[str, float], speed: float) -> str:
        parts = [f"loss {m['loss']:.4f}" if "loss" in m else "", f"acc {m['acc']:.4f}" if "acc" in m else ""]
        return "  ".join(p for p in parts if p) + f"  {speed:,.0f} samples/s"

    def close(self) -> None:
        self.end_epoch()
        if self.file:
            self.file.close()
            self.file = None


def _compact(m: dict[str, float], names: dict[str, str]) -> str:
    return "  ".join(f"{names.get(k, k)}={m[k]:.4f}" for k in _keys(m))


def _keys(m: dict[str, float]) -> list[str]:
    """Metric names in log order: the reference's (accuracy, top-k, cross-entropy), then any others."""
    known = [k for k in ("acc", "top5", "loss") if k in m]
    return known + [k for k in m if k not in known and k != "count" and m[k] is not None]
