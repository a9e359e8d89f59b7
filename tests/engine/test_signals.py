"""Ctrl+C / SIGTERM during training: clean exit, completed epochs kept, resume continues exactly."""

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from deepvision.api import resume, train
from deepvision.runs.checkpoint import load_checkpoint
from deepvision.runs.rundir import RunDir
from tests.helpers import tiny_config


def config(tmp_path):
    cfg = tiny_config(5, batch_size=16, max_samples=600)
    cfg["train"]["log_every"] = 1
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return cfg, path


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_cleanly_and_resume_matches(tmp_path, sig):
    cfg, path = config(tmp_path)
    out = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "deepvision", "train", str(path), "--out", str(out), "--name", "x"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    log = out / "x" / "train.log"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # wait until epoch 2 (0-based 1) is under way
        if log.is_file() and "Epoch[1] Batch [3]" in log.read_text():
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, stderr
    assert "Traceback" not in stderr
    assert f"deepvision resume {out / 'x'}" in stderr
    run = RunDir(out / "x")
    done = load_checkpoint(run.checkpoints / "last.pt")["epoch"]
    assert 1 <= done < 5
    assert len(run.read_history()) == done
    assert run.read_state()["status"] == "interrupted"
    assert "interrupted at batch" in run.log_path.read_text()
    resumed = resume(run.path)
    reference = train(cfg, out=tmp_path / "ref", name="ref")
    keys = ["lr", "train_loss", "train_acc", "val_loss", "val_acc"]
    assert [[r[k] for k in keys] for r in resumed.history] == [[r[k] for k in keys] for r in reference.history]
