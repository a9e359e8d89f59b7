"""Training sessions: how a run ends when a stop arrives as another error."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.helpers import tiny_config


def _import_failed_from_sigterm(*args, **kwargs):
    """What a compiled extension's initialiser raises when SIGTERM lands while it imports."""
    from deepvision.errors import Terminated

    try:
        raise Terminated
    except Terminated as exc:
        raise ImportError("initialization failed") from exc


@pytest.mark.parametrize("where", ["setup", "fit"])
def test_a_sigterm_turned_into_an_import_error_stops_training_as_sigterm(tmp_path, run_cli, monkeypatch, where):
    """While the run is set up: the new run folder goes, with the stop's one line; once it is set up: the run is
    marked interrupted (not failed) and the stop says how to start it again."""
    from deepvision.engine import session

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(1, workers=0)))
    if where == "setup":
        monkeypatch.setattr(session, "Trainer", _import_failed_from_sigterm)
    else:
        monkeypatch.setattr(session.Trainer, "fit", _import_failed_from_sigterm)
    code, _, err = run_cli("train", cfg, "--out", tmp_path / "runs", "--name", "r")
    assert code == 143, err
    if where == "setup":
        assert err == f"deepvision train: terminated (SIGTERM); nothing was trained; the new run folder " \
                      f"{tmp_path / 'runs' / 'r'} was removed\n"
        assert not (tmp_path / "runs" / "r").exists()
    else:
        assert err.startswith("training stopped before any epoch completed; start it again with:"), err
        assert json.loads((tmp_path / "runs" / "r" / "run.json").read_text())["status"] == "interrupted"


def test_a_stop_while_the_run_folder_is_made_removes_it(tmp_path, run_cli, monkeypatch):
    """A SIGTERM after the run folder was made and before its sub-folders were left the folder behind, without
    the note that it was removed."""
    from deepvision.errors import Terminated
    from deepvision.runs.rundir import RunDir

    def stopped(self, name):
        raise Terminated

    monkeypatch.setattr(RunDir, "folder", stopped)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(1, workers=0)))
    code, _, err = run_cli("train", cfg, "--out", tmp_path / "runs", "--name", "r")
    assert (code, err) == (143, f"deepvision train: terminated (SIGTERM); nothing was trained; the new run folder "
                                f"{tmp_path / 'runs' / 'r'} was removed\n")
    assert not (tmp_path / "runs").exists()


def _second_ctrl_c_in_training(self, *args, **kwargs):
    """A double Ctrl+C in training (the second stops at once), then more signals while the stop unwinds (a
    third press, `timeout` signalling the process group again)."""
    import signal

    from deepvision.engine.signals import GracefulStop

    try:
        with GracefulStop() as self.stop:  # as fit() holds it
            signal.raise_signal(signal.SIGINT)  # the first asks for a stop after the batch
            signal.raise_signal(signal.SIGINT)  # the second raises KeyboardInterrupt at once
    finally:
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGTERM)


def test_a_run_stopped_at_once_by_a_second_ctrl_c_is_interrupted_not_failed(tmp_path, run_cli, monkeypatch):
    """The stop's one line and exit code, the run marked interrupted, no hidden partial file; signals arriving
    while it unwinds change nothing."""
    from deepvision.engine import session

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(1, workers=0)))
    monkeypatch.setattr(session.Trainer, "fit", _second_ctrl_c_in_training)
    code, _, err = run_cli("train", cfg, "--out", tmp_path / "runs", "--name", "r")
    assert (code, err) == (130, "interrupted\n")
    run = tmp_path / "runs" / "r"
    state = json.loads((run / "run.json").read_text())
    assert state["status"] == "interrupted" and "error" not in state, state
    assert [p.name for p in run.rglob(".*")] == []
