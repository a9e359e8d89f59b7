"""Declared sizes are checked before allocation (HDF5 datasets, .npz members and .npy headers), and the
values of a features file / model file are validated (labels in range, finite numbers)."""

from __future__ import annotations

import io
import json
import zipfile

import h5py
import numpy as np
import pytest

from deepvision.apps.transfer.logreg import LinearModel, fit_logreg
from deepvision.data.hdf5 import HDF5Dataset
from deepvision.errors import UserError
from deepvision.safeload import check_declared_bytes, open_npz


def _features(path, x, y, names=("a", "b")):
    with h5py.File(path, "w") as db:
        db.create_dataset("features", data=x)
        db.create_dataset("labels", data=y)
        db.create_dataset("label_names", data=list(names), dtype=h5py.string_dtype())
    return path


def test_hdf5_dataset_declaring_more_than_its_file_is_refused(tmp_path):
    """5 kB on disk declaring 74.5 GiB of float32 features (no chunk written): refused before reading."""
    path = tmp_path / "bomb.h5"
    with h5py.File(path, "w") as db:
        db.create_dataset("features", shape=(100_000, 200_000), dtype="f4", chunks=(64, 1024), compression="gzip")
        db.create_dataset("labels", data=np.zeros(100_000, np.int64))
    assert path.stat().st_size < 1_000_000
    with pytest.raises(UserError, match=r"dataset 'features' \(100000x200000 float32\) declares 80.0 GB but the "
                                        r"file stores 0 B for it \(compressed more than 1000:1\)"):
        HDF5Dataset(path, in_memory=True)
    with pytest.raises(UserError, match="declares 80.0 GB"):
        fit_logreg(path, tmp_path / "out", cv=2, jobs=1)
    with pytest.raises(UserError, match=r"but the file stores 0 B for it"):  # read lazily (training) too
        HDF5Dataset(path)


def test_a_lazy_hdf5_source_checks_what_is_stored_but_not_the_whole_read_ceiling(tmp_path, monkeypatch):
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as db:
        db.create_dataset("features", shape=(6, 2), dtype="f4", fillvalue=0.0)  # never written: would read zeros
        db.create_dataset("labels", data=np.arange(6) % 2)
    before = path.read_bytes()
    with pytest.raises(UserError, match=r"dataset 'features' \(6x2 float32\) declares 48 B but the file stores 0 B"):
        HDF5Dataset(path)
    assert path.read_bytes() == before
    with h5py.File(path, "w") as db:
        db["features"], db["labels"] = np.ones((200, 100), np.float32), np.arange(200) % 2
    monkeypatch.setenv("DEEPVISION_MAX_READ_GB", "0.00005")  # 50 kB: less than the 80 kB of features
    assert HDF5Dataset(path)[3][0].tolist() == [1.0] * 100  # rows are read one at a time
    with pytest.raises(UserError, match=r"declares 80.0 kB, above the 50.0 kB one read may take"):
        HDF5Dataset(path, in_memory=True)


def test_read_ceiling_is_configurable(monkeypatch):
    check_declared_bytes("x", 10**6)
    monkeypatch.setenv("DEEPVISION_MAX_READ_GB", "0.0001")
    with pytest.raises(UserError, match=r"x declares 1.0 MB, above the 100.0 kB one read may take"):
        check_declared_bytes("x", 10**6)
    monkeypatch.setenv("DEEPVISION_MAX_READ_GB", "nan")
    with pytest.raises(UserError, match="MAX_READ_GB must be a number of gigabytes from 1e-09 to 1,000,000,000"):
        check_declared_bytes("x", 1)


