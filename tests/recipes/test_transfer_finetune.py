"""The `transfer_finetune` recipe: an ImageNet MobileNet-V2 with a new head trained on an image folder with one
command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

from deepvision.config import load_config
from deepvision.data.sources import load_data
from deepvision.recipes import recipe_path


def photo_folder(root: Path, per_class: int, seed: int = 0) -> Path:
    """root/<class>/*.jpg: reddish and bluish noise photos of a few sizes."""
    rng = np.random.default_rng(seed)
    for c, (name, tint) in enumerate((("ants", (180, 60, 40)), ("bees", (40, 70, 190)))):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            h, w = (60, 80) if i % 2 else (90, 70)
            pixels = np.clip(rng.normal(tint, 40, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{c}_{i}.jpg")
    return root


def test_folder_layouts_the_recipe_reads(tmp_path):
    flat = photo_folder(tmp_path / "flat", per_class=10)
    cfg = load_config(recipe_path("transfer_finetune"), [f"data.root={flat}"])
    data = load_data(cfg.data)
    assert data.counts() == {"train": 16, "val": 4} and data.classes == ["ants", "bees"]
    split = tmp_path / "split"
    photo_folder(split / "train", per_class=6)
    photo_folder(split / "valid", per_class=3, seed=1)
    cfg = load_config(recipe_path("transfer_finetune"), [f"data.root={split}"])
    data = load_data(cfg.data)
    assert data.counts() == {"train": 12, "val": 6}  # the folder's own val split: nothing is carved


def test_one_command_fine_tunes_imagenet_weights(run_cli, offline_torch_home, tmp_path):
    from tests.conftest import MOBILENET_V2_FILE

    photos = photo_folder(tmp_path / "photos", per_class=10)
    code, out, err = run_cli("train", "transfer_finetune", "--data-root", photos, "--out", tmp_path / "runs",
                             "--set", "train.epochs=1", "--set", "data.workers=0",
                             "--set", "train.tensorboard=false", "--set", "train.progress=lines")
    assert code == 0, err
    run = tmp_path / "runs" / "transfer_finetune"
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert (cfg["data"]["resize"], cfg["data"]["image_size"], cfg["data"]["batch_size"]) == (256, 224, 16)
    assert cfg["model"]["num_classes"] == 2
    recipe = yaml.safe_load(recipe_path("transfer_finetune").read_text())
    assert recipe["train"]["freeze"]["body_epochs"] == recipe["train"]["epochs"] == 10  # frozen throughout
    history = (run / "history.csv").read_text().splitlines()
    assert len(history) == 2
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model_state"]
    imagenet = torch.load(offline_torch_home / "hub" / "checkpoints" / MOBILENET_V2_FILE, weights_only=True)
    # the new head alone learns: the body is torchvision's weights to the bit, BatchNorm statistics too
    for key in ("features.0.0.weight", "features.18.1.running_mean", "features.10.conv.2.weight"):
        assert torch.equal(state[key], imagenet[key]), key
    assert state["classifier.1.weight"].shape == (2, 1280)
    assert not torch.equal(state["classifier.1.weight"][:2], imagenet["classifier.1.weight"][:2])
