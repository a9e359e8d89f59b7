"""`report_folder`: a default report folder only ever replaces an earlier report of the same data (and, for
detection, the same split)."""

from __future__ import annotations

import json

from deepvision.evaluation.report_folder import report_folder
from deepvision.runs.rundir import RunDir


def _report(run: RunDir, name: str, **metrics: object) -> None:
    (run.path / "eval" / name).mkdir(parents=True)
    (run.path / "eval" / name / "metrics.json").write_text(json.dumps(metrics))


def test_a_report_of_another_split_is_never_replaced(tmp_path):
    run = RunDir(tmp_path / "run")
    _report(run, "d-best", data=str(tmp_path / "d"), split="train")
    before = (run.path / "eval" / "d-best" / "metrics.json").read_text()
    assert report_folder(run, "d-best", str(tmp_path / "d"), "train") == run.path / "eval" / "d-best"
    assert report_folder(run, "d-best", str(tmp_path / "d"), "test") == run.path / "eval" / "d-best-2"
    _report(run, "d-best-2", data=str(tmp_path / "d"), split="test")
    assert report_folder(run, "d-best", str(tmp_path / "d"), "test") == run.path / "eval" / "d-best-2"
    assert report_folder(run, "d-best", str(tmp_path / "e"), "train") == run.path / "eval" / "d-best-3"
    assert report_folder(run, "d-best", str(tmp_path / "d")) == run.path / "eval" / "d-best"  # no split: data alone
    assert (run.path / "eval" / "d-best" / "metrics.json").read_text() == before
    _report(run, "test-best", split="test")  # an earlier report without `data`: the run's own split
    assert report_folder(run, "test-best", "test", "test") == run.path / "eval" / "test-best"
    assert report_folder(run, "test-best", "test", "val") == run.path / "eval" / "test-best-2"
