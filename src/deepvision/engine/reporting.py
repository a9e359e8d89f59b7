"""Console and log-file output of training: MXNet-style lines in train.log, live progress on the console.

Lines written to train.log follow the reference format so one parser serves old and new logs
(0-based `Epoch[N]`, as MXNet wrote them):

    Epoch[0] Batch [100]	Speed: 5120.33 samples/sec	Train-accuracy=0.912000
    Epoch[0] Train-accuracy=0.930000
    Epoch[0] Time cost=1.234
    Saved checkpoint to "runs/x/checkpoints/lenet-0001.pt"
    Epoch[0] Validation-accuracy=0.970000

The console counts epochs from 1 (`epoch 1/10`) and fits 80 columns. On a terminal a progress bar
shows the batch count, the ETA and the running loss and accuracy, for training and for validation;
off a terminal (a log file, CI) there is a line every `train.log_every` batches, a heartbeat line
when `HEARTBEAT_S` seconds pass without one, and a summary line per epoch.
"""

from __future__ import annotations

import contextlib
import errno
import faulthandler
import os
import stat
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from deepvision.errors import UserError

METRIC_NAMES = {"acc": "accuracy", "top5": "top_k_accuracy_5", "loss": "cross-entropy"}
PERCENT = ("acc", "top5")  # shown as percentages on the console
WIDTH = 80
HEARTBEAT_S = 30.0  # off a terminal: a progress line at least this often during a long phase


def is_tty(stream: Any) -> bool:
    return bool(getattr(stream, "isatty", None) and stream.isatty())


def fit_line(required: Sequence[str], optional: Sequence[str] = (), width: int = WIDTH, sep: str = "  ") -> str:
    """Join `required` parts, then each optional part that still fits in `width` columns (in order)."""
    line = sep.join(p for p in required if p)
    for part in optional:
        if part and len(line) + len(sep) + len(part) <= width:
            line += sep + part
    return line


def format_metrics(m: dict[str, Any], keys: list[str] | None = None) -> str:
    """'loss 0.3508 acc 90.74% top5 98.89%': loss first, accuracies in per cent; None/count skipped."""
    keys = keys if keys is not None else _console_keys(m)
    parts = []
    for k in keys:
        v = m.get(k)
        if v is None or k == "count":
            continue
        parts.append(f"{k} {v * 100:.2f}%" if k in PERCENT else f"{k} {v:.4g}")
    return " ".join(parts)


def _console_keys(m: dict[str, Any]) -> list[str]:
    first = [k for k in ("loss", "acc", "top5") if k in m]
    return first + [k for k in m if k not in first and k != "count"]


class PhaseProgress:
    """Progress of one pass over batches (training, validation, evaluation): a transient rich bar with
    ETA and a live text field on a terminal, heartbeat lines every `HEARTBEAT_S` seconds elsewhere."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None, bar: bool | None = None,
                 echo: Any = None) -> None:
        self.label, self.total, self.done = label, total, 0
        self.stream = stream or sys.stdout
        self.echo = echo or (lambda text: print(text, file=self.stream, flush=True))
        self.t0 = self.last_line = time.monotonic()
        self.live = ""
        self.progress = None
        if bar if bar is not None else is_tty(self.stream):
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("{task.description}", markup=False), BarColumn(bar_width=16), MofNCompleteColumn(),
                TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[live]}", markup=False),
                console=Console(file=self.stream), transient=True, refresh_per_second=4)
            self.progress.start()
            self.task = self.progress.add_task(label, total=total, live="")

    def advance(self, n: int = 1, live: str | None = None) -> None:
        self.done += n
        if live is not None:
            self.live = live
        if self.progress is not None:
            self.progress.update(self.task, advance=n, **({"live": live} if live is not None else {}))
            return
        now = time.monotonic()
        if now - self.last_line >= HEARTBEAT_S and self.done < self.total:
            self.echo(self.heartbeat(now))

    def heartbeat(self, now: float | None = None) -> str:
        """'epoch 2/8  batch 120/469  ETA 1:10  loss 0.31 acc 91.2%' (the off-terminal line)."""
        now = now if now is not None else time.monotonic()
        self.last_line = now
        rate = self.done / max(now - self.t0, 1e-9)
        eta = _clock((self.total - self.done) / rate) if rate > 0 else "?"
        return fit_line([self.label, f"batch {self.done}/{self.total}", f"ETA {eta}"], [self.live])

    def note_line(self) -> None:
        """Another line was printed: the heartbeat waits a full interval again."""
        self.last_line = time.monotonic()

    def print(self, text: str) -> bool:
        """Print above the bar; False when there is no bar (the caller prints)."""
        if self.progress is None:
            return False
        self.progress.console.print(text, markup=False, highlight=False)
        return True

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def open_log(path: Path) -> TextIO:
    """`path` opened for appending, line-buffered, without following a symlink or appending to a file with
    other hard links (a link planted in a run folder must not redirect the log onto another file) and only
    when it is a regular file (a FIFO would block); UserError otherwise."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UserError(f"{path} is a symbolic link; deepvision does not write through links in a run "
                            f"folder: remove it and run again") from None
        if exc.errno == errno.ENXIO:  # a FIFO nobody reads
            raise UserError(f"{path} is not a regular file; remove it and run again") from None
        raise UserError(f"cannot open {path}: {exc.strerror or exc}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise UserError(f"{path} is not a regular file; remove it and run again")
    if info.st_nlink > 1:  # a hard link planted in the run folder: the log would land in another file
        os.close(fd)
        raise UserError(f"{path} has {info.st_nlink} links (a hard link to a file elsewhere); deepvision does "
                        f"not append to it: remove it and run again")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "a", encoding="utf-8", buffering=1)


