"""SIGTERM as `deepvision` runs every command: the signal unwinds like Ctrl+C, so worker processes
are terminated and unfinished files removed, and the command ends with one line (`sigterm_says` names what
was cleaned up) and the signal's exit code."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import NoReturn

from deepvision.engine.signals import ignore_further_stops, quiet_child_deaths, stop_under_way, stops_reset
from deepvision.errors import Terminated, chained_stop

__all__ = ["Terminated", "sigterm_raises", "sigterm_says"]

RECHECK_S = 0.02  # how often a stop waiting for a safe point (an import to end) looks again


_forking: list[bool] = []  # set while os.fork runs its at-fork hooks (holds True then)
_watching: list[bool] = []  # holds True once the hooks marking `_forking` are registered


def importing(frame: FrameType | None) -> bool:
    """Whether `frame` (where a signal interrupted the main thread) runs inside the import machinery."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib._bootstrap"):
            return True
        frame = frame.f_back
    return False


def unsafe(frame: FrameType | None) -> bool:
    """Whether an exception raised at `frame` could be lost: inside the import machinery (`importing`), in an
    at-fork hook (logging's lock release as a pool starts its workers), or in a finalizer (`__del__`); Python
    prints and ignores what the latter two raise."""
    if _forking or importing(frame):
        return True
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def watch_forks() -> None:
    """Mark the time os.fork spends in its at-fork hooks (`_forking`). Registered after logging's (the
    standard library's one hook in the parent, releasing its lock as a pool starts its workers), so the mark
    spans it; a stop that lands in a hook registered later is caught by the unraisable hook of `sigterm_raises`."""
    if not _watching:
        import logging  # noqa: F401  (its hooks first: those after os.fork run in the order registered)

        _watching.append(True)
        os.register_at_fork(before=lambda: _forking.append(True), after_in_parent=_forking.clear,
                            after_in_child=_forking.clear)


@contextlib.contextmanager
def sigterm_raises(keep_ignored: bool = False) -> Iterator[None]:
    """Turn SIGTERM into a `Terminated` exception and Ctrl+C into KeyboardInterrupt in the main thread for the
    duration. Once one is raised, further SIGINTs and SIGTERMs are ignored while it unwinds (a double Ctrl+C,
    or `timeout` signalling the process group again, would otherwise cut its cleanup short), and with
    `keep_ignored` (the process ends with the command) also afterwards, through the interpreter's shutdown.
    A process forked meanwhile (a pool's or a data loader's worker) inherits the handlers: there a signal
    acts as by default, and its parent does the cleanup.

    A stop is never raised inside the import machinery: C code there (compiling a module's source, a compiled
    extension's initialiser) can drop the exception, or turn it into an ImportError that an optional import
    swallows, and the command would run to its end. Nor where Python prints and ignores it (`unsafe`: an
    at-fork hook as a pool starts its workers, a finalizer). A signal that lands there is recorded (further
    signals are ignored from then on) and raised, by a SIGALRM timer that rechecks every `RECHECK_S` seconds,
    as soon as the place is left; at the latest when the block ends. A stop that Python ignored all the same
    (reported to `sys.unraisablehook`: a hook registered late, a weakref callback) is recorded so, too."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pid = os.getpid()
    saved: dict[int, object] = {}
    pending: list[int] = []  # the signal whose stop waits for a safe point
    raised: list[BaseException] = []  # the stop raised, to know it again should Python ignore it
    stops_reset()
    watch_forks()

    def stop(signum: int) -> NoReturn:
        if pending:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, saved.pop(signal.SIGALRM))  # type: ignore[arg-type]
            pending.clear()
        raised[:] = [Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()]
        raise raised[0]

    def defer(signum: int) -> None:
        pending.append(signum)
        saved[signal.SIGALRM] = signal.signal(signal.SIGALRM, recheck)
        signal.siginterrupt(signal.SIGALRM, False)  # the import's system calls resume rather than fail
        signal.setitimer(signal.ITIMER_REAL, RECHECK_S, RECHECK_S)

    def recheck(_: int, frame: FrameType | None) -> None:
        if pending and not unsafe(frame):
            stop(pending[0])

    def handler(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != pid:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        if stop_under_way():  # training's own stop, or a stop raised before, unwinds: this one changes nothing
            return
        ignore_further_stops()
        saved.setdefault(signal.SIGCHLD, quiet_child_deaths())
        if not unsafe(frame):
            stop(signum)
        defer(signum)

    def unraisable(info: sys.UnraisableHookArgs) -> None:
        if raised and info.exc_value is raised[0] and os.getpid() == pid and not pending:
            raised.clear()  # raised where Python ignores it (an at-fork hook registered late, a weakref callback)
            defer(signal.SIGTERM if isinstance(info.exc_value, Terminated) else signal.SIGINT)
        else:
            previous(info)

    previous, sys.unraisablehook = sys.unraisablehook, unraisable
    saved[signal.SIGTERM] = signal.signal(signal.SIGTERM, handler)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # started ignoring Ctrl+C (nohup, &): it stays so
        saved[signal.SIGINT] = signal.signal(signal.SIGINT, handler)
    try:
        try:
            yield
        finally:
            if pending:  # the block ended (or failed) while the stop waited: the stop ends the command all the same
                stop(pending[0])
    finally:
        for sig, old in saved.items():
            # SIG_IGN: the interpreter's shutdown puts SIG_DFL in place of a Python handler, after atexit
            ignored = keep_ignored and stop_under_way() and sig in (signal.SIGINT, signal.SIGTERM)
            signal.signal(sig, signal.SIG_IGN if ignored else signal.SIG_DFL if old is None else old)
        sys.unraisablehook = previous


@contextlib.contextmanager
def sigterm_says(cleaned: str) -> Iterator[None]:
    """Under `main`'s SIGTERM rule: the command's one line on SIGTERM says what was cleaned up (`cleaned`)."""
    try:
        yield
    except BaseException as exc:
        if isinstance(chained_stop(exc), Terminated):  # also when an extension's import turned it into an ImportError
            raise Terminated(cleaned) from None
        raise
