"""BENCHMARKS.md as a current report: a benchmark replaces its own section and keeps the old run in the history."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def machine(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setattr(sys, "argv", [str(BENCHMARKS / "reference_nets.py"), "--rounds", "3", "--nets", "a b"])
    monkeypatch.setenv("KERAS_PYTHON", "/somewhere/python")
    monkeypatch.delenv("MXNET_PYTHON", raising=False)
    import machine

    yield machine
    sys.modules.pop("machine", None)


def test_a_run_replaces_its_section_and_moves_the_old_one_to_the_history(machine, tmp_path):
    report, history = tmp_path / "BENCHMARKS.md", tmp_path / "history.md"
    report.write_text("# Benchmarks\n\nIntro.\n\n## Packing\n\nold packing\n\n## Loading\n\nold loading\n")
    machine.write_section("Loading", "new loading 1", report, history)
    machine.write_section("Training", "new training", report, history)
    machine.write_section("Loading", "new loading 2", report, history)

    command = "`KERAS_PYTHON=... python benchmarks/reference_nets.py --rounds 3 --nets 'a b'`"
    assert report.read_text() == (
        "# Benchmarks\n\nIntro.\n\n## Packing\n\nold packing\n\n"
        f"## Loading\n\n{command}\n\nnew loading 2\n\n"
        f"## Training\n\n{command}\n\nnew training\n")
    text = history.read_text()
    assert text.startswith(machine.HISTORY_INTRO)
    entries = text[len(machine.HISTORY_INTRO):].split("\n## ")[1:]
    assert [e.split("\n", 1)[0].rsplit(" (replaced ", 1)[0] for e in entries] == ["Loading", "Loading"]
    assert f"{command}\n\nnew loading 1" in entries[0] and entries[1].rstrip().endswith("old loading")
