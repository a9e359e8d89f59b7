"""DDP on the CPU (gloo) through torchrun: two processes with batch B match one process with batch 2B."""

import math
import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from deepvision.api import train
from deepvision.runs.checkpoint import load_checkpoint
from deepvision.runs.rundir import RunDir
from tests.helpers import tiny_config


@pytest.mark.skipif(shutil.which("torchrun") is None and not os.path.exists(
    os.path.join(os.path.dirname(sys.executable), "torchrun")), reason="torchrun not installed")
def test_two_process_ddp_matches_single_process(tmp_path):
    cfg = tiny_config(2, batch_size=32, max_samples=640)  # 640 train samples: no padding across ranks
    cfg["data"]["val_fraction"] = 0.0
    cfg["data"]["val"] = None
    cfg["data"]["train"] = "all"
    cfg["data"]["test_fraction"] = 0.25
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([torchrun, "--nproc_per_node", "2", "-m", "deepvision", "train", str(path),
                           "--out", str(tmp_path / "runs"), "--name", "ddp"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("done: ") == 1  # rank 0 alone reports
    run = RunDir(tmp_path / "runs" / "ddp")
    history = run.read_history()
    assert len(history) == 2 and history[-1]["train_acc"] > 0.5
    assert sum(1 for line in run.log_path.read_text().splitlines() if "Time cost" in line) == 2  # rank 0 logs once
    single_cfg = {**cfg, "data": {**cfg["data"], "batch_size": 64}}
    single = train(single_cfg, out=tmp_path / "runs", name="single")
    a = load_checkpoint(run.checkpoints / "last.pt")["model_state"]
    b = load_checkpoint(single.run_dir / "checkpoints" / "last.pt")["model_state"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    assert history[-1]["train_loss"] == pytest.approx(single.history[-1]["train_loss"], rel=1e-4)


@pytest.mark.skipif(shutil.which("torchrun") is None and not os.path.exists(
    os.path.join(os.path.dirname(sys.executable), "torchrun")), reason="torchrun not installed")
def test_ranks_skip_a_batch_together_when_one_rank_has_only_unreadable_images(tmp_path):
    from tests.helpers import make_image_folder

    make_image_folder(tmp_path / "train", n_per_class=4, size=16)
    for i in (0, 2):  # rank 0 reads samples 0 and 2 as its first batch (sharding is rank::world)
        (tmp_path / "train" / "horizontal" / f"horizontal_{i:03d}.png").write_bytes(b"")
    cfg = {"model": {"name": "lenet", "args": {"activation": "relu"}},
           "data": {"source": "folder", "root": str(tmp_path), "train": "train", "val": None, "test": None,
                    "image_size": 16, "channels": 3, "batch_size": 2, "workers": 0, "shuffle": False,
                    "skip_corrupt": True, "max_skipped_fraction": 0.5},
           "train": {"epochs": 1, "tensorboard": False}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    proc = subprocess.run([torchrun, "--nproc_per_node", "2", "-m", "deepvision", "train", str(path),
                           "--out", str(tmp_path / "runs"), "--name", "skip"],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    history = RunDir(tmp_path / "runs" / "skip").read_history()
    assert len(history) == 1 and math.isfinite(history[0]["train_loss"])  # no NaN from an empty batch's loss
    state = load_checkpoint(tmp_path / "runs" / "skip" / "checkpoints" / "last.pt")["model_state"]
    assert all(bool(torch.isfinite(v).all()) for v in state.values())
