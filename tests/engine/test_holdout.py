"""The test split scored by the trainer (train.test, train.test_every): after training (best.pt ->
test_metrics.json) and every N epochs (test_history.csv), for classification and detection, across resume."""

from __future__ import annotations

import json
import math

import pytest

from deepvision.api import evaluate, resume, train
from deepvision.config.io import build_config
from deepvision.errors import UserError
from deepvision.runs.rundir import RunDir
from tests.helpers import tiny_config


def _classification(epochs: int, **train_keys) -> dict:
    cfg = tiny_config(epochs, max_samples=120, test_fraction=0.2)
    cfg["train"].update(train_keys)
    cfg["checkpoint"] = {"keep": None}  # the tests resume from early epochs
    return cfg


def test_classification_test_every_epoch_best_at_the_end_and_resume(tmp_path):
    result = train(_classification(2, test_every=1), out=tmp_path, name="cls")
    run = RunDir(result.run_dir)
    rows = run.read_history(run.test_history_path)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert run.test_history_path.read_text().splitlines()[0] == "epoch,test_loss,test_acc,test_top5,count,seconds"
    assert all(r["count"] == 120 and 0 <= r["test_acc"] <= 1 and r["test_loss"] > 0 for r in rows)
    final = run.read_test_metrics()
    assert final["checkpoint"] == "best" and final["epoch"] == result.best_epoch and final["epochs"] == 2
    assert final["samples"] == 120 and final["monitor"] == "val_acc"
    # best.pt scored at the end = that epoch's test_history row = `deepvision evaluate` on the test split
    assert final["test_acc"] == rows[result.best_epoch - 1]["test_acc"]
    report = evaluate(run.path, data="test", quiet=True)
    assert report["samples"] == 120 and report["rank1"] == pytest.approx(final["test_acc"], abs=1e-12)
    assert report["cross_entropy"] == pytest.approx(final["test_loss"], rel=1e-5)
    log = run.log_path.read_text()
    assert "Epoch[1] Test-accuracy=" in log and f"written to {run.test_metrics_path}" in log

    # a resumed run scores again at its new end; resuming from epoch 1 drops the later rows first
    resume(run.path, overrides=["train.epochs=3"])
    assert [r["epoch"] for r in run.read_history(run.test_history_path)] == [1, 2, 3]
    assert run.read_test_metrics()["epochs"] == 3
    resume(run.path, epoch=1, overrides=["train.epochs=2"])
    again = run.read_history(run.test_history_path)
    assert [r["epoch"] for r in again] == [1, 2] and again[0] == rows[0]
    assert run.read_test_metrics()["epochs"] == 2


def test_test_keys_off_on_and_validation(tmp_path):
    off = train(_classification(1, test="off"), out=tmp_path, name="off")
    assert not RunDir(off.run_dir).test_metrics_path.exists()
    only_end = train(_classification(1), out=tmp_path, name="end")  # auto: scored once, after training
    run = RunDir(only_end.run_dir)
    assert run.read_test_metrics()["samples"] == 120 and not run.test_history_path.exists()
    missing = tiny_config(1, max_samples=100, test="nope")  # auto: an unreadable test split is skipped, with a line
    run = RunDir(train(missing, out=tmp_path, name="missing").run_dir)
    assert "the test split is not scored (train.test auto): data.test: split 'nope'" in run.log_path.read_text()
    assert not run.test_metrics_path.exists()
    missing["train"]["test"] = "on"
    with pytest.raises(UserError, match="data.test: split 'nope' not found"):
        train(missing, out=tmp_path, name="missing-on")
    no_test = tiny_config(1, max_samples=100)  # digits without a test split
    no_test["train"]["test"] = "on"
    with pytest.raises(UserError, match="train.test is on but the data has no test split"):
        train(no_test, out=tmp_path, name="none")
    with pytest.raises(UserError, match=r"train.test_every must be a finite number in \[0, 100,000\]"):
        build_config(_classification(1, test_every=-1))
    with pytest.raises(UserError, match="train.test_every=2 needs train.test auto or on"):
        build_config(_classification(1, test="off", test_every=2))
    with pytest.raises(UserError, match="train.test"):
        build_config(_classification(1, test="always"))


def test_detection_test_map_after_training_matches_evaluate(trained_detection_run, tmp_path):
    from deepvision.evaluation.detection import evaluate_detection_run

    run = RunDir(trained_detection_run)
    assert "test (best.pt, epoch 1, 3 samples): map50 " in run.log_path.read_text()
    final = run.read_test_metrics()
    assert final["monitor"] == "val_map50" and final["samples"] == 3 and final["checkpoint"] == "best"
    assert 0.0 <= final["test_map50"] <= 1.0 and set(final) >= {"test_map50", "test_map"}
    rows = run.read_history(run.test_history_path)
    assert len(rows) == 1 and rows[0]["test_map50"] == final["test_map50"]
    report = evaluate_detection_run(run.path, "test", out=tmp_path / "eval").metrics()
    assert report["images"] == 3 and report["voc_map50"] == pytest.approx(final["test_map50"], abs=1e-12)
    if report["coco"]:
        assert report["coco"]["map"] == pytest.approx(final["test_map"], abs=1e-12)
    else:
        assert final["test_map"] is None
    assert json.loads(run.test_metrics_path.read_text()) == final
    assert math.isfinite(run.read_history()[0]["val_map50"])


