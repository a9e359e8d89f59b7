"""`deepvision runs` with detection runs: the monitored metric (val_map50) at the best epoch and the test mAP."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

from deepvision.runs.journal import journal
from deepvision.runs.rundir import RunDir
from tests.runs.test_journal_table import fake_run


def test_journal_shows_the_monitored_metric_and_test_map(trained_detection_run, tmp_path, run_cli):
    det = RunDir(shutil.copytree(trained_detection_run, tmp_path / "det"))
    best = det.read_history()[0]["val_map50"]
    test = det.read_test_metrics()
    (row,) = journal(tmp_path)
    assert row["monitor"] == "val_map50" and row["best_value"] == best and row["best_epoch"] == 1
    assert row["test_map50"] == test["test_map50"] and row["test_value"] == test["test_map50"]
    assert row["test_map"] == test["test_map"] and row.get("best_val_acc") is None

    fake_run(tmp_path, "cls", {"name": "constant"}, 3)  # a classification run in the same table
    code, out, err = run_cli("runs", tmp_path)
    assert code == 0, err
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    head = next(line for line in lines if line.lstrip().startswith("run"))
    assert "val r1" in head and "val best" in head and "test mAP50" in head  # two monitors: a generic title
    det_line = next(line for line in lines if line.startswith("det "))
    assert f"{best * 100:.2f}" in det_line and f"{test['test_map50'] * 100:.2f}" in det_line
    assert "VOC mAP@0.5 and COCO mAP@[.5:.95], %" in out

    (tmp_path / "cls").rename(tmp_path.parent / f"{tmp_path.name}-cls")  # detection alone: the metric's name
    code, out, _ = run_cli("runs", tmp_path, "--columns", "name,best_epoch,best_value,test_value,test_map")
    assert "val mAP50" in out and "test mAP50" in out and "test mAP" in out
    table = list(csv.DictReader(io.StringIO((tmp_path / "journal.csv").read_text())))
    assert table[0]["monitor"] == "val_map50" and float(table[0]["best_value"]) == best

    # `deepvision evaluate` reports on the test split take precedence over the trainer's numbers
    report = det.eval_dir / "detection-test-best"
    report.mkdir(parents=True)
    (report / "metrics.json").write_text(json.dumps({"voc_map50": 0.5, "coco": {"map": 0.25}}))
    (row,) = journal(tmp_path)
    assert (row["test_map50"], row["test_map"], row["test_value"]) == (0.5, 0.25, 0.5)
    # a report naming data "test" but another split (a folder named test, scored before reports named the split)
    (report / "metrics.json").write_text(json.dumps({"data": "test", "split": "train", "voc_map50": 0.9}))
    assert journal(tmp_path)[0]["test_map50"] == test["test_map50"]


def test_runs_compare_accepts_detection_columns(trained_detection_run, tmp_path, run_cli):
    import shutil

    other = tmp_path / "copy"
    shutil.copytree(trained_detection_run, other)  # a second run (one run named twice is refused)
    code, out, err = run_cli("runs", "compare", trained_detection_run, other,
                             "--metrics", "val_map50", "--out", tmp_path / "cmp.png")
    assert code == 0, err
    assert (tmp_path / "cmp.png").stat().st_size > 0
    code, _, err = run_cli("runs", "compare", trained_detection_run, other, "--metrics", "val_nope")
    assert code == 2 and "unknown metric 'val_nope'" in err and "val_map50" in err
    code, _, err = run_cli("runs", "compare", trained_detection_run, other, "--metrics", "val_acc")
    assert code == 2 and "unknown metric 'val_acc'; the runs hold " in err  # no detection run has it: an empty panel


def test_runs_compare_draws_detection_runs_on_their_own_quantities(trained_detection_run, tmp_path, run_cli,
                                                                 monkeypatch):
    """Two detection runs were drawn on the classification panels: an empty rank-1 accuracy panel and the
    summed detection loss titled as cross-entropy, with their mAP nowhere."""
    import shutil

    from deepvision.runs import plots

    other = tmp_path / "copy"
    shutil.copytree(trained_detection_run, other)
    drawn = []
    monkeypatch.setattr(plots, "plot_compare", lambda histories, path, metrics, task: drawn.append((metrics, task))
                        or plots.Path(path))
    code, _, err = run_cli("runs", "compare", trained_detection_run, other, "--out", tmp_path / "cmp.png")
    assert code == 0, err
    assert drawn == [(("val_map50", "train_loss"), "detection")]
    assert plots.metric_title("train_loss", "detection") == "training detection loss (sum of its components)"
    assert plots.metric_title("val_map50", "detection") == "validation mAP@0.5"


def test_runs_compare_refuses_runs_of_two_tasks(trained_detection_run, tmp_path, run_cli):
    """A detection run's loss (classifier + box regression) was drawn on the cross-entropy axis beside
    classification runs, and it was absent from the accuracy panel without a word."""
    from tests.runs.test_journal_table import fake_run

    cls = fake_run(tmp_path, "cls", {"name": "constant"}, 3)
    code, out, err = run_cli("runs", "compare", cls.path, trained_detection_run, "--out", tmp_path / "c.png")
    assert (code, out) == (2, "") and err.count("\n") == 1 and "is a classification run and" in err and \
        "a detection run: their losses and metrics are other quantities; compare runs of one task" in err, err
    assert not (tmp_path / "c.png").exists()


def test_a_report_of_other_data_is_not_the_runs_test_score(trained_detection_run, tmp_path, run_cli):
    """`evaluate --data OTHER` writes eval/detection-<other>-<split>-best and names its data and split; `runs` keeps
    reporting the run's own test split, and the run's own report folder is not replaced."""
    from tests.detection_helpers import built_fake

    det = RunDir(shutil.copytree(trained_detection_run, tmp_path / "runs" / "det"))
    code, _, err = run_cli("evaluate", det.path)
    assert code == 0, err
    own = json.loads((det.eval_dir / "detection-test-best" / "metrics.json").read_text())
    assert own["data"] == "test" and own["split"] == "test"
    (row,) = journal(tmp_path / "runs")
    other = built_fake(tmp_path / "o", images=6, size=96, seed=9)
    code, _, err = run_cli("evaluate", det.path, "--data", other)
    assert code == 0, err
    report = json.loads((det.eval_dir / f"detection-{other.name}-test-best" / "metrics.json").read_text())
    assert report["data"] == str(other) and report["split"] == "test"
    assert json.loads((det.eval_dir / "detection-test-best" / "metrics.json").read_text()) == own
    test_named = other.rename(other.parent / "test")  # a folder named like the split goes beside the own report
    code, _, err = run_cli("evaluate", det.path, "--data", test_named)
    assert code == 0, err
    assert json.loads((det.eval_dir / "detection-test-test-best" / "metrics.json").read_text())["data"] == str(
        test_named)
    assert json.loads((det.eval_dir / "detection-test-best" / "metrics.json").read_text()) == own
    assert journal(tmp_path / "runs") == [row]


def test_two_splits_of_other_data_keep_two_reports(trained_detection_run, tmp_path, run_cli, monkeypatch):
    """`detection evaluate RUN --data DIR --split train`, then `--split test`: two folders, each metrics.json naming
    its data and split; a report of the same data and split is replaced, one of another split never is."""
    from tests.detection_helpers import built_fake

    det = RunDir(shutil.copytree(trained_detection_run, tmp_path / "runs" / "det"))
    built_fake(tmp_path / "o", images=6, size=96, seed=9)
    monkeypatch.chdir(tmp_path / "o")
    (row,) = journal(tmp_path / "runs")
    folders = {}
    for split in ("train", "test"):
        code, out, err = run_cli("detection", "evaluate", det.path, "--data", "voc-built", "--split", split)
        folders[split] = det.eval_dir / f"detection-voc-built-{split}-best"
        assert code == 0 and out.splitlines()[-1].endswith(f"to {folders[split]}/"), err
    reports = {split: json.loads((folder / "metrics.json").read_text()) for split, folder in folders.items()}
    assert {s: (r["data"], r["split"]) for s, r in reports.items()} == {s: ("voc-built", s) for s in folders}
    assert reports["train"]["images"] != reports["test"]["images"]
    code, _, err = run_cli("detection", "evaluate", det.path, "--data", "voc-built", "--split", "test")
    assert code == 0, err  # the same data and split: its own report replaced, no third folder
    assert sorted(p.name for p in det.eval_dir.iterdir()) == sorted(f.name for f in folders.values())
    assert json.loads((folders["train"] / "metrics.json").read_text()) == reports["train"]
    assert journal(tmp_path / "runs") == [row]  # neither is the run's own test score


def test_detection_evaluate_never_writes_its_report_into_the_users_folder(trained_detection_run, tmp_path, run_cli):
    """`detection evaluate --out DIR` wrote metrics.json and its figures into any folder; like `evaluate`, it
    takes only a new, empty or earlier report folder."""
    det = shutil.copytree(trained_detection_run, tmp_path / "runs" / "det")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics.json").write_text('{"mine": 1}\n')
    code, out, err = run_cli("detection", "evaluate", det, "--out", mine)
    assert (code, out) == (2, "") and err.count("\n") == 1 and str(mine) in err, err
    assert sorted(p.name for p in mine.iterdir()) == ["metrics.json"]
    assert (mine / "metrics.json").read_text() == '{"mine": 1}\n'
    code, _, err = run_cli("detection", "evaluate", det, "--out", tmp_path / "report")
    assert code == 0 and (tmp_path / "report" / "metrics.json").is_file(), err
    code, _, err = run_cli("detection", "evaluate", det, "--out", tmp_path / "report")
    assert code == 0, err  # its own earlier report is replaced


def test_detection_evaluate_on_the_data_the_run_trained_from_says_so(trained_detection_run, tmp_path, run_cli):
    """`detection evaluate RUN --data DIR --split train` on the run's own dataset (or a link to it) scored its
    training images without a word; another dataset's train split is not counted."""
    import yaml

    from tests.detection_helpers import built_fake

    root = Path(yaml.safe_load((trained_detection_run / "config.yaml").read_text())["data"]["root"])
    (tmp_path / "link").symlink_to(root, target_is_directory=True)
    other = built_fake(tmp_path / "o", images=6, size=96, seed=9)
    for data, said in ((root, True), (tmp_path / "link", True), (other, False)):
        code, out, err = run_cli("detection", "evaluate", trained_detection_run, "--data", data, "--split", "train",
                                 "--out", tmp_path / f"r-{data.name}")
        warned = [line for line in out.splitlines() if line.startswith("[WARN]")]
        assert code == 0 and len(warned) == said, (out, err)
        assert not said or warned[0].endswith(f"images of train in {data} are images the run trained on: its "
                                              f"scores do not measure generalisation")