@pytest.mark.parametrize(("x", "y", "message"), [
    (np.ones((20, 3)), np.r_[np.zeros(10), -np.ones(10)].astype(np.int64), r"'labels' holds the negative class -1"),
    (np.ones((20, 3)), np.r_[np.zeros(10), np.full(10, 7)].astype(np.int64), r"'labels' holds class 7 but"),
    (np.ones((20, 3)), np.full(20, 2**63 + 5, np.uint64),
     r"'labels' holds class 9223372036854775813; class ids are below 2\*\*63"),
    (np.where(np.eye(20, 3) > 0, np.nan, 1.0), np.tile([0, 1], 10), r"3 row\(s\) hold NaN or infinite features"),
    (np.array([["x"] * 3] * 20, dtype="S1"), np.tile([0, 1], 10), r"features are \|S1 values; give numbers"),
    (np.ones((20, 3)), np.array([0.5, 1.0] * 10), r"'labels' must be a 1-D integer dataset"),
])
def test_logreg_refuses_bad_values(tmp_path, x, y, message):
    path = _features(tmp_path / "f.h5", x, y)
    with pytest.raises(UserError, match=message):
        fit_logreg(path, tmp_path / "out", cv=2, jobs=1)
    assert not (tmp_path / "out").exists()


def _model(tmp_path, **changes):
    arrays = {"coef": np.ones((1, 3)), "intercept": np.zeros(1), "classes": np.array([0, 1]),
              "label_names": np.array(["0", "180"]), "kind": np.array("multinomial"), "info": np.array("{}")}
    arrays.update(changes)
    path = tmp_path / "model.npz"
    np.savez(path, **arrays)
    return path


def test_model_npz_values_are_validated(tmp_path):
    assert LinearModel.load(_model(tmp_path)).predict(np.ones((2, 3))).tolist() == [1, 1]
    cases = [
        ({"coef": np.full((1, 3), np.nan)}, "coef must hold finite numbers"),
        ({"classes": np.array([0, 5])}, "classes must be 2 or more distinct label indices below 2"),
        ({"classes": np.array([0, 0])}, "classes must be 2 or more distinct label indices below 2"),  # one unreachable
        ({"label_names": np.array(["0", "18\n0"])}, "holds control characters"),
        ({"info": np.array("[" * 500 + "]" * 500)}, "JSON nested deeper than 100 levels"),
        ({"intercept": np.zeros(4)}, r"do not fit together"),
    ]
    for change, message in cases:
        with pytest.raises(UserError, match=message):
            LinearModel.load(_model(tmp_path, **change))


def _npy_header(shape, dtype="<f8") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def test_npz_zip_bomb_is_refused_from_the_directory(tmp_path):
    """A deflated member of 40 MB of zeros (40 kB in the zip): refused by its ratio before it is inflated."""
    path = tmp_path / "model.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("coef.npy", _npy_header((5000, 1000)) + bytes(40_000_000))
    assert path.stat().st_size < 100_000
    with pytest.raises(UserError, match=r"member coef.npy declares 40.0 MB but the file stores .* \(compressed more "
                                        r"than 100:1\)"):
        open_npz(path)
    with pytest.raises(UserError, match="compressed more than 100:1"):
        LinearModel.load(path)


def test_npy_header_larger_than_its_member_is_refused(tmp_path):
    """numpy allocates the header's shape before reading a zip member: 45000x45000 float64 (16 GB) declared
    in a 200-byte member is refused first."""
    path = tmp_path / "model.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("coef.npy", _npy_header((45000, 45000)) + bytes(64))
    with pytest.raises(UserError, match=r"coef.npy shape \(45000, 45000\) declares 16.2 GB but the file stores"):
        open_npz(path)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("info.npy", _npy_header((1,), "|O") + bytes(8))
    with pytest.raises(UserError, match="holds Python objects"):
        open_npz(path)
    path.write_bytes(b"not a zip")
    with pytest.raises(UserError, match="is not a readable .npz file"):
        open_npz(path)


def test_feature_info_attribute_is_bounded(tmp_path):
    from deepvision.inference.features import read_feature_info

    path = _features(tmp_path / "f.h5", np.ones((4, 2)), np.array([0, 1, 0, 1]))
    with h5py.File(path, "a") as db:
        db.attrs["deepvision"] = "[" * 5000 + "]" * 5000
    with pytest.raises(UserError, match="attribute 'deepvision': JSON nested deeper than 100"):
        read_feature_info(path)
    with h5py.File(path, "a") as db:
        db.attrs["deepvision"] = json.dumps({"model": "x"})
    assert read_feature_info(path) == {"model": "x"}
