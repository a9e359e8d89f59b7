"""Cases an independent attack on the readers found after the first hardening: each ends in one line or in
the right result."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from deepvision.datasets.detection.readers import read_yolo
from deepvision.datasets.hdf5 import HDF5DatasetWriter
from deepvision.errors import UserError
from deepvision.runs.plots import manual_lr_epochs
from deepvision.runs.rundir import RunDir
from deepvision.safeload import load_yaml


def test_a_yaml_integer_too_long_to_convert_is_one_line():
    with pytest.raises(UserError, match=r"x\.yaml: the integer on line 1 \(5,000 characters\) is out of range"):
        load_yaml(f"epochs: {'9' * 5000}\n", "x.yaml")


def _yolo(root, label_line: str, with_path: bool) -> None:
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    Image.new("RGB", (20, 10)).save(root / "images" / "train" / "a.jpg")
    (root / "labels" / "train" / "a.txt").write_text(label_line + "\n")
    path = f"path: {root}\n" if with_path else ""
    (root / "data.yaml").write_text(f"{path}train: images/train\nnames: [a]\n")


def test_yolo_data_yaml_without_path_given_by_a_relative_path(tmp_path, monkeypatch):
    _yolo(tmp_path / "ds", "0 0.5 0.5 0.5 0.5", with_path=False)
    monkeypatch.chdir(tmp_path)
    ann = read_yolo("ds/data.yaml")  # the folder holding data.yaml is the dataset root
    (record,) = ann.splits["train"]
    assert record.file.endswith(os.path.join("ds", "images", "train", "a.jpg"))
    assert [(b.xmin, b.ymin, b.xmax, b.ymax) for b in record.boxes] == [(5.0, 2.5, 15.0, 7.5)]


def test_a_yolo_polygon_with_a_nan_vertex_becomes_a_nan_box(tmp_path):
    _yolo(tmp_path / "ds", "0 0.1 0.1 0.2 nan 0.3 0.3", with_path=True)
    (record,) = read_yolo(tmp_path / "ds" / "data.yaml").splits["train"]
    assert all(math.isnan(v) for v in (record.boxes[0].xmin, record.boxes[0].ymax))  # the build refuses or drops it


def test_a_yolo_data_file_that_is_missing_or_a_fifo_is_one_line(tmp_path):
    with pytest.raises(UserError, match="YOLO data file not found"):
        read_yolo(tmp_path / "nope.yaml")
    os.mkfifo(tmp_path / "d.yaml")
    with pytest.raises(UserError, match="not a regular file"):
        read_yolo(tmp_path / "d.yaml")


def test_plot_survives_a_damaged_segment_list(tmp_path):
    run = RunDir(tmp_path)
    run.state_path.write_text(json.dumps({"status": "finished", "segments": "abc"}))
    assert manual_lr_epochs(run) == ()
    run.state_path.write_text(json.dumps({"segments": [{}, {"start_epoch": "x", "overrides": 5},
                                                       {"start_epoch": 3, "overrides": ["optim.lr=0.1"]}]}))
    assert manual_lr_epochs(run) == (4,)


def test_logreg_with_too_few_rows_of_a_class_for_the_folds_is_one_line(tmp_path):
    from deepvision.apps.transfer.logreg import fit_logreg

    path = tmp_path / "f.h5"
    with HDF5DatasetWriter(path, (8, 3), "features") as w:
        w.add(np.arange(24, dtype=float).reshape(8, 3), [0, 0, 0, 0, 0, 1, 1, 1])
        w.store_class_labels(["a", "b"])
    with pytest.raises(UserError, match=r"class 'b' has 1 training row\(s\) .*too few for 3-fold"):
        fit_logreg(path, tmp_path / "out", quiet=True)


def test_keras_weights_with_nan_are_refused(tmp_path, run_cli):
    import shutil
    from pathlib import Path

    import h5py

    src = Path(__file__).resolve().parents[1] / "fixtures" / "keras" / "keras_mnist_cnn.h5"
    bad = tmp_path / "nan.h5"
    shutil.copy(src, bad)
    with h5py.File(bad, "r+") as f:
        kernels = []
        f.visititems(lambda name, obj: kernels.append(name) if isinstance(obj, h5py.Dataset) and "kernel" in name
                     else None)
        data = f[kernels[0]][()]
        data.flat[0] = np.nan
        f[kernels[0]][...] = data
    code, _, err = run_cli("import", "keras", bad, "--out", tmp_path / "run")
    assert code == 2 and err.count("\n") == 1 and "NaN or infinite" in err
    assert not (tmp_path / "run").exists()


def test_hdf5_labels_far_beyond_the_names_or_unnamed_are_one_line(tmp_path):
    import h5py

    from deepvision.data.hdf5 import HDF5Dataset

    path = tmp_path / "big.h5"
    with h5py.File(path, "w") as f:
        f["features"] = np.zeros((2, 4), np.float32)
        f["labels"] = np.array([0, 10**12], np.int64)
    with pytest.raises(UserError, match=r"holds class 1000000000000 and the file has no 'label_names'"):
        HDF5Dataset(path, "features")


def test_fifos_in_place_of_a_list_a_landmark_model_or_preprocess_json_are_named_once(tmp_path):
    """A FIFO named like im2rec's list was reported as no list at all; one given as the landmark model was
    "not found"; one in place of a run's preprocess.json was named three times in one line."""
    from deepvision.datasets.im2rec import find_lists
    from deepvision.inference.faces.landmarks import Dlib68Eyes

    os.mkfifo(tmp_path / "p1.lst")
    with pytest.raises(UserError, match=f"^list file {tmp_path / 'p1.lst'} is a FIFO, not a regular file$"):
        find_lists(tmp_path / "p1")
    with pytest.raises(UserError, match=f"^landmark model {tmp_path / 'p1.lst'} is a FIFO, not a regular file"):
        Dlib68Eyes(tmp_path / "p1.lst")
    os.mkfifo(tmp_path / "preprocess.json")
    with pytest.raises(UserError) as info:
        RunDir(tmp_path).read_preprocess()
    assert str(info.value) == f"{tmp_path / 'preprocess.json'} is not a regular file (a FIFO); re-run training or " \
                              f"restore it"
