"""`deepvision evaluate` on a classification run: the report folder as a whole."""

from __future__ import annotations

import pytest

from deepvision.api import train
from deepvision.errors import Terminated
from tests.helpers import tiny_config


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    cfg = tiny_config(1, max_samples=60, test_fraction=0.5, test=None)
    return train(cfg, out=tmp_path_factory.mktemp("runs"), name="digits").run_dir


def _contents(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize(("stop", "code"), [(Terminated, 143), (KeyboardInterrupt, 130)])
def test_a_stop_while_the_report_is_written_leaves_no_half_report(digits_run, tmp_path, run_cli, monkeypatch,
                                                                   stop, code):
    """Ctrl+C or SIGTERM after the confusion matrix is drawn: the run gains no empty eval/ folder, a new
    --out is not created, and an earlier report stays as it was, whole."""
    from deepvision.evaluation import evaluate

    assert run_cli("evaluate", digits_run, "--out", tmp_path / "earlier")[0] == 0
    before = _contents(tmp_path / "earlier")
    assert {"metrics.json", "confusion_matrix.png", "predictions.csv"} <= set(before)

    def stopped(*args):
        raise stop

    monkeypatch.setattr(evaluate, "_predictions_csv", stopped)
    for out in (None, tmp_path / "earlier", tmp_path / "new" / "report"):
        got, _, err = run_cli("evaluate", digits_run, *(("--out", out) if out else ()))
        assert (got, err.count("\n")) == (code, 1)
    assert not (digits_run / "eval").exists()
    assert _contents(tmp_path / "earlier") == before and sorted(p.name for p in tmp_path.iterdir()) == ["earlier"]
