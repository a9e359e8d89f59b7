"""Graceful stop on Ctrl+C / SIGTERM: the first signal asks training to stop after the current
batch; a second Ctrl+C interrupts at once. Either way the last completed epoch's checkpoint stays."""

from __future__ import annotations

import ctypes
import signal
import threading
from types import FrameType


class StopRequested(Exception):
    """Raised by the trainer after a stop signal; carries where training stopped."""

    def __init__(self, signum: int, epochs_done: int, run_dir: str, unscored: bool = False,
                 complete: bool = False) -> None:
        self.signum, self.epochs_done, self.run_dir = signum, epochs_done, run_dir
        self.unscored = unscored  # every epoch done; only the final scoring of the test split was cut short
        self.complete = complete  # the stop came as the run ended: every epoch saved, the test split scored
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class GracefulStop:
    """Context manager installing SIGINT/SIGTERM handlers that set `requested`."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            ignore_further_stops()
            raise KeyboardInterrupt  # second Ctrl+C: stop now
        self.signum = signum
        if signal.SIGCHLD not in self._old:
            self._old[signal.SIGCHLD] = quiet_child_deaths()

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.requested and exc[0] is not None:  # the stop unwinds: the CLI's handlers leave further signals be
            _stopping.set()
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old.clear()


_stopping = threading.Event()


def ignore_further_stops() -> None:
    """A stop (KeyboardInterrupt, Terminated) is being raised in the main thread: SIGINT and SIGTERM are ignored
    from now on, so that a second one (a double Ctrl+C, `timeout` signalling the group again) cannot cut its
    cleanup short; handlers reinstalled meanwhile ask `stop_under_way`. A no-op handler, not SIG_IGN: a signal
    already arrived but not yet handled would be reported as "ignored due to race condition"."""
    signal.signal(signal.SIGINT, _ignore)
    signal.signal(signal.SIGTERM, _ignore)
    _helpers_ignore_stops()
    _stopping.set()


def _helpers_ignore_stops() -> None:
    """Ignore SIGINT and SIGTERM at the system level too, under the no-op that Python's own table keeps (which
    still takes a signal that arrived before): a program the cleanup starts inherits the ignored signals
    across exec, so a second signal to the process group cannot kill it halfway (joblib's `pgrep`, which
    finds its workers' children to end them, then failed with two tracebacks). Python's next `signal.signal`
    for either sets the system's disposition again."""
    try:
        libc = ctypes.CDLL(None)
        libc.signal.restype = ctypes.c_void_p
        libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
    except (OSError, AttributeError):  # no C library to ask (not POSIX): the helpers stay exposed
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        libc.signal(int(sig), 1)  # 1: SIG_IGN


def stop_under_way() -> bool:
    """Whether a stop was raised (or training's graceful stop unwinds) since `stops_reset`."""
    return _stopping.is_set()


def stops_reset() -> None:
    """A new command starts: no stop is under way."""
    _stopping.clear()


def quiet_child_deaths() -> object:
    """Install a no-op SIGCHLD handler and return the one it replaces. A stop signal sent to the whole process
    group (timeout, systemd, Ctrl+C) also ends the data loader's workers, and torch's SIGCHLD handler would
    raise their deaths as errors anywhere in the stop that follows (a handler, not SIG_DFL: a SIGCHLD
    already pending would then raise)."""
    return signal.signal(signal.SIGCHLD, _ignore)


def _ignore(signum: int, frame: FrameType | None) -> None:
    """SIGCHLD, SIGINT or SIGTERM while a stop is under way."""
