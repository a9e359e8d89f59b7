"""Detection test helpers: a built fake dataset and a detection run directory with a small SSDlite."""

from __future__ import annotations

from pathlib import Path

import torch

from deepvision.config.coerce import to_dict
from deepvision.config.schema import Config, DataConfig, ModelConfig
from deepvision.data.preprocess import Preprocess
from deepvision.datasets.detection import build_dataset, make_fake
from deepvision.datasets.detection.build import read_annotations
from deepvision.models import create_model
from deepvision.runs.checkpoint import FORMAT, VERSION, atomic_save
from deepvision.runs.rundir import RunDir

MODEL = "ssdlite320_mobilenet_v3_large"
ARGS = {"size": 96, "detections_per_img": 50}


def built_fake(root: Path, fmt: str = "voc", images: int = 8, size: int = 96, seed: int = 0) -> Path:
    fake = make_fake(root / fmt, fmt, images=images, size=size, seed=seed)
    build_dataset(read_annotations(fmt, fake.build_args[1:]), root / f"{fmt}-built")
    return root / f"{fmt}-built"


def detection_config(root: Path, epochs: int = 1, **train_keys) -> dict:
    """A tiny SSDlite training config: val carved out of the built train split, the built test split as test."""
    return {"task": "detection",
            "model": {"name": MODEL, "args": {"size": 96, "detections_per_img": 20}},
            "data": {"source": "detection", "root": str(root), "train": "train", "val": None, "val_fraction": 0.25,
                     "test": "test", "batch_size": 2, "workers": 0},
            "optim": {"name": "sgd", "lr": 0.01, "momentum": 0.9},
            "train": {"epochs": epochs, "max_steps": 2, "tensorboard": False, "clip_grad_norm": 10.0, **train_keys}}


def calibrate_batchnorm(model: torch.nn.Module, seed: int = 0) -> None:
    """Give an untrained SSDlite BatchNorm statistics of real activations (exact averages over a few noise images),
    so its eval-mode features do not vanish and its scores differ from box to box, as a trained model's do."""
    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, 96, 96, generator=g) for _ in range(4)]
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average
    model.train()
    with torch.no_grad():
        features = model.backbone(model.transform(images)[0].tensors)
        model.head(list(features.values()))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 0.03
    model.eval()


def make_detection_run(root: Path, data_root: Path, classes: list[str], seed: int = 0) -> Path:
    """A run directory as the trainer leaves it (config, preprocess, labels, best.pt) with an untrained SSDlite
    whose BatchNorm statistics are calibrated (see calibrate_batchnorm)."""
    cfg = Config(name="det", task="detection",
                 model=ModelConfig(name=MODEL, num_classes=len(classes) + 1, in_channels=3, args=dict(ARGS)),
                 data=DataConfig(source="detection", root=str(data_root), batch_size=2, workers=0))
    run = RunDir.create(root, "det")
    run.write_config(cfg)
    run.write_preprocess(Preprocess(channels=3, size=(96, 96)))
    run.write_labels(classes)
    torch.manual_seed(seed)
    model = create_model(MODEL, num_classes=len(classes) + 1, **ARGS)
    calibrate_batchnorm(model)
    atomic_save({"format": FORMAT, "version": VERSION, "epoch": 1,
                 "model": {"name": MODEL, "num_classes": len(classes) + 1, "in_channels": 3},
                 "model_state": model.state_dict(), "classes": classes, "config": to_dict(cfg)},
                run.checkpoints / "best.pt")
    return run.path


def run_on_a_copy_of_its_data(run_dir: Path, tmp_path: Path, edit: bool = True) -> tuple[Path, Path]:
    """A copy of the run `run_dir` and a copy of its built dataset (the same split files in another place), beside
    a copy of the annotations it was built from: (the run, the dataset). `edit`: the run's config.yaml reads the
    copy (else it reads the original: a resume takes `--set data.root=COPY`)."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    root = Path(RunDir(copy).read_config().data.root)
    shutil.copytree(root.parent, tmp_path / "data", ignore=lambda folder, names: [n for n in names if n == "runs"])
    if not edit:
        return copy, tmp_path / "data" / root.name
    text = (copy / "config.yaml").read_text()
    (copy / "config.yaml").write_text(text.replace(f"root: {root}\n", f"root: {tmp_path / 'data' / root.name}\n", 1))
    assert RunDir(copy).read_config().data.root == str(tmp_path / "data" / root.name)
    return copy, tmp_path / "data" / root.name
