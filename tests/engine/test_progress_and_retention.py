"""What a new user sees while training: 80-column console lines counting epochs from 1, a
line per epoch off a terminal, heartbeat lines, the run summary with checkpoint disk use; the default
checkpoint retention; rank-5 left out with <= 5 classes; evaluate naming the splits a run has."""

from __future__ import annotations

import io
import json

import pytest
import yaml

from deepvision.engine import reporting
from deepvision.runs.rundir import RunDir
from tests.helpers import run_main, tiny_config


@pytest.fixture(scope="module")
def stepped(tmp_path_factory):
    """9 short epochs with a learning-rate step at epoch 3, default retention, console captured."""
    root = tmp_path_factory.mktemp("stepped")
    cfg = tiny_config(9, max_samples=200)
    cfg["schedule"] = {"name": "piecewise", "ranges": ["1-2: 0.05", "3-9: 0.005"]}
    cfg["train"].update(max_steps=2, log_every=1000, progress="lines")
    (root / "c.yaml").write_text(yaml.safe_dump(cfg))
    code, out, err = run_main("train", root / "c.yaml", "--out", root / "runs", "--name", "stepped")
    assert code == 0, err
    return RunDir(root / "runs" / "stepped"), out


def test_retention_keeps_the_newest_two_and_the_epoch_before_the_step(stepped):
    run, _ = stepped
    assert list(run.saved_epochs()) == [2, 8, 9]  # 1, 3-7 pruned; 2 precedes the step to 0.005
    assert (run.checkpoints / "best.pt").is_file() and (run.checkpoints / "last.pt").is_file()
    assert run.read_config().checkpoint.keep == 2


def test_console_counts_epochs_from_one_and_fits_80_columns(stepped):
    run, out = stepped
    lines = out.splitlines()
    assert max(len(line) for line in lines if str(run.path) not in line) <= 80  # a long tmp path cannot fit
    assert "Epoch[" not in out  # the MXNet 0-based form stays in train.log
    assert "Epoch[0] Time cost=" in run.log_path.read_text()
    summaries = [line for line in lines if line.startswith("epoch ") and " val loss " in line]
    assert [s.split()[1] for s in summaries] == [f"{e}/9" for e in range(1, 10)]  # one line per epoch off a TTY
    assert "lr 0.05" in summaries[0] and "lr 0.005" in summaries[2] and "lr " not in summaries[3]
    done = lines.index(next(line for line in lines if line.startswith("done: ")))
    assert lines[done].startswith("done: 9 epochs; best epoch ") and lines[done + 1] == f"  run directory: {run.path}"
    assert lines[done + 3].startswith("  checkpoints: ")
    assert "(last.pt, best.pt, epochs 2, 8-9; checkpoint.keep 2)" in lines[done + 3]
    # the periodic files of epochs 2 and 8 are older epochs; how to delete them follows
    assert lines[done + 4].endswith("of it is older epochs; to keep only last.pt and best.pt:")
    assert lines[done + 5] == f"    deepvision runs prune {run.path}"


