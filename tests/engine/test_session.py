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
