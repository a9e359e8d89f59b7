"""SIGTERM for commands that write large files: the signal unwinds like Ctrl+C, so worker processes are
terminated and unfinished files removed, and the command ends with one line and the signal's exit code."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

from deepvision.errors import Terminated

__all__ = ["Terminated", "run_until_sigterm", "sigterm_raises"]


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
        # a SIGTERM to the process group also ends data loader workers: torch's SIGCHLD handler would raise
        # their deaths as errors in the cleanup (a no-op handler, not SIG_DFL: a pending SIGCHLD would raise)
        saved[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, _ignore)
        raise Terminated

    saved[signal.SIGTERM] = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


def _ignore(signum: int, frame: object) -> None:
    """SIGCHLD while a SIGTERM unwinds."""


def run_until_sigterm(command: str, cleaned: str, work: Callable[[], int]) -> int:
    """`work()`'s exit code; on SIGTERM, one line saying what was cleaned up and exit code 143."""
    try:
        with sigterm_raises():
            return work()
    except Terminated:
        sys.stderr.write(f"deepvision {command}: terminated (SIGTERM); {cleaned}\n")
        return Terminated.exit_code
