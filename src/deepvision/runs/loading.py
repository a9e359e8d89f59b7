"""Rebuild a trained model from its run directory (config + preprocessing + checkpoint)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepvision.config.schema import Config
from deepvision.data.preprocess import Preprocess
from deepvision.errors import UserError
from deepvision.models.build import build_model
from deepvision.models.weights import load_weights
from deepvision.runs.checkpoint import load_checkpoint
from deepvision.runs.rundir import RunDir


@dataclass
class LoadedRun:
    run: RunDir
    cfg: Config
    pre: Preprocess
    classes: list[str]
    model: nn.Module
    checkpoint: Path
    epoch: int


def check_identity(run: RunDir, ckpt: dict[str, Any], path: Path, model_name: str) -> None:
    """Refuse a checkpoint that belongs to another run (a copied-in file): another run id or model."""
    theirs, ours = ckpt.get("run_id"), run.run_id
    if theirs and ours and theirs != ours:
        raise UserError(f"{path} belongs to another run (run id {theirs[:8]}, this run is {ours[:8]}); "
                        f"copy it into its own run directory or evaluate it there")
    found = ckpt.get("model", {}).get("name")
    if found != model_name:
        raise UserError(f"{path} holds model '{found}' but {run.path} trains '{model_name}'; it belongs to "
                        f"another run")


def load_run(run_dir: str | Path, epoch: int | None = None, which: str = "best",
             device: str | torch.device = "cpu") -> LoadedRun:
    """The run's model in eval mode with the weights of `epoch` (or best.pt / last.pt)."""
    run = RunDir.open(run_dir)
    path = run.resolve_checkpoint(epoch, which)
    ckpt = load_checkpoint(path)
    cfg = run.read_config()
    pre = run.read_preprocess()
    check_identity(run, ckpt, path, cfg.model.name)
    cfg.model.pretrained = None  # the checkpoint supersedes any initial weights
    _relocate_model_files(cfg, run)
    model = build_model(cfg, pre)
    load_weights(model, ckpt["model_state"], strict=True, source=f"weights in {path}")
    model.to(device).eval()
    classes = run.read_labels() if run.labels_path.is_file() else list(ckpt.get("classes", []))
    outputs = cfg.model.num_classes or len(classes)
    classes += [str(i) for i in range(len(classes), outputs)]  # a head wider than the data's classes
    return LoadedRun(run, cfg, pre, classes, model, path, int(ckpt.get("epoch", 0)))


def _relocate_model_files(cfg: Config, run: RunDir) -> None:
    """A file named in model.args (an imported MXNet symbol) that is gone from its recorded place but sits in
    the run directory (the run was moved or copied) is read from the run directory."""
    for key, value in cfg.model.args.items():
        if isinstance(value, str) and value.endswith(".json") and not Path(value).is_file():
            moved = run.path / Path(value).name
            if moved.is_file():
                cfg.model.args[key] = str(moved)
