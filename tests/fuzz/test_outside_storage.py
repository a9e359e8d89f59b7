"""HDF5 data kept outside the file (EXTERNAL raw storage, loops, missing groups) and Keras files whose
weight groups are missing or loop: one line each, nothing read from the other file, nothing waited on,
every input byte-identical afterwards."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.fuzz.test_corpus import _snapshot

h5py = pytest.importorskip("h5py")

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "keras" / "keras_mnist_cnn.h5"
CONV = "model_weights/conv2d_7/sequential/conv2d_7"


def _external_features(path: Path, target: Path, key: str = "features") -> Path:
    with h5py.File(path, "w") as db:
        shapes = {"features": ((10, 3), "u1"), "labels": ((10,), "u1")}
        for name, (shape, dtype) in shapes.items():
            if name == key:
                db.create_dataset(name, shape=shape, dtype=dtype, external=[(str(target), 0, h5py.h5f.UNLIMITED)])
            else:
                db[name] = np.zeros(shape, dtype) if name == "features" else np.tile([0, 1], 5).astype(dtype)
        db.create_dataset("label_names", data=["a", "b"], dtype=h5py.string_dtype())
    return path


@pytest.mark.parametrize("key", ["features", "labels"])
@pytest.mark.parametrize("target", ["secret", "fifo"])
def test_logreg_refuses_a_dataset_stored_in_an_external_file(tmp_path, run_cli, key, target):
    other = tmp_path / target
    if target == "fifo":
        os.mkfifo(other)  # reading it would block forever
    else:
        other.write_bytes(bytes(range(1, 31)))
    path = _external_features(tmp_path / "f.h5", other, key)
    before = _snapshot(tmp_path)
    code, _, err = run_cli("logreg", path, "--cv", "2", "--jobs", "1", "--out", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1, err
    assert f"'{key}' is stored in an external file; refused" in err
    assert not (tmp_path / "out").exists() and _snapshot(tmp_path) == before


def test_the_hdf5_source_refuses_external_storage_too(tmp_path):
    from deepvision.data.hdf5 import HDF5Dataset
    from deepvision.errors import UserError

    (tmp_path / "secret").write_bytes(bytes(30))
    path = _external_features(tmp_path / "f.h5", tmp_path / "secret")
    with pytest.raises(UserError, match="'features' is stored in an external file; refused"):
        HDF5Dataset(path, "features")


def _keras(tmp_path: Path, change) -> Path:
    path = tmp_path / "m.h5"
    shutil.copy(FIXTURE, path)
    with h5py.File(path, "r+") as f:
        change(f)
    return path


def _external_bias(tmp_path: Path):
    (tmp_path / "secret").write_bytes(np.arange(32, dtype="<f4").tobytes())

    def change(f):
        del f[CONV]["bias"]
        f[CONV].create_dataset("bias", shape=(32,), dtype="<f4",
                               external=[(str(tmp_path / "secret"), 0, h5py.h5f.UNLIMITED)])
    return change


def _soft_loop(f):
    del f[f"{CONV}/kernel"]
    f[f"{CONV}/kernel"] = h5py.SoftLink(f"/{CONV}/kernel")


def _ghost_layers(f):
    f["model_weights"].attrs["layer_names"] = np.array([b"ghost", b"conv2d_7"])


@pytest.mark.parametrize(("change", "message"), [
    ("external", "of layer 'conv2d_7' is stored in an external file; refused"),
    ("loop", "of layer 'conv2d_7' is a link that leads nowhere or loops"),
    ("missing", "the weight group of layer 'dense_1' is named in the file but missing from it"),
    ("ghost", "the weight group of layer 'ghost' is named in the file but missing from it"),
])
@pytest.mark.parametrize("route", [[], ["--model", "auto"]])
def test_keras_weight_groups_outside_the_file_or_missing_are_one_line(tmp_path, run_cli, change, message, route):
    changes = {"external": _external_bias(tmp_path), "loop": _soft_loop,
               "missing": lambda f: f["model_weights"].__delitem__("dense_1"), "ghost": _ghost_layers}
    path = _keras(tmp_path, changes[change])
    before = _snapshot(tmp_path)
    code, _, err = run_cli("import", "keras", path, "--out", tmp_path / "run", *route)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "run").exists() and _snapshot(tmp_path) == before


def test_a_keras_layer_that_leaves_an_empty_map_is_refused_before_building(tmp_path, run_cli):
    def over_crop(f):  # cropping [[1, 1], [1, 1]] of the 2x2 map before Flatten left a 0x0 map
        cfg = json.loads(f.attrs["model_config"])
        layers = cfg["config"]["layers"]
        layers.insert(5, {"class_name": "Cropping2D", "config": {"name": "crop", "cropping": [[1, 1], [1, 1]]}})
        layers.insert(3, {"class_name": "SpatialDropout2D", "config": {"name": "sd", "rate": 0.1}})
        f.attrs["model_config"] = json.dumps(cfg)

    path = _keras(tmp_path, over_crop)
    before = path.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "Initializing zero-element tensors" would fail here
        code, _, err = run_cli("import", "keras", path, "--out", tmp_path / "run")
    assert code == 2 and err.count("\n") == 1, err
    assert "Keras layer 'crop' (Cropping2D) leaves nothing of its input" in err and "is empty" in err
    assert not (tmp_path / "run").exists() and path.read_bytes() == before


@pytest.mark.parametrize("jobs", ["0", "-2", "5000"])
def test_logreg_jobs_must_be_positive_or_minus_one(tmp_path, run_cli, jobs):
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as db:
        db["features"] = np.random.default_rng(0).random((20, 3))
        db["labels"] = np.arange(20) % 2
    before = path.read_bytes()
    code, _, err = run_cli("logreg", path, "--jobs", jobs, "--out", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1
    assert f"--jobs must be a whole number from 1 to 1,024, or -1 for every core; got {jobs}" in err
    assert not (tmp_path / "out").exists() and path.read_bytes() == before
