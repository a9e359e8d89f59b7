"""What identifies a classification run's splits: the members of each role, after carving, with their labels."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from deepvision.config.schema import DataConfig
from deepvision.data.sources import load_data
from deepvision.runs.split_members import members_change, members_record
from tests.helpers import make_image_folder


def _record(root, **settings):
    cfg = DataConfig(source="folder", root=str(root), train=".", test=None, val_fraction=0.2, test_fraction=0.2,
                     **settings)
    return members_record(load_data(cfg))


def test_a_folder_moved_elsewhere_is_the_same_data_and_an_added_or_moved_image_is_not(tmp_path):
    root = make_image_folder(tmp_path / "a", n_per_class=10, size=8)
    then = _record(root)
    assert {r: s["count"] for r, s in then["splits"].items()} == {"train": 12, "val": 4, "test": 4}
    shutil.copytree(root, tmp_path / "b")
    assert _record(tmp_path / "b") == then and members_change(then, _record(tmp_path / "b")) is None
    added = make_image_folder(tmp_path / "more", n_per_class=5, size=8, seed=1)
    for image in added.rglob("*.png"):
        shutil.copy(image, root / image.parent.name / f"new_{image.name}")
    change = members_change(then, _record(root), ("test",))
    assert change is not None and change[0] == "test" and change[1].startswith("4 images, sha256 ")
    assert change[2].startswith("6 images, sha256 ")
    for image in root.rglob("new_*.png"):
        image.unlink()
    assert members_change(then, _record(root)) is None
    # an image moved to the other class folder: the same count, another member and label
    shutil.move(root / "vertical" / "vertical_003.png", root / "horizontal" / "vertical_003.png")
    assert members_change(then, _record(root)) is not None


def test_rows_in_memory_are_named_by_their_bytes_and_labels():
    from deepvision.data.sources import DataBundle, to_tensor_split

    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 255, (6, 4, 4), dtype=np.uint8), np.array([0, 1, 0, 1, 0, 1])
    bundle = DataBundle(to_tensor_split(images, labels), None, None, ["a", "b"], 1, (4, 4))
    then = members_record(bundle)
    assert members_record(DataBundle(to_tensor_split(images.copy(), labels), None, None, ["a", "b"], 1,
                                     (4, 4))) == then
    other = images.copy()
    other[2, 0, 0] ^= 1
    changed = DataBundle(to_tensor_split(other, labels), None, None, ["a", "b"], 1, (4, 4))
    assert members_change(then, members_record(changed), ("train",))[0] == "train"


def test_nothing_recorded_is_compared_with_nothing(tmp_path):
    root = make_image_folder(tmp_path / "a", n_per_class=10, size=8)
    assert members_change(None, _record(root)) is None
    assert members_change({"command": "x", "splits": {}}, _record(root)) is None  # a detection record


def _write_rec(path, labels):
    from deepvision.data.records import IRHeader, pack_header
    from deepvision.datasets.records import RecordWriter
    from tests.data.recordtools import jpeg_bytes, noise_image

    with RecordWriter(path) as w:
        for i, label in enumerate(labels):
            w.write(pack_header(IRHeader(0, float(label), i, 0), jpeg_bytes(noise_image(i, (8, 8)))), key=i)
    return path


def test_records_are_named_by_id_and_offset_and_a_replaced_file_is_another_split(tmp_path):
    pytest.importorskip("cv2")
    labels = [i % 2 for i in range(20)]
    (tmp_path / "a").mkdir()
    _write_rec(tmp_path / "a" / "t.rec", labels)

    def record(folder):
        cfg = DataConfig(source="rec", root=str(folder), train="t.rec", test=None, val_fraction=0.2,
                         test_fraction=0.2)
        return members_record(load_data(cfg))

    then = record(tmp_path / "a")
    assert {r: s["count"] for r, s in then["splits"].items()} == {"train": 12, "val": 4, "test": 4}
    shutil.copytree(tmp_path / "a", tmp_path / "b", ignore=shutil.ignore_patterns("*.cache*"))
    assert members_change(then, record(tmp_path / "b")) is None  # the same file elsewhere
    _write_rec(tmp_path / "b" / "t.rec", labels[:-1] + [0])  # repacked: one label other
    assert members_change(then, record(tmp_path / "b")) is not None
