"""runs.loading: a run of another task is refused in one line where a classifier is needed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.detection_helpers import built_fake, make_detection_run

CLASSES = ["disc", "square", "triangle"]


@pytest.fixture(scope="module")
def det_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("loading")
    return make_detection_run(root / "runs", built_fake(root, images=4, size=96, seed=2), CLASSES)


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("command", ["classify", "features", "features-list", "emotion", "agegender", "checkpoint"])
def test_a_detection_run_is_refused_where_a_classifier_is_needed(det_run, tmp_path, run_cli, command):
    """classify, features, emotion and agegender read a model's outputs as class scores (or its head's input as
    image features): a detection run is refused in one line, exit 2, before any image is read or file written."""
    rng = np.random.default_rng(0)
    for name in ("a/x.png", "b/y.png"):
        (tmp_path / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "data" / name)
    image = tmp_path / "data" / "a" / "x.png"
    args = {"classify": ("classify", image, "--run", det_run, "--out", tmp_path / "p.csv"),
            "features": ("features", det_run, tmp_path / "data", "--out", tmp_path / "f.h5"),
            "features-list": ("features", det_run, "--list-layers"),
            "emotion": ("emotion", det_run, "--image", image, "--headless", "--out", tmp_path / "o"),
            "agegender": ("agegender", det_run, det_run, "--image", image, "--out", tmp_path / "o"),
            "checkpoint": ("emotion", det_run / "checkpoints" / "best.pt", "--image", image, "--headless",
                           "--out", tmp_path / "o")}[command]
    before, run_before = _tree(tmp_path), _tree(det_run)
    code, out, err = run_cli(*args)
    name = args[0]
    if command == "checkpoint":
        message = (f"{det_run / 'checkpoints' / 'best.pt'} holds the model of a detection run and a classifier is "
                   f"needed here (a classification run)")
    else:
        message = (f"{det_run} is a detection run and a classifier is needed here (a classification run); draw its "
                   f"boxes with `deepvision detect {det_run} IMAGE...`")
    assert (code, out) == (2, "") and err.splitlines() == [f"deepvision {name}: error: {message}"], err
    assert _tree(tmp_path) == before and _tree(det_run) == run_before


def test_load_run_refuses_another_task_only_for_a_classifier(det_run):
    from deepvision.errors import UserError
    from deepvision.runs.loading import load_run

    assert load_run(det_run).cfg.task == "detection"  # evaluate, export and detect load it as it is
    with pytest.raises(UserError, match="is a detection run and a classifier is needed here"):
        load_run(det_run, classifier=True)
