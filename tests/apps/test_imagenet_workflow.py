"""The ImageNet workflow end to end on a fake ILSVRC tree: devkit -> lists -> records -> every shipped
recipe (tiny overrides) -> 10-crop evaluation -> journal, and a recipe under torchrun (DDP, CPU)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepvision.apps.imagenet import make_fake_imagenet
from deepvision.recipes import recipe_names
from deepvision.runs.rundir import RunDir

RECIPES = [n for n in recipe_names() if n.startswith("imagenet_")]
TINY = ["train.epochs=1", "train.max_steps=2", "train.global_batch=null", "data.batch_size=2",
        "data.eval_batch_size=4", "data.max_samples=8", "data.workers=0", "train.log_every=1"]


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    """A fake ILSVRC root, its lists and mean, and the three record files (shorter side 256)."""
    from deepvision.cli.main import main

    tmp = tmp_path_factory.mktemp("imagenet")
    root = make_fake_imagenet(tmp / "ILSVRC", classes=4, per_class=16, val_per_class=4, min_side=48, max_side=96)
    out = tmp / "prepared"
    assert main(["imagenet", "lists", "--root", str(root.root), "--out", str(out), "--test-size", "8"]) == 0
    for split in ("train", "val", "test"):
        assert main(["im2rec", str(out / split), str(root.images), "--resize", "256", "--quality", "90"]) == 0
    return tmp, out


def test_preparation_outputs(imagenet):
    _, out = imagenet
    names = {p.name for p in out.iterdir()}
    assert {"train.lst", "val.lst", "test.lst", "labels.txt", "mean.json", "train.rec", "train.idx", "val.rec",
            "test.rec"} <= names
    mean = json.loads((out / "mean.json").read_text())
    assert set(mean) == {"R", "G", "B"} and all(0 < v < 255 for v in mean.values())


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_runs_on_fake_imagenet(imagenet, recipe, run_cli):
    tmp, out = imagenet
    code, stdout, err = run_cli("train", recipe, "--data-root", out, "--out", tmp / "runs",
                                *[arg for s in TINY for arg in ("--set", s)])
    assert code == 0, err
    run = RunDir(tmp / "runs" / recipe)
    history = run.read_history()
    assert len(history) == 1 and history[0]["val_acc"] is not None
    cfg = run.read_config()
    assert cfg.profile == "reference" and cfg.data.resize == 256
    assert run.read_labels()[0].startswith("n")  # "wnid name" class names from labels.txt


def test_ten_crop_beats_or_matches_single_crop(imagenet, run_cli):
    tmp, out = imagenet
    overrides = ["model.name=minivgg", "model.args={}", "data.image_size=32", "data.resize=40", "data.batch_size=16",
                 "data.max_samples=null", "optim.name=adam", "optim.lr=0.002", "optim.weight_decay=0",
                 "schedule.name=constant", "train.epochs=6", "train.global_batch=null", "profile=modern",
                 "data.scale=0.00392156862745098", "data.mean=null", "data.augment.rotate=0",
                 "data.augment.max_shear_ratio=0", "data.workers=0"]
    code, _, err = run_cli("train", "imagenet_alexnet_a3", "--data-root", out, "--out", tmp / "runs", "--name",
                           "small", *[arg for s in overrides for arg in ("--set", s)])
    assert code == 0, err
    run = tmp / "runs" / "small"
    code, one_out, err = run_cli("evaluate", run, "--data", "test")
    assert code == 0, err
    code, ten_out, err = run_cli("evaluate", run, "--data", "test", "--crops", "10")
    assert code == 0, err
    one = json.loads((run / "eval" / "test-best" / "metrics.json").read_text())
    ten = json.loads((run / "eval" / "test-best-10crop" / "metrics.json").read_text())
    assert one["samples"] == ten["samples"] == 8
    assert one["rank1"] >= 0.5  # the model learned the fake classes
    assert ten["rank1"] >= one["rank1"]


def test_journal_and_compare(imagenet, run_cli):
    tmp, _ = imagenet
    code, out, err = run_cli("runs", tmp / "runs", "--markdown")
    assert code == 0, err
    assert out.startswith("| Experiment | Model | Epochs | LR schedule | Val rank-1 | Val rank-5 | Test rank-1 |")
    assert "| imagenet_alexnet_a3 | alexnet_ref | 1 | 1: 0.01 |" in out
    code, _, err = run_cli("runs", "compare", tmp / "runs" / "imagenet_alexnet_a3",
                           tmp / "runs" / "imagenet_resnet50_r3", "--out", tmp / "compare.png")
    assert code == 0 and (tmp / "compare.png").stat().st_size > 10_000, err


def test_recipe_under_torchrun(imagenet):
    tmp, out = imagenet
    torchrun = Path(sys.executable).parent / "torchrun"
    args = [str(torchrun), "--nproc_per_node", "2", "-m", "deepvision", "train", "imagenet_squeezenet_s4",
            "--data-root", str(out), "--out", str(tmp / "ddp"), "--name", "s4"]
    for s in TINY:
        args += ["--set", s]
    proc = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-8000:]  # the workers' last lines come before torchrun's report
    run = RunDir(tmp / "ddp" / "s4")
    assert len(run.read_history()) == 1
    assert "x 2 processes" in run.log_path.read_text()
