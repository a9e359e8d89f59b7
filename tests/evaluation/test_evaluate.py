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


def test_a_detection_run_refuses_the_options_it_would_ignore_and_takes_its_batch_size(tmp_path, run_cli, monkeypatch):
    """--crops and --skip-corrupt have no meaning for a detection run's mAP (one view per image, every image read):
    refused in one line, nothing written; --batch-size sets the batches it is scored in."""
    from deepvision.evaluation import detection
    from tests.detection_helpers import built_fake, make_detection_run

    run = make_detection_run(tmp_path / "runs", built_fake(tmp_path, images=4, size=96, seed=2),
                             ["disc", "square", "triangle"])
    cases = [(("--crops", "10", "--batch-size", "1", "--skip-corrupt"), "--crops and --skip-corrupt", "go"),
             (("--skip-corrupt",), "--skip-corrupt", "goes"),
             (("--crops", "2"), "--crops", "goes")]
    for args, given, verb in cases:
        code, out, err = run_cli("evaluate", run, *args)
        assert (code, out) == (2, "") and err.splitlines() == [
            f"deepvision evaluate: error: {given} {verb} with classification runs; {run} is a detection run (one "
            f"view per image, every image read): leave {given} out"], err
    assert not (run / "eval").exists()
    sizes = []
    loader = detection.BatchLoader
    monkeypatch.setattr(detection, "BatchLoader", lambda source, batch, **kw: sizes.append(batch) or
                        loader(source, batch, **kw))
    assert run_cli("evaluate", run, "--batch-size", "1", "--out", tmp_path / "one")[0] == 0
    assert sizes == [1] and (tmp_path / "one" / "metrics.json").is_file()
