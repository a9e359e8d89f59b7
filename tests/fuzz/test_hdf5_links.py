"""HDF5 feature files whose class names or links are hostile: logreg and every HDF5 source refuse them
in one line, and the file is left as it was."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")


def _features(path, names=("a", "b")):
    with h5py.File(path, "w") as f:
        f["features"] = np.random.default_rng(0).random((40, 3))
        f["labels"] = np.arange(40) % 2
        f.create_dataset("label_names", data=list(names), dtype=h5py.string_dtype())
    return path


def _linked(path, **links):
    with h5py.File(path, "w") as f:
        f["features"] = np.zeros((40, 3))
        f["labels"] = np.arange(40) % 2
        for key, link in links.items():
            if key in f:
                del f[key]
            f[key] = link
    return path


@pytest.mark.parametrize("name", ["a\nb", "a\tb", "a\x07", "a\u2028b", ""])
def test_label_names_with_control_characters_are_refused(tmp_path, run_cli, name):
    path = _features(tmp_path / "f.h5", (name, "c"))
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    code, _, err = run_cli("logreg", path, "--out", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1
    assert f"class name {name!r} is empty or holds a control character" in err
    assert not (tmp_path / "out").exists() and hashlib.sha256(path.read_bytes()).hexdigest() == before


@pytest.mark.parametrize(("links", "message"), [
    ({"features": h5py.ExternalLink("other.h5", "features")}, "'features' is an external link to other.h5:features"),
    ({"features": h5py.ExternalLink("/nonexistent.h5", "x")}, "'features' is an external link to /nonexistent"),
    ({"features": h5py.SoftLink("/x"), "x": h5py.SoftLink("/features")}, "'features' is a link that leads "
                                                                          "nowhere or loops"),
    ({"labels": h5py.SoftLink("/labels")}, "'labels' is a link that leads nowhere or loops"),
    ({"label_names": h5py.SoftLink("/gone")}, "'label_names' is a link that leads nowhere or loops"),
])
def test_external_and_looping_links_are_one_line(tmp_path, run_cli, links, message):
    _features(tmp_path / "other.h5")
    path = _linked(tmp_path / "f.h5", **links)
    code, _, err = run_cli("logreg", path, "--out", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_a_soft_link_inside_the_file_is_followed(tmp_path):
    from deepvision.data.hdf5 import HDF5Dataset

    path = _linked(tmp_path / "f.h5", labels=h5py.SoftLink("/stored"))
    with h5py.File(path, "a") as f:
        f["stored"] = np.arange(40) % 3
    assert HDF5Dataset(path, "features").classes == ["0", "1", "2"]
