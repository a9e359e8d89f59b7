"""The record of a built dataset's splits a detection run trained on, and what changed since."""

from __future__ import annotations

import json

import pytest

from deepvision.config.schema import DataConfig
from deepvision.datasets.detection import make_fake
from deepvision.datasets.detection.build import build_from_files
from deepvision.datasets.detection.record import rebuild_hint, split_record, split_record_change


@pytest.fixture(scope="module")
def lisa(tmp_path_factory):
    """LISA annotations (one set: the build draws the test split by --seed)."""
    root = tmp_path_factory.mktemp("record")
    return make_fake(root / "fl", "lisa", images=12, size=64, seed=5).build_args[1]


def _build(lisa, out, **options):
    build_from_files("lisa", [lisa], out, command="deepvision detection build lisa fl --out bl", **options)
    return DataConfig(source="detection", root=str(out), train="train", val=None, test="test")


def test_the_same_build_is_the_same_record_and_another_seed_is_a_change(lisa, tmp_path):
    data = _build(lisa, tmp_path / "bl")
    recorded = split_record(data)
    assert recorded["command"] == "deepvision detection build lisa fl --out bl"
    assert set(recorded["splits"]) == {"train", "test"} and recorded["splits"]["test"]["images"] == 3
    assert len(recorded["splits"]["train"]["sha256"]) == 64
    _build(lisa, tmp_path / "bl")  # rebuilt as it was: the same files
    assert split_record_change(recorded, data) is None
    _build(lisa, tmp_path / "bl", seed=7)
    role, old, new = split_record_change(recorded, data)
    images, sha = recorded["splits"]["train"]["images"], recorded["splits"]["train"]["sha256"]
    assert role == "train" and old == f"split 'train', {images} images, sha256 {sha[:12]}"
    assert new.startswith(f"split 'train', {images} images, sha256 ") and new != old
    assert rebuild_hint(recorded) == "rebuild it as it was (deepvision detection build lisa fl --out bl)"


def test_a_split_that_appears_since_a_hand_edit_and_another_split_named_are_changes(lisa, tmp_path):
    data = _build(lisa, tmp_path / "bl", test_fraction=0)  # no test split: the run was tested on nothing
    recorded = split_record(data)
    assert recorded["splits"]["test"] == {"split": "test", "sha256": None, "images": None}
    meta_path, path = tmp_path / "bl" / "dataset.json", tmp_path / "bl" / "test.json"
    meta, doc = json.loads(meta_path.read_text()), json.loads((tmp_path / "bl" / "train.json").read_text())
    path.write_text(json.dumps({**doc, "split": "test", "images": doc["images"][:2]}))  # train.json as it was
    meta_path.write_text(json.dumps({**meta, "splits": ["train", "test"]}))
    now = split_record(data)["splits"]["test"]["sha256"][:12]
    assert split_record_change(recorded, data) == ("test", "no split 'test'", f"split 'test', sha256 {now}")
    _build(lisa, tmp_path / "bl")
    recorded = split_record(data)
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "images": doc["images"][:1]}))  # a hand edit, the count left as it was
    assert split_record_change(recorded, data)[0] == "test"
    path.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    assert split_record_change(recorded, data) is None
    renamed = DataConfig(source="detection", root=data.root, train="train", val=None, test="train")
    assert split_record_change(recorded, renamed)[0] == "test"


def test_nothing_recorded_is_compared_with_nothing(lisa, tmp_path):
    data = _build(lisa, tmp_path / "bl")
    for recorded in (None, {}, {"splits": "x"}):
        assert split_record_change(recorded, data) is None
    assert rebuild_hint(None) == "rebuild it as it was"
    assert rebuild_hint({"command": "x\x1b[2J"}) == "rebuild it as it was (x\\x1b[2J)"
