"""Runs train on the cores other processes leave free (engine/threads.py)."""

from __future__ import annotations

import subprocess
import time

import pytest
import torch

from deepvision.engine import threads
from deepvision.errors import UserError


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("value", ["auto", ""])  # empty is unset, as for every DEEPVISION_* variable
def test_busy_neighbour_lowers_the_thread_count(monkeypatch, restore_threads, value):
    monkeypatch.setenv("DEEPVISION_CPU_THREADS", value)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    torch.set_num_threads(2)
    monkeypatch.setattr(threads, "busy_cores", lambda interval=0.25: 1.1)
    previous, note = threads.fit_threads_to_load(torch.device("cpu"))
    assert previous == 2 and torch.get_num_threads() == 1
    assert note == ("1.1 of 2 cores are busy with other processes: training on 1 thread(s) instead of 2 "
                    "(set OMP_NUM_THREADS to choose)")
    torch.set_num_threads(2)
    monkeypatch.setattr(threads, "busy_cores", lambda interval=0.25: 0.3)  # an idle machine keeps every thread
    assert threads.fit_threads_to_load(torch.device("cpu")) == (2, None) and torch.get_num_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's choice wins
    monkeypatch.setattr(threads, "busy_cores", lambda interval=0.25: 2.0)
    assert threads.fit_threads_to_load(torch.device("cpu")) == (2, None) and torch.get_num_threads() == 2


def test_explicit_count_and_bad_values(monkeypatch, restore_threads):
    monkeypatch.setenv("DEEPVISION_CPU_THREADS", "1")
    threads.fit_threads_to_load(torch.device("cpu"))
    assert torch.get_num_threads() == 1
    for value in ("zero", "²", "٢", "0", "99999999"):  # isdigit() takes ² and ٢; int() fails on one, reads the other
        monkeypatch.setenv("DEEPVISION_CPU_THREADS", value)
        with pytest.raises(UserError, match="DEEPVISION_CPU_THREADS must be 'auto' or a thread count from 1 to 1,024"):
            threads.fit_threads_to_load(torch.device("cpu"))


def test_busy_cores_sees_a_spinning_process():
    idle = threads.busy_cores(0.3)
    spinner = subprocess.Popen(["sh", "-c", "while :; do :; done"])
    try:
        time.sleep(0.2)
        busy = threads.busy_cores(0.5)
    finally:
        spinner.kill()
        spinner.wait()
    assert idle is not None and busy is not None
    assert busy >= 0.7  # one core taken (stray load elsewhere can only add to it)
