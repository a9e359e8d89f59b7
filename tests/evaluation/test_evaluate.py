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


def test_out_never_replaces_another_runs_report_nor_writes_into_another_run(digits_run, tmp_path, run_cli):
    """`evaluate A --out B/eval/test-best` would replace run B's report and `runs` would show A's score as B's:
    a folder inside another run, or one holding a report another run wrote, is refused before any work; the
    run's own reports are replaced as before, and `runs` shows best.pt's score, never --last's."""
    import json
    import shutil

    from deepvision.runs.journal import journal

    runs = tmp_path / "runs"
    other = shutil.copytree(digits_run, runs / "other", ignore=shutil.ignore_patterns("eval"))
    code, _, err = run_cli("evaluate", other)
    assert code == 0, err
    own = other / "eval" / "test-best"
    before = _contents(own)
    report = json.loads(before["metrics.json"])
    assert report["run_id"] == json.loads((other / "run.json").read_text())["run_id"]
    for out in (own, other / "eval" / "new", other):
        code, _, err = run_cli("evaluate", digits_run, "--out", out)
        assert code == 2 and err.count("\n") == 1 and f"is inside the run {other}, not {digits_run}" in err
    assert _contents(own) == before and sorted(p.name for p in (other / "eval").iterdir()) == ["test-best"]

    theirs = tmp_path / "reports" / "x"
    theirs.mkdir(parents=True)
    for written in ({**report, "run_id": "0123456789abcdef"},  # another run's id; an earlier release's report
                    {k: v for k, v in report.items() if k != "run_id"} | {"run": str(tmp_path / "elsewhere")}):
        (theirs / "metrics.json").write_text(json.dumps(written, indent=2))
        code, _, err = run_cli("evaluate", digits_run, "--out", theirs)
        assert code == 2 and err.count("\n") == 1 and f"--out {theirs} holds the report of another run" in err
        assert sorted(p.name for p in theirs.iterdir()) == ["metrics.json"]
    (theirs / "metrics.json").write_text(json.dumps({**report, "run_id": json.loads(
        (digits_run / "run.json").read_text())["run_id"]}, indent=2))  # its own earlier report: replaced
    assert run_cli("evaluate", digits_run, "--out", theirs)[0] == 0

    code, _, err = run_cli("evaluate", other, "--last")
    assert code == 0, err
    last = json.loads((other / "eval" / "test-last" / "metrics.json").read_text())
    last["rank1"] = 0.01  # marked, so that the journal's number shows which report it took
    (other / "eval" / "test-last" / "metrics.json").write_text(json.dumps(last))
    (row,) = journal(runs)
    assert row["test_acc"] == report["rank1"]
