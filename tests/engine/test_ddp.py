"""DDP on the CPU (gloo) through torchrun: two processes with batch B match one process with batch 2B."""

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from deepvision.api import train
from deepvision.runs.checkpoint import load_checkpoint
from deepvision.runs.rundir import RunDir
from tests.helpers import tiny_config

TORCHRUN = os.path.join(os.path.dirname(sys.executable), "torchrun")
needs_torchrun = pytest.mark.skipif(shutil.which("torchrun") is None and not os.path.exists(TORCHRUN),
                                    reason="torchrun not installed")


def torchrun_train(cfg: dict, tmp_path, name: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node 2 -m deepvision train CFG` on the CPU (gloo) into tmp_path/runs/NAME."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    torchrun = TORCHRUN if os.path.exists(TORCHRUN) else "torchrun"
    proc = subprocess.run([torchrun, "--nproc_per_node", "2", "-m", "deepvision", "train", str(path),
                           "--out", str(tmp_path / "runs"), "--name", name],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-8000:]  # the workers' last lines come before torchrun's report
    return proc


@needs_torchrun
def test_two_process_ddp_matches_single_process(tmp_path):
    cfg = tiny_config(2, batch_size=32, max_samples=640)  # 640 train samples: no padding across ranks
    cfg["data"]["val_fraction"] = 0.0
    cfg["data"]["val"] = None
    cfg["data"]["train"] = "all"
    cfg["data"]["test_fraction"] = 0.25
    cfg["train"]["amp"] = "off"  # float32: bf16 rounds a batch of 64 and two of 32 differently
    proc = torchrun_train(cfg, tmp_path, "ddp")
    assert proc.stdout.count("done: ") == 1  # rank 0 alone reports
    run = RunDir(tmp_path / "runs" / "ddp")
    history = run.read_history()
    assert len(history) == 2 and history[-1]["train_acc"] > 0.5
    assert sum(1 for line in run.log_path.read_text().splitlines() if "Time cost" in line) == 2  # rank 0 logs once
    single_cfg = {**cfg, "data": {**cfg["data"], "batch_size": 64}}
    single = train(single_cfg, out=tmp_path / "runs", name="single")
    a = load_checkpoint(run.checkpoints / "last.pt")["model_state"]
    b = load_checkpoint(single.run_dir / "checkpoints" / "last.pt")["model_state"]
    for k in a:  # all-reduced vs single-batch gradients sum in another order: a few weights differ by ~1.5e-5
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=5e-5)
    assert history[-1]["train_loss"] == pytest.approx(single.history[-1]["train_loss"], rel=1e-4)


@needs_torchrun
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
    torchrun_train(cfg, tmp_path, "skip", timeout=240)
    history = RunDir(tmp_path / "runs" / "skip").read_history()
    assert len(history) == 1 and math.isfinite(history[0]["train_loss"])  # no NaN from an empty batch's loss
    state = load_checkpoint(tmp_path / "runs" / "skip" / "checkpoints" / "last.pt")["model_state"]
    assert all(bool(torch.isfinite(v).all()) for v in state.values())


@needs_torchrun
def test_detection_trains_under_ddp_and_scores_the_test_split_once(tmp_path):
    """SSDlite on the fake detection set, 2 processes: mAP columns in history.csv, a checkpoint that loads, the
    val and test splits scored over both ranks' shares (every image once), rank 0 alone writing."""
    from deepvision.runs.loading import load_run
    from tests.detection_helpers import built_fake, detection_config

    data = built_fake(tmp_path, images=12, size=96, seed=3)
    proc = torchrun_train(detection_config(data, test_every=1), tmp_path, "det")
    assert proc.stdout.count("test (best.pt, epoch 1, 3 samples)") == 1
    run = RunDir(tmp_path / "runs" / "det")
    (row,) = run.read_history()
    assert {"train_loss_classifier", "train_loss_box_reg", "val_map50", "val_map"} <= set(row)
    assert 0.0 <= row["val_map50"] <= 1.0 and math.isfinite(row["train_loss"])
    assert run.read_test_metrics()["samples"] == 3 and len(run.read_history(run.test_history_path)) == 1
    loaded = load_run(run.path)
    assert loaded.epoch == 1 and loaded.classes[:3] == ["disc", "square", "triangle"]
    assert loaded.cfg.model.num_classes == 4 and not loaded.model.training


def _wait_for(path, proc, seconds: float) -> None:
    """Poll until `path` exists (the run's first checkpoint); fail if the launcher exits first."""
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"{path} did not appear within {seconds} s"
        time.sleep(0.1)


@pytest.mark.slow
def test_sigterm_under_the_launcher_stops_with_one_line_and_resumes(tmp_path, run_cli):
    """`deepvision train --nproc-per-node 2` (torchrun's launcher in-process): SIGTERM after the first
    epoch gives rank 0's stop line once, no traceback, exit 143, an intact last.pt, and a run that
    resumes. The first epoch has 5 batches: under DDP a stop used to be noticed only at batch 10."""
    cfg = tiny_config(30, batch_size=64, max_samples=640)  # 5 batches per rank and epoch
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "deepvision", "train", str(path), "--out", str(tmp_path / "runs"),
                             "--name", "stop", "--nproc-per-node", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    run = RunDir(tmp_path / "runs" / "stop")
    try:
        _wait_for(run.checkpoints / "last.pt", proc, 120)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-3000:]
    assert "Traceback" not in out + err and "SignalException" not in err and "death signal" not in err
    assert err.count("training stopped after") == 1, err  # rank 0 alone speaks
    assert f"deepvision resume {run.path} --nproc-per-node 2" in err  # the printed command names the launcher
    assert out.count("interrupted at batch") == 1
    stopped_at = len(run.read_history())
    assert 1 <= stopped_at < 30 and run.read_state()["status"] == "interrupted"
    assert load_checkpoint(run.checkpoints / "last.pt")["epoch"] == stopped_at  # intact, verified on load
    code, _, err = run_cli("resume", run.path, "--set", f"train.epochs={stopped_at + 1}")
    assert code == 0, err
    history = run.read_history()
    assert [row["epoch"] for row in history] == list(range(1, stopped_at + 2))
    assert math.isfinite(history[-1]["train_loss"])


@pytest.mark.slow
def test_sigterm_to_the_process_group_under_the_launcher_stops_every_rank_cleanly(tmp_path):
    """timeout or systemd signal the launcher, both ranks and their loader workers at once: the workers'
    deaths and a rank left waiting in a collective end as the same stop (one line, exit 143, interrupted)."""
    from tests.helpers import make_image_folder

    make_image_folder(tmp_path / "train", n_per_class=40, size=16)
    cfg = {"model": {"name": "lenet"}, "train": {"epochs": 1000, "tensorboard": False},
           "data": {"source": "folder", "root": str(tmp_path), "train": "train", "val": None, "test": None,
                    "val_fraction": 0.25, "image_size": 16, "batch_size": 8, "workers": 1}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "deepvision", "train", str(path), "--out", str(tmp_path / "runs"),
                             "--name", "g", "--nproc-per-node", "2"], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    run = RunDir(tmp_path / "runs" / "g")
    try:
        _wait_for(run.checkpoints / "last.pt", proc, 120)
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, err[-3000:]
    assert "Traceback" not in out + err and "error" not in err and err.count("training stopped after") == 1, err
    assert run.read_state()["status"] == "interrupted"


def test_nproc_option_under_torchrun_must_agree_and_the_hint_names_the_launcher(monkeypatch):
    from deepvision.cli.launch import NPROC_ENV, resume_hint, should_launch
    from deepvision.errors import UserError

    for key in ("LOCAL_RANK", "LOCAL_WORLD_SIZE", "WORLD_SIZE", NPROC_ENV):
        monkeypatch.delenv(key, raising=False)
    assert should_launch(2) and not should_launch(1) and not should_launch(None)
    assert resume_hint("runs/a") == "deepvision resume runs/a"
    assert resume_hint("tr2 x/a b") == "deepvision resume 'tr2 x/a b'"  # pasted, one argument
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not should_launch(2)  # a worker: it trains, it does not launch again
    with pytest.raises(UserError, match="leave the option out"):
        should_launch(4)
    assert resume_hint("runs/a") == "torchrun --nproc_per_node 2 -m deepvision resume runs/a"
    monkeypatch.setenv(NPROC_ENV, "2")
    assert resume_hint("runs/a") == "deepvision resume runs/a --nproc-per-node 2"
