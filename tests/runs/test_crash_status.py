"""A run whose process dies of a native crash reads "crashed", says so in train.log, and resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import yaml

from deepvision.api import resume
from deepvision.runs.journal import journal, render_table
from deepvision.runs.rundir import RunDir
from tests.helpers import tiny_config


def test_a_segfault_mid_run_reads_crashed_and_resume_goes_on_from_the_last_epoch(tmp_path):
    cfg = tiny_config(500, max_samples=160)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "DEEPVISION_CPU_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "deepvision", "train", str(path), "--out", str(tmp_path / "runs"),
                             "--name", "c"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    run = RunDir(tmp_path / "runs" / "c")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(run.read_history()) < 2:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGSEGV)  # what a crashing native kernel does to the process
    assert proc.wait(timeout=60) == -signal.SIGSEGV

    assert run.status() == "crashed"
    assert run.crash_report() == "Fatal Python error: Segmentation fault"
    assert "deepvision/engine/" in run.log_path.read_text()  # the Python stack where it died
    rows = journal(tmp_path / "runs")
    assert [r["status"] for r in rows] == ["crashed"]
    table = render_table(rows, width=80)
    words = " ".join(table.split())
    assert "c: the process died mid-run" in words and "`deepvision resume RUN` goes on from the last" in words
    assert max(len(line) for line in table.splitlines()) <= 80

    # The checkpoint, history.csv and run.json are written in that order after each epoch: the signal may land
    # between two of them, so the latest checkpoint and history.csv can be one epoch ahead of run.json.
    done = json.loads(run.state_path.read_text())["epochs_done"]
    rows = len(run.read_history())
    assert rows >= 2 and done in (rows - 1, rows), (done, rows)
    resume(run.path, overrides=[f"train.epochs={rows + 2}"])
    assert run.status() == "finished"
    assert [r["epoch"] for r in run.read_history()] == list(range(1, rows + 3))
    assert run.crash_report() is None  # the resumed segment wrote after the report


def test_a_run_killed_without_a_report_reads_killed(tmp_path):
    run = RunDir(tmp_path / "k")
    run.path.mkdir()
    run.write_state({"status": "running"})
    run.log_path.write_text("2026-01-01 10:00:00 Epoch[0] Batch [5]\tSpeed: 10 samples/sec\n")
    assert run.status() == "killed"  # SIGKILL or the OOM killer leave nothing in train.log
    run.log_path.write_text("2026-01-01 10:00:00 Epoch[0]\nFatal Python error: Aborted\n\nCurrent thread:\n")
    assert run.status() == "crashed" and run.crash_report() == "Fatal Python error: Aborted"


def test_a_fifo_as_train_log_of_a_killed_run_marks_it_damaged_and_the_listing_goes_on(tmp_path, run_cli):
    """A "running" run whose process is gone has train.log read for a crash report: a FIFO there is named as
    the other run files are, never opened (the read would wait for a writer for ever)."""
    from tests.runs.test_journal_table import fake_run

    fake_run(tmp_path, "good", {"name": "constant"}, 2)
    bad = fake_run(tmp_path, "k1", {"name": "constant"}, 2, status="running")
    os.mkfifo(bad.log_path)

    def hung(*_):
        raise AssertionError("train.log was opened as a FIFO")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        rows = {r["name"]: r for r in journal(tmp_path)}
        code, out, err = run_cli("runs", tmp_path)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert rows["k1"]["status"] == f"damaged: {bad.log_path} is not a regular file (a FIFO); delete it (training " \
                                   f"starts a new train.log)"
    assert rows["good"]["status"] == "finished"
    assert code == 0 and err == "" and "k1: " in out and "good" in out
    assert bad.log_path.is_fifo()
