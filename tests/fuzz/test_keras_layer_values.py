"""Keras layer config values the importer cannot build from exactly (negative, NaN, fractional or huge
sizes, zero strides or kernels, 2e9 filters) are refused before any torch module exists: one line naming
the layer and the field, no torch warning, the file unchanged."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

h5py = pytest.importorskip("h5py")

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "keras" / "keras_mnist_cnn.h5"
INPUT = "Keras layer 'input_layer_1' (InputLayer)"
CONV = "Keras layer 'conv2d_7' (Conv2D)"


def _tampered(tmp_path, key, value):
    path = tmp_path / "m.h5"
    shutil.copy(FIXTURE, path)
    with h5py.File(path, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        layers = cfg["config"]["layers"]
        if key in ("batch_shape", "batch_input_shape"):
            layers[0]["config"].pop("batch_shape")
            layers[0]["config"][key] = value
        else:
            layers[1]["config"][key] = value
        f.attrs["model_config"] = json.dumps(cfg)
    return path


@pytest.mark.parametrize(("key", "value", "message"), [
    ("batch_shape", [None, -4, 4, 1], f"{INPUT} batch_shape [None, -4, 4, 1]: every size after the batch axis"),
    ("batch_input_shape", [None, -4, 4, 1], f"{INPUT} batch_input_shape [None, -4, 4, 1]: every size"),
    ("batch_shape", [None, float("nan"), 4, 1], f"{INPUT} batch_shape [None, nan, 4, 1]: every size"),
    ("batch_shape", [None, 4.5, 4, 1], f"{INPUT} batch_shape [None, 4.5, 4, 1]: every size"),
    ("batch_shape", [None, "4", 4, 1], f"{INPUT} batch_shape [None, '4', 4, 1]: every size"),
    ("batch_shape", [None, 20000, 20000, 1], f"{INPUT} batch_shape 20000x20000 exceeds the ceiling of 16384"),
    ("filters", 2_000_000_000, f"{CONV}: filters 2000000000 must be a whole number from 1 to 1,048,576"),
    ("filters", float("nan"), f"{CONV}: filters nan must be a whole number from 1"),
    ("strides", [0, 0], f"{CONV}: strides [0, 0] must be whole numbers from 1"),
    ("kernel_size", [0, 0], f"{CONV}: kernel_size [0, 0] must be whole numbers from 1"),
    ("kernel_size", [-3, 3], f"{CONV}: kernel_size [-3, 3] must be whole numbers from 1"),
    ("dilation_rate", [0, 1], f"{CONV}: dilation_rate [0, 1] must be whole numbers from 1"),
])
@pytest.mark.parametrize("route", [[], ["--model", "auto"]])
def test_layer_values_are_refused_before_building(tmp_path, run_cli, key, value, message, route):
    path = _tampered(tmp_path, key, value)
    before = path.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a torch warning (zero-element tensors) would fail here
        code, out, err = run_cli("import", "keras", path, "--out", tmp_path / "run", *route)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "run").exists() and path.read_bytes() == before


def test_a_stated_input_that_rebuilds_beyond_the_budget_is_refused(tmp_path, monkeypatch):
    from deepvision.errors import UserError
    from deepvision.models.keras_graph import KerasGraph, read_config

    config = tmp_path / "model.json"
    with h5py.File(FIXTURE, "r") as f:
        config.write_text(f.attrs["model_config"] if isinstance(f.attrs["model_config"], str)
                          else f.attrs["model_config"].decode())
    monkeypatch.setenv("DEEPVISION_MAX_READ_GB", "0.0001")  # 100 kB: the 4x4 model's weights do not fit
    with pytest.raises(UserError, match=r"model '.*' \(its layers for input \(4, 4, 1\)\) declares .* above"):
        KerasGraph(read_config(config))


def test_the_untouched_file_still_imports(tmp_path, run_cli):
    code, _, err = run_cli("import", "keras", FIXTURE, "--out", tmp_path / "run")
    assert code == 0, err


@pytest.mark.parametrize(("cls", "cfg", "message"), [
    ("Rescaling", {"scale": float("nan"), "offset": 0.0}, "Keras layer 'x' (Rescaling): scale nan must be a finite"),
    ("Rescaling", {"scale": 1.0, "offset": float("inf")}, "Keras layer 'x' (Rescaling): offset inf must be a finite"),
    ("Rescaling", {"scale": [1.0, float("nan"), 1.0]}, "(Rescaling): scale holds nan; every value must be a finite"),
    ("Reshape", {"target_shape": [2.5, 4]}, "(Reshape): target_shape [2.5, 4] must be a list of whole numbers"),
    ("Reshape", {"target_shape": [0, 4]}, "(Reshape): target_shape [0, 4] must be a list of whole numbers"),
    ("Reshape", {"target_shape": [True, 4]}, "(Reshape): target_shape [True, 4] must be a list of whole numbers"),
])
def test_rescaling_and_reshape_values_are_exact(cls, cfg, message):
    """Rescaling's scale/offset must be finite (NaN made every prediction NaN); a Reshape target is
    whole numbers (2.5 was truncated to 2)."""
    from deepvision.errors import UserError
    from deepvision.models.keras_graph import check_layer_configs

    model = {"class_name": "Sequential", "config": {"layers": [{"class_name": cls, "config": {"name": "x", **cfg}}]}}
    with pytest.raises(UserError) as info:
        check_layer_configs(model)
    assert message in str(info.value)
    ok = {"Rescaling": {"scale": [0.5, 1.0], "offset": -1}, "Reshape": {"target_shape": [-1, 4]}}[cls]
    check_layer_configs({"class_name": "Sequential",
                         "config": {"layers": [{"class_name": cls, "config": {"name": "x", **ok}}]}})
