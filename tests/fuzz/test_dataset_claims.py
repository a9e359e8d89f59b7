"""Detection annotations that claim what the files do not hold: split folders and lists outside the dataset,
duplicate class names or image ids, declared image sizes that are not the image's, yes/no fields that are
neither. Each is one line (or repaired with --fix where a repair exists)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from deepvision.errors import UserError


def _yolo(root, train="images/train", names="[a]"):
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    Image.new("RGB", (20, 10)).save(root / "images" / "train" / "p.jpg")
    (root / "labels" / "train" / "p.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "data.yaml").write_text(f"path: {root}\ntrain: {train}\nnames: {names}\n")
    return root / "data.yaml"


def test_yolo_split_folders_and_lists_stay_inside_the_dataset(tmp_path):
    from deepvision.datasets.detection.readers import read_yolo

    (tmp_path / "outside" / "images").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "outside" / "images" / "x.jpg")
    data = _yolo(tmp_path / "ds", train="../outside/images")
    with pytest.raises(UserError, match=r"image path '../outside/images' is outside the dataset folder"):
        read_yolo(data)
    (tmp_path / "ds" / "list.txt").write_text("../outside/images/x.jpg\n")
    data.write_text(f"path: {tmp_path / 'ds'}\ntrain: list.txt\nnames: [a]\n")
    with pytest.raises(UserError, match=r"list\.txt: image path '../outside/images/x.jpg' is outside the dataset"):
        read_yolo(data)
    (tmp_path / "ds" / "list.txt").write_text("images/train/p.jpg\n")  # inside: read
    (record,) = read_yolo(data).splits["train"]
    assert record.file.endswith("p.jpg") and len(record.boxes) == 1
    # an absolute split folder or list line is the user's own layout, taken as written (Ultralytics' habit)
    data.write_text(f"path: {tmp_path / 'ds'}\ntrain: {tmp_path / 'ds' / 'images' / 'train'}\nnames: [a]\n")
    (record,) = read_yolo(data).splits["train"]
    assert record.file.endswith("p.jpg") and len(record.boxes) == 1


def test_duplicate_class_names_are_refused(tmp_path, run_cli):
    data = _yolo(tmp_path / "ds", names="[disc, disc, triangle]")
    code, _, err = run_cli("detection", "build", "yolo", data, "--out", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1 and "class name 'disc' is given twice" in err, err
    assert not (tmp_path / "out").exists()


def test_mxnet_labels_must_be_unique_but_synset_twins_are_told_apart(tmp_path):
    from deepvision.interop.mxnet_import import read_labels

    (tmp_path / "l.txt").write_text("a\na\n")
    with pytest.raises(UserError, match="class name 'a' is given twice"):
        read_labels(tmp_path / "l.txt", 2)
    (tmp_path / "s.txt").write_text("n02012849 crane\nn03126707 crane\nn01440764 tench, Tinca tinca\n")
    assert read_labels(tmp_path / "s.txt", 3) == ["crane (n02012849)", "crane (n03126707)", "tench, Tinca tinca"]


def test_hdf5_label_names_must_be_unique(tmp_path):
    pytest.importorskip("h5py")
    import numpy as np

    from deepvision.data.hdf5 import HDF5Dataset
    from deepvision.datasets.hdf5 import HDF5DatasetWriter

    path = tmp_path / "f.h5"
    writer = HDF5DatasetWriter(path, (2, 3), "features", buf_size=2)
    writer.store_class_labels(["a", "a"])
    writer.add(np.zeros((2, 3), np.float32), [0, 1])
    writer.close()
    with pytest.raises(UserError, match="given twice"):
        HDF5Dataset(path)


def _voc(root, width, height, difficult="0"):
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    Image.new("RGB", (64, 64)).save(root / "JPEGImages" / "p.jpg")
    (root / "Annotations" / "p.xml").write_text(
        f"<annotation><filename>p.jpg</filename><size><width>{width}</width><height>{height}</height>"
        f"<depth>3</depth></size><object><name>a</name><difficult>{difficult}</difficult><bndbox><xmin>5</xmin>"
        f"<ymin>5</ymin><xmax>30</xmax><ymax>30</ymax></bndbox></object></annotation>")
    return root


def test_a_declared_voc_size_that_is_not_the_images_is_refused_or_repaired(tmp_path, run_cli):
    from deepvision.data.detection.index import load_index

    root = _voc(tmp_path / "voc", 45000000, 64)
    code, _, err = run_cli("detection", "build", "voc", root, "--out", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1, err
    assert "but the image is 64x64" in err  # the CLI shortens the long path in the middle
    assert not (tmp_path / "out").exists()
    code, out, err = run_cli("detection", "build", "voc", root, "--out", tmp_path / "out", "--fix", "clip",
                             "--test-fraction", "0")
    assert code == 0, err
    (entry,) = load_index(tmp_path / "out").splits["train"]
    assert (entry.width, entry.height) == (64, 64)


def _coco(root, images):
    root.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48)).save(root / "p.jpg")
    data = {"images": images, "categories": [{"id": 1, "name": "a"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 20, 20]}]}
    (root / "train.json").write_text(json.dumps(data))
    return root / "train.json"


def test_coco_duplicate_image_ids_and_false_sizes(tmp_path):
    from deepvision.datasets.detection.build import build_dataset
    from deepvision.datasets.detection.readers import read_coco

    twice = _coco(tmp_path / "c1", [{"id": 1, "file_name": "p.jpg", "width": 64, "height": 48},
                                    {"id": 1, "file_name": "p.jpg", "width": 64, "height": 48}])
    with pytest.raises(UserError, match="image id 1 is given twice in 'images'"):
        read_coco({"train": twice})
    huge = _coco(tmp_path / "c2", [{"id": 1, "file_name": "p.jpg", "width": 1e30, "height": 48}])
    ann = read_coco({"train": huge})  # 1e30 is no integer size: the image's own is used
    build_dataset(ann, tmp_path / "o2")
    for width in (6400, 10**30):
        wrong = _coco(tmp_path / f"c{width}", [{"id": 1, "file_name": "p.jpg", "width": width, "height": 48}])
        with pytest.raises(UserError, match=f"give its size as {width}x48 but the image is 64x48"):
            build_dataset(read_coco({"train": wrong}), tmp_path / "o3")


@pytest.mark.parametrize(("value", "difficult"), [("0", False), ("1", True), ("true", True), ("False", False)])
def test_voc_difficult_accepts_only_yes_or_no(tmp_path, value, difficult):
    from deepvision.datasets.detection.readers import read_voc

    (record,) = read_voc(_voc(tmp_path / "voc", 64, 64, value)).splits["all"]
    assert record.boxes[0].difficult is difficult


def test_voc_difficult_maybe_and_imglab_ignore_maybe_are_refused(tmp_path):
    from deepvision.datasets.detection.readers import read_imglab, read_voc

    with pytest.raises(UserError, match=r"<difficult>: 'maybe' is not 0, 1, true or false"):
        read_voc(_voc(tmp_path / "voc", 64, 64, "maybe"))
    Image.new("RGB", (32, 32)).save(tmp_path / "p.jpg")
    (tmp_path / "t.xml").write_text("<dataset><images><image file='p.jpg'><box top='1' left='1' width='9' "
                                    "height='9' ignore='maybe'><label>a</label></box></image></images></dataset>")
    with pytest.raises(UserError, match=r"<box ignore>: 'maybe' is not 0, 1, true or false"):
        read_imglab({"train": tmp_path / "t.xml"})