def test_heartbeat_lines_off_a_terminal(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(reporting, "HEARTBEAT_S", 0.0)
    rep = reporting.Reporter(None, progress="auto", stream=out)
    rep.start_epoch(2, 5, 8)
    for _ in range(3):
        rep.advance(1, {"loss": 0.25, "acc": 0.5, "count": 10})
    rep.end_epoch()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[0].startswith("epoch 3/8  batch 1/5  ETA ")
    assert lines[-1].endswith("loss 0.25 acc 50.00%") and "batch 3/5" in lines[-1]


def test_progress_bar_shows_eta_and_live_metrics():
    from rich.console import Console

    def shown(rep: reporting.Reporter) -> str:
        buf = io.StringIO()
        Console(file=buf, width=80).print(rep.phase.progress.get_renderable())
        return buf.getvalue()

    rep = reporting.Reporter(None, progress="bar", stream=io.StringIO())
    rep.start_epoch(0, 40, 2)
    for _ in range(10):
        rep.advance(1, {"loss": 0.5, "acc": 0.75})
    bar = shown(rep)
    assert bar.startswith("epoch 1/2 ") and "10/40 ETA " in bar and bar.rstrip().endswith("loss 0.5 acc 75.00%")
    rep.start_phase("epoch 1/2 val", 3)
    rep.advance(1)
    assert shown(rep).startswith("epoch 1/2 val ") and "1/3 ETA" in shown(rep)
    rep.end_epoch()
    assert rep.phase is None


@pytest.fixture(scope="module")
def two_classes(tmp_path_factory):
    """One epoch on 2 classes, without a test split."""
    root = tmp_path_factory.mktemp("two")
    cfg = tiny_config(1, source="synthetic", train="train", val_fraction=0.25,
                      options={"classes": 2, "samples": 64, "size": 28, "channels": 1})
    cfg["train"]["max_steps"] = 1
    (root / "c.yaml").write_text(yaml.safe_dump(cfg))
    code, out, err = run_main("train", root / "c.yaml", "--out", root / "runs", "--name", "two")
    assert code == 0, err
    return RunDir(root / "runs" / "two"), out


def test_one_epoch_and_no_rank5_with_two_classes(two_classes):
    run, out = two_classes
    assert "done: 1 epoch;" in out
    assert not any("top5" in line for line in out.splitlines() if line.startswith("epoch "))
    assert run.read_history()[0]["val_top5"] is None and "top_k_accuracy" not in run.log_path.read_text()
    assert "rank-5" not in out
    code, report_out, err = run_main("evaluate", run.path, "--data", "val")
    assert code == 0, err
    assert "[INFO] rank-1:" in report_out and "rank-5" not in report_out
    assert json.loads((run.eval_dir / "val-best" / "metrics.json").read_text())["rank5"] is None


def test_evaluate_names_the_splits_the_run_has(two_classes):
    run, _ = two_classes
    code, _, err = run_main("evaluate", run.path, "--data", "test")
    assert code == 2 and "has no 'test' split; choose from train, val" in err and err.count("\n") == 1


def test_detection_epoch_line_fits_80_columns():
    from types import SimpleNamespace

    from deepvision.engine.callbacks.logging import Terminal
    from deepvision.runs.history import EpochRecord

    terminal = Terminal()
    terminal.trainer = SimpleNamespace(cfg=SimpleNamespace(train=SimpleNamespace(epochs=40)), best_epoch=12)
    train = {"loss": 0.8123, "loss_classifier": 0.2345, "loss_box_reg": 0.3456, "loss_objectness": 0.0123,
             "loss_rpn_box_reg": 0.0456, "count": 400}
    record = EpochRecord(12, 0.00123, train, {"map50": 0.8123, "map": 0.5123, "count": 100}, 12.3, 123.4)
    line = terminal.summary(record)
    assert len(line) <= 80 and line.startswith("epoch 12/40  loss 0.8123  val map50 0.8123 map 0.5123")
    assert "best" in line
    ssd = terminal.summary(EpochRecord(12, 0.00123, {"loss": 3.1, "loss_classification": 2.0,
                                                       "loss_bbox_regression": 1.1},
                                       {"map50": 0.5, "map": 0.25}, 80.0, 20.0))
    assert len(ssd) <= 80 and "classification" not in ssd  # the components give way whole (history.csv has them)
    short = terminal.summary(EpochRecord(3, 0.01, {"loss": 3.1, "loss_classification": 2.0}, None, 80.0, 2.0))
    assert short.startswith("epoch 3/40  loss 3.1  2.0s  lr 0.01  (classification 2)")


def test_detection_speedometer_line_fits_80_columns():
    import io

    from deepvision.engine.reporting import Reporter

    stream = io.StringIO()
    reporter = Reporter(None, progress="lines", stream=stream)
    reporter.epoch, reporter.epochs, reporter.steps = 4, 40, 1250
    window = {"loss": 0.8123, "loss_classifier": 0.2345, "loss_box_reg": 0.3456, "loss_objectness": 0.0123,
              "loss_rpn_box_reg": 0.0456}
    reporter.speedometer_console(4, 1200, 12.3, window)
    (line,) = stream.getvalue().splitlines()
    assert len(line) <= 80 and line.startswith("epoch 5/40  batch 1200/1250  loss 0.8123  12 samples/s")
    assert "loss_" not in line  # components whole or not at all (train.log has them)
