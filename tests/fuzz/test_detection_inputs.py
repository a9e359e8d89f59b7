"""Detection builder inputs: YOLO names that are not plain text, YOLO class ids outside the names, and
inputs that are FIFOs (named as such, never opened, never reported as missing)."""

from __future__ import annotations

import hashlib
import os

import pytest
from PIL import Image


def _yolo(root, label_lines, names="[a]"):
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    Image.new("RGB", (20, 10)).save(root / "images" / "train" / "p.jpg")
    (root / "labels" / "train" / "p.txt").write_text("".join(f"{line}\n" for line in label_lines))
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nnames: {names}\n")
    return root / "data.yaml"


def _digest(root):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("names", "message"), [
    ("[[a, b]]", r"names entry 0 is \['a', 'b'\]; each class name must be text"),
    ("[a, {x: 1}]", r"names entry 1 is \{'x': 1\}; each class name must be text"),
    ("{0: [a]}", r"names entry 0 is \['a'\]; each class name must be text"),
    ("[a, null]", r"names entry 1 is None"),
    ("[a, 1.5]", r"names entry 1 is 1.5"),
    ('["a\\nb"]', r"class name 'a\\nb' is empty or holds a control character"),
    ('[""]', r"class name '' is empty"),
])
def test_yolo_names_must_be_text(tmp_path, run_cli, names, message):
    data = _yolo(tmp_path / "ds", ["0 0.5 0.5 0.5 0.5"], names)
    before = _digest(tmp_path / "ds")
    code, _, err = run_cli("detection", "build", "yolo", data, "--out", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1, err
    assert __import__("re").search(message, err), err
    assert _digest(tmp_path / "ds") == before and not (tmp_path / "out").exists()


def test_yolo_names_given_as_a_list_are_the_class_names(tmp_path):
    from deepvision.datasets.detection.readers import read_yolo

    assert read_yolo(_yolo(tmp_path / "ds", ["1 0.5 0.5 0.5 0.5"], "[person, 7]")).classes == ["person", "7"]


@pytest.mark.parametrize("cls", ["-1", "1", "99"])
def test_a_yolo_class_id_outside_the_names_is_refused_or_dropped(tmp_path, run_cli, cls):
    from deepvision.data.detection.index import load_index

    data = _yolo(tmp_path / "ds", ["0 0.5 0.5 0.5 0.5", f"{cls} 0.5 0.5 0.2 0.2"])
    code, _, err = run_cli("detection", "build", "yolo", data, "--out", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1
    assert f"p.txt line 2: class index {cls} is not in names (0..0); repair with --fix clip" in err
    assert not (tmp_path / "out").exists()
    code, out, err = run_cli("detection", "build", "yolo", data, "--out", tmp_path / "out", "--fix", "drop")
    assert code == 0, err
    assert f"dropped 1 bad box(es) (--fix drop), first: {tmp_path / 'ds'}" in " ".join((out + err).split())
    (image,) = load_index(tmp_path / "out").splits["train"]
    assert image.labels.tolist() == [1]  # the good box stays


def test_a_built_index_is_read_bounded(tmp_path, run_cli):
    """The index a build wrote was read whole whatever its size: a sparse 2 GB train.json was read into
    memory before its first byte was parsed."""
    from deepvision.data.detection.index import load_index
    from deepvision.errors import UserError

    data = _yolo(tmp_path / "ds", ["0 0.5 0.5 0.5 0.5"])
    assert run_cli("detection", "build", "yolo", data, "--out", tmp_path / "out")[0] == 0
    os.truncate(tmp_path / "out" / "train.json", 2 * 10**9 + 1)
    with pytest.raises(UserError, match=r"train.json holds 2.0 GB, more than the 2.0 GB such a file may hold"):
        load_index(tmp_path / "out")


@pytest.mark.parametrize(("fmt", "name", "message"), [
    ("coco", "train.json", "annotation file {p} is a FIFO, not a regular file"),
    ("imglab", "training.xml", "annotation file {p} is a FIFO, not a regular file"),
    ("lisa", "allAnnotations.csv", "LISA annotations {p} is a FIFO, not a regular file"),
])
def test_a_fifo_input_is_named_as_such(tmp_path, run_cli, fmt, name, message):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    code, _, err = run_cli("detection", "build", fmt, fifo, "--out", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1 and message.format(p=fifo) in err, err


def test_a_fifo_voc_annotation_listed_by_a_split_is_named_as_such(tmp_path, run_cli):
    assert run_cli("detection", "fake", "--format", "voc", "--out", tmp_path / "v1", "--images", "8")[0] == 0
    xml = tmp_path / "v1" / "Annotations" / "2008_000003.xml"
    xml.unlink()
    os.mkfifo(xml)
    code, out, err = run_cli("detection", "build", "voc", tmp_path / "v1", "--out", tmp_path / "v1b")
    assert (code, out) == (2, "")
    assert err.splitlines() == ["deepvision detection build: error: "
                                f"{tmp_path / 'v1' / 'ImageSets' / 'Main' / 'train.txt'} "
                                f"lists '2008_000003' but {xml} is a FIFO, not a regular file"]
    assert not (tmp_path / "v1b").exists()


def test_a_fifo_class_list_is_named_as_such(tmp_path, run_cli):
    data = _yolo(tmp_path / "ds", ["0 0.5 0.5 0.5 0.5"])
    os.mkfifo(tmp_path / "classes.txt")
    code, _, err = run_cli("detection", "build", "yolo", data, "--out", tmp_path / "out",
                           "--classes", tmp_path / "classes.txt")
    assert code == 2 and f"class list file {tmp_path / 'classes.txt'} is a FIFO, not a regular file" in err
    code, _, err = run_cli("detection", "build", "yolo", data, "--out", tmp_path / "out",
                           "--classes", tmp_path / "none.txt")
    assert code == 2 and f"class list file {str(tmp_path / 'none.txt')!r} not found;" in err


def test_no_image_left_names_the_first_skipped_image_and_the_count(tmp_path, run_cli):
    (tmp_path / "lisa").mkdir()
    (tmp_path / "lisa" / "a.png").write_bytes(b"not an image")
    (tmp_path / "lisa" / "b.png").write_bytes(b"\x89PNG junk")
    csv_path = tmp_path / "lisa" / "allAnnotations.csv"
    csv_path.write_text("Filename;Annotation tag;Upper left corner X;Upper left corner Y;Lower right corner X;"
                        "Lower right corner Y;Occluded,On another road\n"
                        "a.png;stop;1;2;30;40;0,0\nb.png;stop;1;2;30;40;0,0\n")
    code, out, err = run_cli("detection", "build", "lisa", csv_path, "--classes", "stop", "--out", tmp_path / "out")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert "no image is left to write: skipped 2 image(s) whose image file is unreadable, first: " in err, err
    assert "a.png" in err and "above" not in err
    assert not (tmp_path / "out").exists()
