"""SIGTERM as `deepvision` runs every command but serve: the signal unwinds like Ctrl+C, so worker processes
are terminated and unfinished files removed, and the command ends with one line (`sigterm_says` names what
was cleaned up) and the signal's exit code."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

from deepvision.engine.signals import quiet_child_deaths
from deepvision.errors import Terminated, chained_stop

__all__ = ["Terminated", "sigterm_raises", "sigterm_says"]


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into a `Terminated` exception in the main thread for the duration. A process forked
    meanwhile (a pool's or a data loader's worker) inherits the handler: there SIGTERM ends it quietly,
    as by default, and its parent does the cleanup."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pid = os.getpid()
    saved: dict[int, object] = {}

    def handler(signum: int, frame: object) -> None:
        if os.getpid() != pid:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
        saved[signal.SIGCHLD] = quiet_child_deaths()
        raise Terminated

    saved[signal.SIGTERM] = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def sigterm_says(cleaned: str) -> Iterator[None]:
    """Under `main`'s SIGTERM rule: the command's one line on SIGTERM says what was cleaned up (`cleaned`)."""
    try:
        yield
    except BaseException as exc:
        if isinstance(chained_stop(exc), Terminated):  # also when an extension's import turned it into an ImportError
            raise Terminated(cleaned) from None
        raise