def test_a_named_test_split_with_test_fraction_is_refused_before_a_run_folder(tmp_path, run_cli):
    """Training reads no test split it does not score: the carved part would replace data.test unnoticed,
    and evaluating the run refuses the pair; so training refuses it first, as evaluate does."""
    import yaml

    from tests.helpers import make_image_folder

    for split in ("train", "valid", "holdout"):
        make_image_folder(tmp_path / "data" / split, n_per_class=4, size=16)
    cfg = tiny_config(1, source="folder", root=str(tmp_path / "data"), train="train", val="valid", test="holdout",
                      val_fraction=0.0, test_fraction=0.2, workers=0)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    message = ("data.test and data.test_fraction are both set; use one of them (data.test=holdout, "
               "data.test_fraction=0.2; --set data.test_fraction=0 reads the split 'holdout')")
    for test in ("auto", "off"):
        code, _, err = run_cli("train", tmp_path / "c.yaml", "--out", tmp_path / "runs", "--set", f"train.test={test}")
        assert code == 2 and err.strip().splitlines() == [f"deepvision train: error: {message}"]
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    with pytest.raises(UserError, match=r"^data\.test and data\.test_fraction are both set"):
        train(cfg, out=tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_test_fraction_over_the_datas_own_test_split_of_the_default_name_is_refused(tmp_path, run_cli):
    """With data.test left at its default ('test') and a test/ folder in the data, --set data.test_fraction=0.2
    scored a part carved out of train/ and never read test/ (exit 0); data.test=null still carves one."""
    import yaml

    from tests.helpers import make_image_folder

    for split in ("train", "test"):
        make_image_folder(tmp_path / "data" / split, n_per_class=6, size=16)
    cfg = tiny_config(1, source="folder", root=str(tmp_path / "data"), train="train", test="test",
                      val_fraction=0.0, test_fraction=0.2, workers=0)
    cfg["data"].pop("test")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    message = ("data.test_fraction is set but the data has its own test split 'test'; use one of them (--set "
               "data.test_fraction=0 reads it, --set data.test=null carves one instead)")
    code, _, err = run_cli("train", tmp_path / "c.yaml", "--out", tmp_path / "runs")
    assert code == 2 and err.strip().splitlines() == [f"deepvision train: error: {message}"], err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    code, _, err = run_cli("train", tmp_path / "c.yaml", "--out", tmp_path / "runs", "--set", "data.test=null")
    assert code == 0, err
    assert "(train 10, test 2)" in (tmp_path / "runs" / cfg["name"] / "train.log").read_text()  # 20% of 12 carved
    code, _, err = run_cli("train", tmp_path / "c.yaml", "--out", tmp_path / "runs", "--set", "data.test_fraction=0")
    assert code == 0, err


def test_a_split_seed_with_nothing_carved_is_refused(tmp_path):
    """data.split_seed was taken and recorded with no fraction set: nothing is drawn, the run equals one without."""
    cfg = tiny_config(1, val_fraction=0.0, test="test", split_seed=7)
    with pytest.raises(UserError, match=r"^data\.split_seed is read only when a split is carved out of train "):
        train(cfg, out=tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_data_root_that_is_not_there_is_refused_when_the_files_are_found_in_the_working_directory(
        tmp_path, monkeypatch):
    """The fallback for a file missing under data.root read the working directory's copy and recorded a root
    that does not exist; a root that is there still wins, and an absolute file needs none."""
    from tests.helpers import make_image_folder

    make_image_folder(tmp_path / "img", n_per_class=3, size=16)
    names = sorted(p.name for p in (tmp_path / "img").iterdir())
    lines = [f"{i}\t{names.index(p.parent.name)}\timg/{p.parent.name}/{p.name}"
             for i, p in enumerate(sorted((tmp_path / "img").glob("*/*.png")))]
    (tmp_path / "t.lst").write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(tmp_path)
    cfg = tiny_config(1, source="lst", root=str(tmp_path / "nowhere"), train="t.lst", val=None, test=None,
                      val_fraction=0.0, workers=0, options={"image_root": str(tmp_path)})
    with pytest.raises(UserError, match=r"^data\.root .*nowhere is not a folder, but t\.lst is in the working "):
        train(cfg, out=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()
    cfg["data"]["train"] = str(tmp_path / "t.lst")
    assert len(train(cfg, out=tmp_path / "runs").history) == 1
