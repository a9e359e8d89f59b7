"""Fine-tuning: a pretrained body with a new Xavier-initialised head, the frozen-body warm-up, per-part
learning-rate multipliers, and resuming a fine-tuned run from its own checkpoint."""

from __future__ import annotations

import torch

from deepvision.api import resume, train
from deepvision.config import build_config
from deepvision.engine.distributed import DistInfo
from deepvision.engine.resolve import resolve_run
from deepvision.engine.trainer import Trainer
from deepvision.runs.checkpoint import load_checkpoint
from deepvision.runs.rundir import RunDir
from tests.helpers import make_image_folder, tiny_config


def _pretrained(tmp_path) -> str:
    result = train(tiny_config(1, max_samples=300), out=tmp_path, name="source")
    return str(result.run_dir / "checkpoints" / "last.pt")


def _finetune_cfg(tmp_path, weights: str, **train_keys) -> dict:
    folder = make_image_folder(tmp_path / "stripes", n_per_class=24, size=28)
    return {
        "name": "ft",
        "model": {"name": "lenet", "pretrained": weights},
        "data": {"source": "folder", "root": str(folder), "train": ".", "test": None, "val_fraction": 0.25,
                 "channels": 1, "image_size": 28, "batch_size": 16},
        "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "lr_mult": {"body": 0.1, "head": 1.0}},
        "train": {"epochs": 2, "seed": 0, "tensorboard": False, "log_every": 100, **train_keys},
    }


def test_new_head_is_xavier_initialised_and_the_body_is_loaded(tmp_path):
    weights = _pretrained(tmp_path)
    source = load_checkpoint(weights)["model_state"]
    resolved = resolve_run(build_config(_finetune_cfg(tmp_path, weights)))
    trainer = Trainer(resolved, RunDir.create(tmp_path, "x"), dist=DistInfo(), device=torch.device("cpu"))
    state = trainer.model.state_dict()
    head = [k for k in state if state[k].shape != source[k].shape]
    assert head == ["classifier.3.weight", "classifier.3.bias"] and state[head[0]].shape[0] == 2
    assert torch.equal(state[head[1]], torch.zeros(2))
    bound = (6 / sum(state[head[0]].shape)) ** 0.5  # Xavier uniform
    assert state[head[0]].abs().max() <= bound and state[head[0]].std() > bound / 4
    assert all(torch.equal(state[k], source[k]) for k in state if k not in head)
    trainer._set_lr(0.05)
    lrs = {g["part"]: g["lr"] for g in trainer.optimizer.param_groups}
    assert lrs == {"body": 0.05 * 0.1, "head": 0.05}


def test_frozen_body_warm_up_then_everything_trains_and_resume_needs_no_surgery(tmp_path):
    weights = _pretrained(tmp_path)
    source = load_checkpoint(weights)["model_state"]
    cfg = _finetune_cfg(tmp_path, weights, freeze={"body_epochs": 1})
    cfg["train"]["epochs"] = 1
    first = train(cfg, out=tmp_path, name="ft")
    after1 = load_checkpoint(first.run_dir / "checkpoints" / "last.pt")["model_state"]
    assert torch.equal(after1["features.0.weight"], source["features.0.weight"])  # body frozen in epoch 1
    assert not torch.equal(after1["classifier.3.bias"], torch.zeros(2))  # the head learns
    (tmp_path / "source").rename(tmp_path / "moved")  # the initial weights are gone: resume must not need them
    second = resume(first.run_dir, overrides=["train.epochs=2"])
    after2 = load_checkpoint(second.run_dir / "checkpoints" / "last.pt")["model_state"]
    assert not torch.equal(after2["features.0.weight"], source["features.0.weight"])  # the body trains from epoch 2
    assert len(second.history) == 2
