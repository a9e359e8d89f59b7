"""The stop rule of the CLI (`sigterm_raises`): where a signal's exception is raised, and where it waits."""

from __future__ import annotations

import logging
import os
import signal
import time

import pytest

from deepvision.cli.terminate import sigterm_raises
from deepvision.errors import Terminated
from tests.helpers import make_image_folder

STOPS = [(signal.SIGTERM, Terminated), (signal.SIGINT, KeyboardInterrupt)]


class SignallingLock:
    """logging's module lock, whose release in the parent of a fork (logging's at-fork hook) sends `sig` once."""

    def __init__(self, sig: int) -> None:
        self.lock, self.sig, self.armed, self.parent = logging._lock, sig, False, os.getpid()

    def acquire(self, *args: object) -> bool:
        return self.lock.acquire(*args)

    def release(self) -> None:
        if self.armed and os.getpid() == self.parent:
            self.armed = False
            signal.raise_signal(self.sig)  # raised here, the stop would leave the lock held
        self.lock.release()


def fork_and_work(sent: list[bool], steps: list[str]) -> None:
    """Fork a child that exits at once, then work for a while, as a pool's start and the work after it."""
    sent.append(True)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        time.sleep(5)  # the command's work, which the stop cuts short
        steps.append("finished")
    finally:
        os.waitpid(pid, 0)


@pytest.mark.parametrize(("sig", "stop"), STOPS)
def test_a_stop_that_lands_in_loggings_at_fork_hook_is_raised_once_the_fork_returned(monkeypatch, capsys, sig, stop):
    """A signal handled while os.fork runs logging's hook (releasing its lock as a pool starts its workers):
    raised there, Python printed "Exception ignored in: <function _releaseLock>" and went on, and the command
    ran to its end, exit 0. The stop waits for the fork to return (the hook's work done), then ends the block."""
    lock = SignallingLock(sig)
    monkeypatch.setattr(logging, "_lock", lock)
    steps: list[str] = []
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    with pytest.raises(stop), sigterm_raises():
        lock.armed = True
        fork_and_work([], steps)
    assert steps == [] and not lock.armed and not lock.lock._is_owned()
    assert "Exception ignored" not in capsys.readouterr().err
    assert {s: signal.getsignal(s) for s in before} == before


@pytest.mark.parametrize(("sig", "stop"), STOPS)
def test_a_stop_that_python_ignored_is_raised_again(capsys, sig, stop):
    """A stop raised where Python prints and ignores exceptions, which the rule cannot see beforehand (an at-fork
    hook registered after its own, a weakref callback), is not lost: it is raised at the next safe point."""
    armed: list[bool] = []
    parent = os.getpid()

    def late_hook() -> None:
        if armed and os.getpid() == parent:
            armed.clear()
            signal.raise_signal(sig)

    steps: list[str] = []
    hook = sys_unraisablehook()
    with pytest.raises(stop), sigterm_raises():
        os.register_at_fork(after_in_parent=late_hook)  # registered after the rule's own hooks
        fork_and_work(armed, steps)
    assert steps == [] and not armed
    assert "Exception ignored" not in capsys.readouterr().err
    assert sys_unraisablehook() is hook


def sys_unraisablehook() -> object:
    import sys

    return sys.unraisablehook


@pytest.mark.parametrize(("sig", "stop"), STOPS)
def test_a_stop_that_lands_in_a_finalizer_waits_for_it_to_end(capsys, sig, stop):
    """A signal handled while an object's `__del__` runs: raised there, Python would print and ignore it, and the
    finalizer's own work would be cut short. It is raised once the finalizer is done."""
    done: list[str] = []

    class Finalized:
        def __del__(self) -> None:
            signal.raise_signal(sig)
            done.append("finalized")

    with pytest.raises(stop), sigterm_raises():
        obj = Finalized()
        del obj
        time.sleep(5)  # the work that the stop cuts short
        done.append("finished")
    assert done == ["finalized"]
    assert "Exception ignored" not in capsys.readouterr().err


@pytest.mark.parametrize(("sig", "code", "line"), [
    (signal.SIGTERM, 143, "deepvision im2rec: terminated (SIGTERM); unfinished record files were removed\n"),
    (signal.SIGINT, 130, "interrupted\n")])
def test_im2rec_stopped_while_its_pool_starts_ends_with_the_stops_line(tmp_path, run_cli, monkeypatch, sig, code,
                                                                       line):
    """A stop landing as the packing pool forks its workers (in logging's at-fork hook) printed a traceback,
    was lost, and im2rec packed on, exit 0. It ends the command with its one line, no record file left, and
    no worker: the stop waits for the pool to start, so that the pool is stopped."""
    import multiprocessing

    images = make_image_folder(tmp_path / "images", n_per_class=4, size=16)
    assert run_cli("im2rec", "--list", "--recursive", tmp_path / "set", images)[0] == 0
    listed = sorted(p.name for p in tmp_path.iterdir())
    lock = SignallingLock(sig)
    monkeypatch.setattr(logging, "_lock", lock)
    lock.armed = True
    result, out, err = run_cli("im2rec", "--num-thread", "2", tmp_path / "set", images)
    assert (result, out, err.splitlines()[-1] + "\n") == (code, "", line)
    assert "Traceback" not in err and "Exception ignored" not in err and not lock.armed
    assert sorted(p.name for p in tmp_path.iterdir()) == listed
    assert not multiprocessing.active_children()


@pytest.mark.parametrize(("sig", "stop"), STOPS)
def test_a_stop_waiting_for_a_safe_point_waits_for_steps_that_hold_stops(sig, stop):
    """A stop that waits (it landed in an at-fork hook) is raised by a timer's recheck; steps that must all happen
    or none (`stops_held`: a pool's start, which the stop must find whole to stop it) hold that recheck too."""
    from deepvision.cli import terminate
    from deepvision.fileio import stops_held

    steps: list[str] = []
    try:
        with pytest.raises(stop), sigterm_raises():
            terminate._forking.append(True)  # as in an at-fork hook: the stop waits
            signal.getsignal(sig)(sig, None)
            with stops_held():
                terminate._forking.clear()
                time.sleep(0.5)  # the recheck comes meanwhile, and waits for the block's end
                steps.append("held")
            steps.append("after")
    finally:
        terminate._forking.clear()
    assert steps == ["held"]
