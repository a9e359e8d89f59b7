"""`deepvision orientation apply` with a model.npz whose info names another run, or a preprocessing that
does not fit the network it names: one line before any image is read, nothing written."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from deepvision.config.io import build_config
from deepvision.data.preprocess import Preprocess
from deepvision.models.registry import create_model
from deepvision.runs.imported import write_imported_run


def _lenet_run(path, seed):
    cfg = build_config({"name": "t", "model": {"name": "lenet", "num_classes": 4, "in_channels": 1},
                        "data": {"source": "digits"}})
    torch.manual_seed(seed)
    state = create_model("lenet", 4, 1, input_size=28).state_dict()
    return write_imported_run(path, cfg, Preprocess(channels=1, size=(28, 28)), list("abcd"), state, epoch=1,
                              source={"file": "test"}).path


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A run, a second run of the same architecture, 4 turned images per angle, and a logreg model fitted
    on the first run's features."""
    from deepvision.cli.main import main

    root = tmp_path_factory.mktemp("orient")
    runs = [_lenet_run(root / "run_a", 0), _lenet_run(root / "run_b", 1)]
    rng = np.random.default_rng(0)
    for angle in (0, 90, 180, 270):
        (root / "rot" / str(angle)).mkdir(parents=True)
        for i in range(4):
            img = np.zeros((28, 28), np.uint8)
            img[:10] = 255
            img = np.rot90(img + rng.integers(0, 30, (28, 28), dtype=np.uint8), -angle // 90)
            Image.fromarray(np.ascontiguousarray(img)).save(root / "rot" / str(angle) / f"{i}.png")
    assert main(["features", str(runs[0]), str(root / "rot"), "--out", str(root / "f.h5")]) == 0
    assert main(["logreg", str(root / "f.h5"), "--grid", "C=1", "--cv", "2", "--jobs", "1", "--out",
                 str(root / "model")]) == 0
    return root, runs


def _tampered(fitted, tmp_path, **changes):
    root, _ = fitted
    with np.load(root / "model" / "model.npz") as z:
        arrays = {k: z[k] for k in z.files}
    info = json.loads(str(arrays["info"]))
    for key, value in changes.items():
        if key.startswith("preprocess."):
            info["features"]["preprocess"][key.split(".", 1)[1]] = value
        else:
            info["features"][key] = value
    arrays["info"] = np.array(json.dumps(info))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    (tmp_path / "model.npz").write_bytes(buf.getvalue())
    return tmp_path / "model.npz"


def test_the_fitted_model_records_its_run_and_applies(fitted, tmp_path, run_cli):
    root, runs = fitted
    with np.load(root / "model" / "model.npz") as z:
        feat = json.loads(str(z["info"]))["features"]
    assert feat["run"] == str(runs[0].resolve()) and len(feat["run_id"]) == 32
    code, _, err = run_cli("orientation", "apply", root / "model", root / "rot" / "90", "--out", tmp_path / "o")
    assert code == 0, err


@pytest.mark.parametrize(("change", "message"), [
    ({"run": "B"}, r"was fitted on features of run [0-9a-f]{8}, but .*run_b now holds run [0-9a-f]{8}; extract"),
    ({"preprocess.channels": 3}, r"its info gives 3 channel\(s\) but run .*run_a takes 1"),
    ({"preprocess.size": [56, 56]}, r"run .*run_a cannot take its info's input 1x56x56 \(mat1 and mat2"),
    ({"layer": "classifier.0"}, r"takes 500 features but run .*run_a gives 800 at layer classifier\.0"),
])
def test_a_model_that_does_not_fit_the_run_it_names_is_one_line(fitted, tmp_path, run_cli, change, message):
    root, runs = fitted
    if change.get("run") == "B":
        change = {"run": str(runs[1])}
    model = _tampered(fitted, tmp_path, **change)
    before = model.read_bytes()
    code, _, err = run_cli("orientation", "apply", model, root / "rot" / "90", "--out", tmp_path / "o")
    assert code == 2 and err.count("\n") == 1 and __import__("re").search(message, err), err
    assert not (tmp_path / "o").exists() and model.read_bytes() == before
