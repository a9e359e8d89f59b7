"""Edge cases of training and resuming: resume with loader workers, rejected and interrupted resumes,
the config an earlier epoch used, YAML strings like off/yes, failed starts, unreadable images in
workers, evaluating a grayscale run on new folder data, and random crops of in-memory data."""

import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from deepvision.api import evaluate, resume, train
from deepvision.config import build_config
from deepvision.errors import UserError
from deepvision.runs.checkpoint import load_checkpoint
from deepvision.runs.rundir import RunDir
from tests.helpers import make_image_folder, tiny_config

KEYS = ["lr", "train_loss", "train_acc", "val_loss", "val_acc"]


def rows(history):
    return [[r[k] for k in KEYS] for r in history]


def test_resume_is_bit_identical_with_worker_processes(tmp_path):
    data = make_image_folder(tmp_path / "img", n_per_class=24, size=28)
    cfg = tiny_config(3, source="folder", root=str(data), train=".", val_fraction=0.25, batch_size=8, workers=2,
                      image_size=28)
    cfg["model"] = {"name": "keras_mnist_cnn"}  # dropout draws from the global RNG
    cfg["checkpoint"] = {"keep": None}  # epoch 1 stays to resume from
    full = train(cfg, out=tmp_path / "runs", name="full")
    copy = tmp_path / "copy"
    shutil.copytree(full.run_dir, copy)
    assert rows(resume(copy, epoch=1).history) == rows(full.history)
    assert not multiprocessing.active_children()  # loader workers are shut down when training ends


def test_rejected_resume_changes_nothing(tmp_path):
    run = train(tiny_config(2, max_samples=200), out=tmp_path, name="r").run_dir
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    with pytest.raises(UserError, match="already has 2 epochs"):
        resume(run, overrides=["optim.lr=0.5"])
    with pytest.raises(UserError, match="unknown optimizer"):
        resume(run, epoch=1, overrides=["optim.name=adamm"])
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ckpts


def test_resume_from_an_epoch_uses_that_epochs_config(tmp_path):
    cfg = tiny_config(3, max_samples=200) | {"checkpoint": {"keep": None}}  # epoch 2 stays to resume from
    run = train(cfg, out=tmp_path, name="r").run_dir
    resume(run, epoch=3, overrides=["optim.lr=0.001", "train.epochs=4"])
    result = resume(run, epoch=2)
    assert [r["lr"] for r in result.history] == [0.05, 0.05, 0.05]  # not the later manual 0.001
    assert RunDir(run).read_config().optim.lr == 0.05


def test_interrupted_resume_from_an_earlier_epoch_leaves_a_consistent_run(tmp_path):
    cfg = tiny_config(6, batch_size=16, max_samples=600)
    cfg["train"]["log_every"] = 1
    cfg["checkpoint"] = {"keep": None}  # epoch 2 stays to resume from
    run = train(cfg, out=tmp_path, name="r").run_dir
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "deepvision", "resume", str(run), "--epoch", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    log = run / "train.log"
    size = log.stat().st_size
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if "Epoch[2] Batch [3]" in log.read_text()[size:]:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    r = RunDir(run)
    last = load_checkpoint(r.checkpoints / "last.pt")["epoch"]
    assert last in (2, 3)  # never the abandoned epoch 6
    assert len(r.read_history()) == last
    assert load_checkpoint(r.checkpoints / "best.pt")["epoch"] <= last
    assert max(r.saved_epochs()) == last


def test_amp_off_and_yes_strings_survive_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  amp: off\nname: yes\n")
    from deepvision.config import load_config

    cfg = load_config(path)
    assert cfg.train.amp == "off" and cfg.name == "yes"
    assert build_config({}, ["train.amp=off"]).train.amp == "off"


def test_failed_start_leaves_no_run_directory(tmp_path):
    with pytest.raises(UserError, match="unknown model"):
        train(tiny_config(1, max_samples=100) | {"model": {"name": "lenett"}}, out=tmp_path, name="bad")
    assert not (tmp_path / "bad").exists()
    with pytest.raises(UserError, match="plain folder name"):
        train(tiny_config(1, max_samples=100), out=tmp_path, name="../escape")


def test_a_batch_too_big_for_memory_is_refused_before_reading(tmp_path, monkeypatch):
    """A file-backed source is planned before its first batch: image_size 8192 x batch_size 64 on a
    ResNet-18 would need terabytes; the refusal names both settings and leaves no run folder."""
    monkeypatch.setenv("DEEPVISION_MAX_READ_GB", "24")
    root = make_image_folder(tmp_path / "imgs", n_per_class=4, size=16)
    cfg = {"name": "big", "model": {"name": "tv:resnet18"},
           "data": {"source": "folder", "root": str(root), "train": "all", "val_fraction": 0.25,
                    "batch_size": 64, "image_size": 8192, "channels": 3},
           "train": {"epochs": 1, "tensorboard": False}}
    with pytest.raises(UserError, match=r"^a training batch of 64 images at 3x8192x8192 needs 1.8 TB .*"
                                        r"lower data.batch_size or the input size \(data.image_size\)$"):
        train(cfg, out=tmp_path / "runs", name="big")
    assert not (tmp_path / "runs" / "big").exists()


def test_unreadable_image_in_worker_is_one_line(tmp_path, run_cli):
    data = make_image_folder(tmp_path / "img", n_per_class=8, size=28)
    (data / "horizontal" / "broken.png").write_bytes(b"not a png at all")
    cfg = tiny_config(1, source="folder", root=str(data), train=".", val_fraction=0.25, batch_size=4, workers=2,
                      image_size=28)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code, _, err = run_cli("train", path, "--out", tmp_path / "runs")
    assert code == 2 and "broken.png" in err and err.count("\n") == 1, err
    (data / "vertical" / "._vertical_000.png").write_bytes(b"macOS resource fork")
    (data / "horizontal" / "broken.png").unlink()
    code, _, err = run_cli("train", path, "--out", tmp_path / "runs")  # dotfiles are not images
    assert code == 0, err


def test_evaluate_new_folder_data_for_a_grayscale_run(tmp_path):
    run = train(tiny_config(1, max_samples=200), out=tmp_path, name="gray").run_dir  # 1-channel digits
    data = make_image_folder(tmp_path / "img", n_per_class=3, size=28, classes=("0", "1"))
    metrics = evaluate(run, data=str(data), quiet=True)
    assert metrics["samples"] == 6


def test_rand_crop_on_in_memory_data_crops(tmp_path):
    cfg = tiny_config(1, max_samples=64, image_size=24)
    cfg["data"]["augment"] = {"rand_crop": True}
    from deepvision.data.loaders import build_loaders, resolve_preprocess
    from deepvision.data.sources import load_data

    c = build_config(cfg)
    bundle = load_data(c.data)
    pre = resolve_preprocess(c.data, bundle, (1, 28, 28))
    assert pre.crop and pre.size == (24, 24)
    loaders = build_loaders(c.data, bundle, pre, seed=0, roles=("train", "val"))
    x0 = next(iter(loaders["train"]))[0]
    loaders["train"].set_epoch(1)
    assert x0.shape[-2:] == (24, 24)
    val = next(iter(loaders["val"]))[0]
    full = bundle.val.images[: len(val)]
    assert (val == full[..., 2:26, 2:26]).all()  # evaluation: the centre crop, not a resize