class Reporter:
    """Writes lines to the console and train.log (rank 0 only); drives the progress display."""

    def __init__(self, log_path: Path | None, enabled: bool = True, progress: str = "auto",
                 stream: TextIO | None = None, topk: int = 5) -> None:
        self.enabled = enabled
        self.names = {**METRIC_NAMES, "top5": f"top_k_accuracy_{topk}"}
        self.stream = stream or sys.stdout
        # kept open for the whole run (closed in close()), line-buffered so a crash loses nothing
        self.file = open_log(log_path) if (enabled and log_path) else None
        self.use_bar = enabled and (progress == "bar" or (progress == "auto" and is_tty(self.stream)))
        self.phase: PhaseProgress | None = None
        self.epoch, self.epochs, self.steps = 0, 0, 0

    @contextlib.contextmanager
    def crash_reports(self) -> Iterator[None]:
        """While training: a native crash (segfault, abort) writes Python's fatal-error report and stack into
        train.log, which is how `deepvision runs` tells a crashed run from a killed one."""
        if not self.file:
            yield
            return
        before = faulthandler.is_enabled()
        faulthandler.enable(self.file)
        try:
            yield
        finally:
            faulthandler.disable()
            if before and sys.__stderr__ is not None:
                faulthandler.enable(sys.__stderr__)

    # -- plain lines ------------------------------------------------------------------------
    def line(self, text: str, console: bool | str = True) -> None:
        """Write `text` to train.log; print it too (or the shorter `console` text when a string),
        wrapped at 80 columns."""
        if not self.enabled:
            return
        if self.file:
            self.file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
        if console:
            shown = console if isinstance(console, str) else text
            self.echo("\n".join(textwrap.wrap(shown, WIDTH, subsequent_indent="  ", break_on_hyphens=False,
                                               break_long_words=False)) or shown)

    def echo(self, text: str) -> None:
        """Console only (above the progress bar when one is shown)."""
        if not self.enabled:
            return
        if self.phase is not None:
            self.phase.note_line()
            if self.phase.print(text):
                return
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
        if self.use_bar and self.phase is not None:
            self.phase.advance(0, live=format_metrics(metrics))
            return
        steps = f"/{self.steps}" if self.steps and self.epoch == epoch else ""
        of = f"/{self.epochs}" if self.epochs else ""
        # a detector's loss components give way first (train.log has every one of them)
        main = {k: v for k, v in metrics.items() if not k.startswith("loss_")}
        parts = {k.removeprefix("loss_"): v for k, v in metrics.items() if k.startswith("loss_")}
        self.echo(fit_line([f"epoch {epoch + 1}{of}", f"batch {batch}{steps}", format_metrics(main)],
                           [f"{speed:,.0f} samples/s", f"({format_metrics(parts)})" if parts else ""]))

    def metrics(self, epoch: int, prefix: str, metrics: dict[str, float], console: bool = True) -> None:
        for key in _keys(metrics):
            self.line(f"Epoch[{epoch}] {prefix}-{self.names.get(key, key)}={metrics[key]:f}", console=False)
        if console:
            self.echo(f"epoch {epoch + 1}  {prefix.lower()}: {format_metrics(metrics)}")

    # -- progress -------------------------------------------------------------------------------
    def start_epoch(self, epoch: int, total: int, epochs: int) -> None:
        """The training pass of `epoch` (0-based) begins: `total` batches of `epochs` epochs."""
        self.epoch, self.steps, self.epochs = epoch, total, epochs
        self.start_phase(f"epoch {epoch + 1}/{epochs}", total)

    def start_phase(self, label: str, total: int) -> None:
        self.end_epoch()
        if self.enabled:
            self.phase = PhaseProgress(label, total, self.stream, bar=self.use_bar, echo=self._plain_echo)

    def _plain_echo(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def advance(self, n: int = 1, live: dict[str, Any] | None = None) -> None:
        """`n` more batches done; `live` running metrics for the bar / heartbeat."""
        if self.phase is not None:
            self.phase.advance(n, format_metrics(live) if live else None)

    def end_epoch(self) -> None:
        """End the current phase's progress display (training or validation)."""
        if self.phase is not None:
            self.phase.close()
            self.phase = None

    def close(self) -> None:
        self.end_epoch()
        if self.file:
            self.file.close()
            self.file = None


def _keys(m: dict[str, float]) -> list[str]:
    """Metric names in log order: the reference's (accuracy, top-k, cross-entropy), then any others."""
    known = [k for k in ("acc", "top5", "loss") if m.get(k) is not None]
    return known + [k for k in m if k not in known and k != "count" and m[k] is not None]
