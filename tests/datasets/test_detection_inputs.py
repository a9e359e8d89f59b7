"""Detection builds on datasets as they are published (LabelImg layouts) and on hostile annotation files:
outputs never replace inputs, annotation paths stay in their dataset, special files are never opened,
non-finite boxes and malformed class ids or names are refused or repaired."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepvision.data.detection import load_index
from deepvision.datasets.detection import build_dataset
from deepvision.datasets.detection.build import build_from_files, read_annotations
from deepvision.errors import UserError

LABELIMG = """<annotation>
\t<folder>images</folder>
\t<filename>{name}</filename>
\t<path>{path}</path>
\t<source><database>Unknown</database></source>
\t<size><width>64</width><height>48</height><depth>3</depth></size>
\t<segmented>0</segmented>
{objects}</annotation>
"""
OBJECT = """\t<object><name>{label}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>
\t\t<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>
"""


def _labelimg(root: Path, n: int = 4, photos: Path | None = None, windows: bool = False,
              boxes: list[tuple] | None = None, filename: str | None = None) -> Path:
    """A dataset as commonly published: annotations/*.xml beside images/*.jpg, <path> from the author's disk."""
    (root / "annotations").mkdir(parents=True)
    photos = photos or root / "images"
    photos.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        name = f"photo_{i}.jpg"
        Image.new("RGB", (64, 48), (i * 40, 90, 30)).save(photos / name)
        author = f"C:\\Users\\author\\dataset\\images\\{name}" if windows else f"/home/author/dataset/images/{name}"
        objects = "".join(OBJECT.format(label=b[4], x1=b[0], y1=b[1], x2=b[2], y2=b[3])
                          for b in (boxes or [(11, 6, 30, 40, "cat" if i % 2 else "dog")]))
        (root / "annotations" / f"photo_{i}.xml").write_text(
            LABELIMG.format(name=filename if filename is not None else name, path=author, objects=objects))
    return root


@pytest.mark.parametrize("point_at", ["dataset", "annotations"])
def test_labelimg_layout_found_from_either_folder(tmp_path, point_at):
    root = _labelimg(tmp_path / "pets")
    source = root if point_at == "dataset" else root / "annotations"
    report = build_from_files("voc", [source], tmp_path / "built", test_fraction=0)
    assert report.counts["train"].images == 4 and report.counts["train"].boxes == 4
    index = load_index(tmp_path / "built")
    files = sorted(img.file.resolve() for img in index.splits["train"])
    assert files == sorted((root / "images").resolve().glob("*.jpg"))
    first = next(img for img in index.splits["train"] if img.file.name == "photo_0.jpg")
    assert np.allclose(first.pixel_boxes(), [[10, 5, 30, 40]])  # VOC corners are 1-based
    assert index.classes == ["cat", "dog"]


def test_labelimg_file_name_from_windows_path_and_images_option(tmp_path):
    # <filename> empty: the name comes from the author's Windows <path>; photos live elsewhere: --images
    root = _labelimg(tmp_path / "ds", n=2, photos=tmp_path / "elsewhere", windows=True, filename="")
    with pytest.raises(UserError) as err:
        build_from_files("voc", [root], tmp_path / "built", test_fraction=0)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("read 2 XML file(s) in ")
    assert "looked for photo_0.jpg in " + str(root / "annotations") in msg
    assert str(root / "images") in msg and "--images DIR" in msg
    report = build_from_files("voc", [root], tmp_path / "built", test_fraction=0,
                              images_dir=str(tmp_path / "elsewhere"))
    assert report.counts["train"].images == 2


def test_labelimg_cli_and_missing_photo_line(tmp_path, run_cli):
    root = _labelimg(tmp_path / "ds", n=3)
    (root / "images" / "photo_1.jpg").unlink()
    code, out, err = run_cli("detection", "build", "voc", root / "annotations", "--out", tmp_path / "b",
                             "--test-fraction", "0")
    assert code == 0, err
    assert "skipped 1 of 3 image(s) whose image file is missing; looked for photo_1.jpg in" in " ".join(
        out.split())
    assert "train        2 images" in out
    code, _, err = run_cli("detection", "build", "voc", root, "--out", tmp_path / "c", "--images", tmp_path / "no")
    assert code == 2 and err.count("\n") == 1 and "--images: folder not found" in err


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_out_never_writes_over_inputs(tmp_path, run_cli):
    from deepvision.datasets.detection import make_fake

    fake = make_fake(tmp_path / "coco", "coco", images=6, size=64, seed=0)
    a = tmp_path / "A"
    a.mkdir()
    for split, src in (("train", "instances_train2017.json"), ("test", "instances_val2017.json")):
        doc = json.loads((fake.out / "annotations" / src).read_text())
        folder = "train2017" if split == "train" else "val2017"
        for img in doc["images"]:
            img["file_name"] = f"{folder}/{img['file_name']}"
        (a / f"{split}.json").write_text(json.dumps(doc))
    before = _snapshot(a)
    for extra in ([], ["--images", fake.out]):
        code, _, err = run_cli("detection", "build", "coco", f"train={a}/train.json", f"test={a}/test.json",
                               "--out", a, *extra)
        assert code == 2 and err.count("\n") == 1 and "holds the input" in err
        assert _snapshot(a) == before
    code, out, err = run_cli("detection", "build", "coco", f"train={a}/train.json", f"test={a}/test.json",
                             "--out", a / "built", "--images", fake.out)
    assert code == 0 and "train        4 images" in out and _snapshot(a / "built")
    # YOLO: the folder holding classes.txt
    yolo = make_fake(tmp_path / "yolo", "yolo", images=4, size=64, seed=0).out
    (yolo / "data.yaml").unlink()
    (yolo / "classes.txt").write_text("disc\nsquare\ntriangle\n")
    before = _snapshot(yolo)
    code, _, err = run_cli("detection", "build", "yolo", yolo, "--out", yolo)
    assert code == 2 and err.count("\n") == 1 and "is an input folder" in err
    assert _snapshot(yolo) == before


def test_annotation_paths_stay_in_the_dataset(tmp_path):
    root = _labelimg(tmp_path / "ds", n=2, filename="../../../../etc/passwd")
    with pytest.raises(UserError, match=r"image path '../../../../etc/passwd' is outside the dataset folder"):
        read_annotations("voc", [str(root)])
    doc = {"images": [{"id": 1, "file_name": "/etc/passwd", "width": 10, "height": 10}], "annotations": [],
           "categories": [{"id": 1, "name": "a"}]}
    (tmp_path / "train.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match="'/etc/passwd' is outside"):
        read_annotations("coco", [f"train={tmp_path / 'train.json'}"])
    (tmp_path / "bad.json").write_text(json.dumps({"images": 5, "annotations": [], "categories": []}))
    with pytest.raises(UserError, match="'images' must be a list of objects"):
        read_annotations("coco", [f"train={tmp_path / 'bad.json'}"])
    (tmp_path / "training.xml").write_text("<dataset><images><image file='../x/a.jpg'><box top='1' left='1' "
                                           "width='5' height='5'><label>a</label></box></image></images></dataset>")
    with pytest.raises(UserError, match="outside the dataset folder"):
        read_annotations("imglab", [str(tmp_path / "training.xml")])


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_named_by_an_annotation_is_refused_not_opened(tmp_path):
    (tmp_path / "ds").mkdir()
    os.mkfifo(tmp_path / "ds" / "a.jpg")  # opening it for reading would block forever
    (tmp_path / "ds" / "training.xml").write_text(
        "<dataset><images><image file='a.jpg'><box top='1' left='1' width='5' height='5'><label>a</label></box>"
        "</image></images></dataset>")
    ann = read_annotations("imglab", [str(tmp_path / "ds" / "training.xml")])
    with pytest.raises(UserError, match=r"a\.jpg is a FIFO, not an image file"):
        build_dataset(ann, tmp_path / "out")
    data = _yolo(tmp_path, "0 0.5 0.5 0.2 0.2")
    label = data.parent / "labels" / "train" / "a.txt"
    label.unlink()
    os.mkfifo(label)
    with pytest.raises(UserError, match="a.txt is a FIFO, not a text file"):
        read_annotations("yolo", [str(data)])


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_non_finite_boxes_refused_or_dropped(tmp_path, bad):
    root = _labelimg(tmp_path / "ds", n=2, boxes=[(bad, 6, 30, 40, "cat"), (2, 2, 20, 20, "dog")])
    with pytest.raises(UserError, match="2 bad box.*not a finite number.*--fix"):
        build_from_files("voc", [root], tmp_path / "refused", test_fraction=0)
    assert not (tmp_path / "refused").exists()
    for fix in ("drop", "clip"):
        report = build_from_files("voc", [root], tmp_path / fix, test_fraction=0, fix=fix)
        assert report.counts["train"].boxes == 2
        boxes = np.concatenate([img.boxes for img in load_index(tmp_path / fix).splits["train"]])
        assert np.isfinite(boxes).all() and np.allclose(boxes * [64, 48, 64, 48], [[1, 1, 20, 20]] * 2)
        assert "NaN" not in (tmp_path / fix / "train.json").read_text()


def _yolo(tmp_path: Path, line: str, names: str = "[car, sign]") -> Path:
    root = tmp_path / "y"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    Image.new("RGB", (40, 20)).save(root / "images" / "train" / "a.jpg")
    (root / "labels" / "train" / "a.txt").write_text(line + "\n")
    (root / "data.yaml").write_text(f"path: .\ntrain: images/train\nnames: {names}\n")
    return root / "data.yaml"


@pytest.mark.parametrize("cls", ["1.5", "nan", "inf", "x"])
def test_yolo_class_must_be_an_integer(tmp_path, cls):
    with pytest.raises(UserError, match=f"a.txt line 1: class '{cls}' is not"):
        read_annotations("yolo", [str(_yolo(tmp_path, f"{cls} 0.5 0.5 0.2 0.2"))])


def test_yolo_nan_coordinates_and_integral_class(tmp_path):
    ann = read_annotations("yolo", [str(_yolo(tmp_path, "1.0 nan 0.5 0.2 0.2\n0 0.5 0.5 0.5 0.5"))])
    assert [b.label for b in ann.splits["train"][0].boxes] == ["sign", "car"]
    report = build_dataset(ann, tmp_path / "out", fix="drop")
    assert report.counts["train"].boxes == 1
    assert np.allclose(load_index(tmp_path / "out").splits["train"][0].pixel_boxes(), [[10, 5, 30, 15]])


def test_class_names_with_control_characters_refused(tmp_path):
    with pytest.raises(UserError, match=r"class name 'si\\ngn' is empty or holds a control character"):
        build_dataset(read_annotations("yolo", [str(_yolo(tmp_path, "0 0.5 0.5 0.2 0.2", '[car, "si\\ngn"]'))]),
                      tmp_path / "out")
    root = _labelimg(tmp_path / "ds", n=1, boxes=[(2, 2, 20, 20, "")])
    with pytest.raises(UserError, match=r"first in the boxes of .*photo_0.jpg\): class name '' is empty"):
        build_from_files("voc", [root], tmp_path / "out2", test_fraction=0)


def test_an_image_linked_from_outside_the_dataset_is_refused(tmp_path):
    root = _labelimg(tmp_path / "ds", n=2)
    outside = tmp_path / "outside.jpg"
    (root / "images" / "photo_1.jpg").rename(outside)
    (root / "images" / "photo_1.jpg").symlink_to(outside)
    with pytest.raises(UserError) as exc:
        read_annotations("voc", [str(root)])
    link = root / "images" / "photo_1.jpg"
    assert f"{link} is a link to {outside.resolve()}, outside the dataset folder" in str(exc.value)
    # a link within the dataset (images/ -> JPEGImages/) is followed as before
    (root / "JPEGImages").mkdir()
    outside.rename(root / "JPEGImages" / "p1.jpg")
    (root / "images" / "photo_1.jpg").unlink()
    (root / "images" / "photo_1.jpg").symlink_to(root / "JPEGImages" / "p1.jpg")
    ann = read_annotations("voc", [str(root)])
    files = sorted(Path(r.file).name for records in ann.splits.values() for r in records)
    assert files == ["p1.jpg", "photo_0.jpg"]

@pytest.mark.parametrize(("change", "message"), [
    ({"iscrowd": "maybe"}, "annotation 1: iscrowd 'maybe' is not 0 or 1"),
    ({"iscrowd": 2}, "annotation 1: iscrowd '2' is not 0 or 1"),
    ({"iscrowd": True}, "annotation 1: iscrowd 'True' is not 0 or 1"),
    ({"bbox": ["13", 19, 25, 23]}, "annotation 1: bbox values must be JSON numbers"),
])
def test_coco_flags_and_coordinates_are_exact(tmp_path, change, message):
    """COCO iscrowd is 0 or 1 (as VOC <difficult> and imglab ignore are yes/no), bbox values are numbers."""
    Image.new("RGB", (64, 48)).save(tmp_path / "a.jpg")
    ann = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [13, 19, 25, 23], "iscrowd": 1}
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
           "annotations": [{**ann, **change}], "categories": [{"id": 1, "name": "a"}]}
    (tmp_path / "train.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match=message):
        read_annotations("coco", [f"train={tmp_path / 'train.json'}"])
    doc["annotations"] = [ann]
    (tmp_path / "train.json").write_text(json.dumps(doc))
    boxes = read_annotations("coco", [f"train={tmp_path / 'train.json'}"]).splits["train"][0].boxes
    assert [(b.xmin, b.ymax, b.difficult) for b in boxes] == [(13.0, 42.0, True)]


def test_voc_coordinates_with_digit_separators_are_refused(tmp_path):
    root = _labelimg(tmp_path / "ds", n=1, boxes=[(11, 6, "3_8", 40, "cat")])
    with pytest.raises(UserError, match="'3_8' is not a number"):
        read_annotations("voc", [str(root)])


@pytest.mark.parametrize("fmt", ["voc", "coco"])
def test_an_annotation_file_is_bounded_by_its_size_before_reading(tmp_path, fmt):
    """A sparse 8 GB annotation file is refused from its size (it was read whole: MemoryError)."""
    if fmt == "voc":
        root = _labelimg(tmp_path / "ds", n=1)
        target, source = root / "annotations" / "photo_0.xml", str(root)
    else:
        target = tmp_path / "train.json"
        source = f"train={target}"
    with open(target, "wb") as f:
        f.truncate(8 * 2**30)
    with pytest.raises(UserError, match=r"holds 8.6 GB, more than the 2.0 GB such a file may hold"):
        read_annotations(fmt, [source])


def test_coco_annotation_ids_are_unique(tmp_path):
    """pycocotools indexes annotations by id: a second annotation with the same id would hide the first."""
    Image.new("RGB", (64, 48)).save(tmp_path / "a.jpg")
    ann = {"id": 7, "image_id": 1, "category_id": 1, "bbox": [13, 19, 25, 23], "iscrowd": 0}
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
           "annotations": [ann, {**ann, "bbox": [1, 2, 3, 4]}], "categories": [{"id": 1, "name": "a"}]}
    (tmp_path / "train.json").write_text(json.dumps(doc))
    with pytest.raises(UserError) as exc:
        read_annotations("coco", [f"train={tmp_path / 'train.json'}"])
    assert str(exc.value) == (f"{tmp_path / 'train.json'}: annotation id 7 is given twice in 'annotations' (image 1 "
                              f"bbox [13, 19, 25, 23] and image 1 bbox [1, 2, 3, 4]); each annotation needs its own id")
    doc["annotations"][1]["id"] = 8
    (tmp_path / "train.json").write_text(json.dumps(doc))
    boxes = read_annotations("coco", [f"train={tmp_path / 'train.json'}"]).splits["train"][0].boxes
    assert [(b.xmin, b.ymin, b.xmax, b.ymax) for b in boxes] == [(13, 19, 38, 42), (1, 2, 4, 6)]


def test_voc_object_with_two_boxes_is_refused(tmp_path):
    root = _labelimg(tmp_path / "ds", n=1)
    xml = root / "annotations" / "photo_0.xml"
    second = "<bndbox><xmin>2</xmin><ymin>2</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>"
    xml.write_text(xml.read_text().replace("</bndbox></object>", "</bndbox>" + second, 1))
    with pytest.raises(UserError) as exc:
        read_annotations("voc", [str(root)])
    assert str(exc.value) == (f"{xml}: object 'dog' has 2 <bndbox> elements; give each box its own "
                              f"<object>")


def test_a_box_with_two_labels_is_refused(tmp_path):
    """A VOC object with two <name>s (an imglab box with two <label>s) was built under the first."""
    root = _labelimg(tmp_path / "ds", n=1)
    xml = root / "annotations" / "photo_0.xml"
    xml.write_text(xml.read_text().replace("<name>dog</name>", "<name>dog</name><name>cat</name>", 1))
    with pytest.raises(UserError) as exc:
        read_annotations("voc", [str(root)])
    assert str(exc.value) == f"{xml}: object: 2 <name> elements in one box ('dog' and 'cat'); give each box one <name>"
    for tag in ("difficult", "xmin"):  # any field given twice: the first was taken
        root = _labelimg(tmp_path / tag, n=1)
        xml = root / "annotations" / "photo_0.xml"
        text = xml.read_text()
        start = text.index(f"<{tag}>")
        element = text[start:text.index(f"</{tag}>", start) + len(tag) + 3]
        xml.write_text(text.replace(element, element * 2, 1))
        with pytest.raises(UserError, match=f"object 'dog': 2 <{tag}> elements in one box"):
            read_annotations("voc", [str(root)])
    Image.new("RGB", (40, 30)).save(tmp_path / "a.jpg")
    box = "<box top='2' left='3' width='10' height='8'{}</box>"
    for body, message in ((box.format("><label>x</label><label>y</label>"), "2 <label> elements in one box"),
                          (box.replace("top='2' ", "").format(">"), "the box has no top")):
        (tmp_path / "t.xml").write_text(f"<dataset><images><image file='a.jpg'>{body}</image></images></dataset>")
        with pytest.raises(UserError, match=message):
            read_annotations("imglab", [f"train={tmp_path / 't.xml'}"])


@pytest.mark.parametrize(("tag", "second", "values"), [
    ("filename", "other.jpg", ("photo_0.jpg", "other.jpg")),
    ("path", "/home/a/other.jpg", ("/home/author/dataset/images/photo_0.jpg", "/home/a/other.jpg")),
    ("folder", "other", ("images", "other")),
    ("size", "<width>32</width><height>24</height><depth>3</depth>",
     ("width=64 height=48 depth=3", "width=32 height=24 depth=3")),
    ("width", "32", ("64", "32")), ("height", "24", ("48", "24")), ("depth", "1", ("3", "1")),
], ids=["filename", "path", "folder", "size", "width", "height", "depth"])
def test_a_voc_annotation_field_given_twice_is_refused(tmp_path, run_cli, tag, second, values):
    """Two <filename>s (<path>s, <folder>s, <size>s, or two <width>s in one <size>) were read as the first: the
    boxes went to one of two named photos without a word. One line names both values; nothing is written."""
    root = _labelimg(tmp_path / "ds", n=2)
    Image.new("RGB", (32, 24)).save(root / "images" / "other.jpg")
    xml = root / "annotations" / "photo_0.xml"
    text = xml.read_text()
    end = text.index(f"</{tag}>") + len(tag) + 3
    xml.write_text(f"{text[:end]}<{tag}>{second}</{tag}>{text[end:]}")
    before = xml.read_bytes()
    code, _, err = run_cli("detection", "build", "voc", root, "--out", tmp_path / "built")
    scope = "<size>" if tag in ("width", "height", "depth") else "annotation"
    assert code == 2 and err.count("\n") == 1, err
    assert (f"{xml}: 2 <{tag}> elements in one {scope} ({values[0]!r} and {values[1]!r}); give each {scope} one "
            f"<{tag}>") in err, err
    assert xml.read_bytes() == before and not (tmp_path / "built").exists()


def _coco_doc() -> dict:
    ann = {"image_id": 1, "category_id": 1, "bbox": [13, 19, 25, 23], "iscrowd": 0}
    return {"images": [{"id": i, "file_name": f"{n}.jpg", "width": 64, "height": 48} for i, n in ((1, "a"), (2, "b"))],
            "annotations": [{**ann, "id": 1}, {**ann, "id": 2, "image_id": 2}],
            "categories": [{"id": 1, "name": "disc"}, {"id": 2, "name": "square"}]}


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["categories"].append({"id": 1, "name": "zzz"}),
     "category id 1 is given twice in 'categories' ('disc' and 'zzz'); give each category its own id"),
    (lambda d: d["categories"].append({"id": 1, "name": "disc"}),
     "category id 1 is given twice in 'categories' ('disc' and 'disc'); give each category its own id"),
    (lambda d: d["categories"].append({"id": 9, "name": "disc"}),
     "category name 'disc' is given twice in 'categories' (ids 1 and 9); give each class one category"),
    (lambda d: d["images"][1].update(id=1),
     "image id 1 is given twice in 'images' ('a.jpg' and 'b.jpg'); each image needs its own id"),
    (lambda d: d["images"][1].update(file_name="a.jpg"),
     "file_name 'a.jpg' is given twice in 'images' (ids 1 and 2); give each image one entry"),
    (lambda d: d["annotations"][1].update(id=1), "annotation id 1 is given twice in 'annotations' (image 1 bbox "
     "[13, 19, 25, 23] and image 2 bbox [13, 19, 25, 23]); each annotation needs its own id"),
], ids=["category-id", "category-id-same-name", "category-name", "image-id", "file-name", "annotation-id"])
def test_a_coco_entry_given_twice_in_one_file_is_named_with_both(tmp_path, run_cli, change, message):
    """A category id given twice in one file was blamed on "another file"; a name, an image id, a file_name or
    an annotation id given twice in one file is one line naming the file and both entries."""
    for name in "ab":
        Image.new("RGB", (64, 48)).save(tmp_path / f"{name}.jpg")
    doc = _coco_doc()
    change(doc)
    (tmp_path / "train.json").write_text(json.dumps(doc))
    before = (tmp_path / "train.json").read_bytes()
    code, _, err = run_cli("detection", "build", "coco", f"train={tmp_path / 'train.json'}", "--out", tmp_path / "o")
    assert code == 2 and err.count("\n") == 1, err
    assert f"{tmp_path / 'train.json'}: {message}" in err, err
    assert (tmp_path / "train.json").read_bytes() == before and not (tmp_path / "o").exists()


def test_a_coco_category_differing_between_files_names_both(tmp_path):
    """One id with two names, or one name with two ids, in two files: refused naming both."""
    for name in "ab":
        Image.new("RGB", (64, 48)).save(tmp_path / f"{name}.jpg")
    (tmp_path / "train.json").write_text(json.dumps(_coco_doc()))
    for cats, message in (([{"id": 1, "name": "zzz"}], "category id 1 is 'zzz' here but 'disc' in another file"),
                          ([{"id": 7, "name": "disc"}], "category 'disc' has id 7 here but 1 in another file; give "
                                                        "a class one id in every file")):
        (tmp_path / "val.json").write_text(json.dumps({**_coco_doc(), "categories": cats, "annotations": []}))
        with pytest.raises(UserError) as exc:
            read_annotations("coco", [f"train={tmp_path / 'train.json'}", f"val={tmp_path / 'val.json'}"])
        assert str(exc.value) == f"{tmp_path / 'val.json'}: {message}"


IMGLAB = "<dataset><images>{}</images></dataset>"
BOX = "<box top='2' left='3' width='10' height='8'><label>{}</label></box>"


@pytest.mark.parametrize(("body", "message"), [
    (f"<image file='a.jpg'>{BOX.format('x')}<image file='b.jpg'>{BOX.format('y')}</image></image>",
     "<image file='b.jpg'> lies inside <image file='a.jpg'>; each <image> belongs directly under "
     "<dataset><images> (is an element left open?)"),
    (f"<image file='a.jpg'><box top='1' left='1' width='4' height='4'>{BOX.format('y')}</box></image>",
     "a <box> lies inside <box>; each <box> belongs directly under its <image> (is an element left open?)"),
    (f"<image file='a.jpg'><part>{BOX.format('y')}</part></image>",
     "a <box> lies inside <part>; each <box> belongs directly under its <image>"),
    (f"{BOX.format('y')}<image file='a.jpg'/>", "a <box> lies inside <images>; each <box> belongs directly under"),
    (f"<image file='a.jpg'>{BOX.format('x')}</image><image file='./a.jpg'>{BOX.format('y')}</image>",
     "<image file='a.jpg'> and <image file='./a.jpg'> name one photo; give each image one <image> element "
     "holding all its boxes"),
    ("<image file='a.jpg'><box top='2' left='3' width='10' height='8'><label>x</label><label>y</label></box>"
     "</image>", ", image a.jpg: 2 <label> elements in one box ('x' and 'y'); give each box one <label>"),
], ids=["nested-image", "box-in-box", "box-in-part", "box-in-images", "image-twice", "label-twice"])
def test_an_imglab_image_or_box_out_of_place_or_given_twice_is_refused(tmp_path, run_cli, body, message):
    """An <image> left open took the next photo's boxes too (the elements were read recursively); one photo
    listed twice or a box with two labels is refused the same way: one line, exit 2, nothing written."""
    Image.new("RGB", (40, 30)).save(tmp_path / "a.jpg")
    Image.new("RGB", (40, 30)).save(tmp_path / "b.jpg")
    (tmp_path / "t.xml").write_text(IMGLAB.format(body))
    code, _, err = run_cli("detection", "build", "imglab", f"train={tmp_path / 't.xml'}", "--out", tmp_path / "o")
    assert code == 2 and err.count("\n") == 1, err
    assert (message if message.startswith(",") else f": {message}") in err.split("t.xml", 1)[1], err
    assert not (tmp_path / "o").exists()


def test_imglab_duplicate_attributes_and_two_image_lists(tmp_path):
    """A box attribute given twice is refused by the XML parser itself; two <images> lists are one given twice."""
    Image.new("RGB", (40, 30)).save(tmp_path / "a.jpg")
    for text, message in (
            (IMGLAB.format("<image file='a.jpg'><box top='2' top='5' left='3' width='10' height='8'/></image>"),
             r"t.xml is not valid XML \(duplicate attribute"),
            ("<dataset><images><image file='a.jpg'/></images><images/></dataset>",
             r"t.xml: 2 <images> elements in one <dataset> \('<image>' and ''\); give each <dataset> one <images>")):
        (tmp_path / "t.xml").write_text(text)
        with pytest.raises(UserError, match=message):
            read_annotations("imglab", [f"train={tmp_path / 't.xml'}"])
    (tmp_path / "t.xml").write_text(IMGLAB.format(f"<image file='a.jpg'>{BOX.format('x')}</image>"))
    boxes = read_annotations("imglab", [f"train={tmp_path / 't.xml'}"]).splits["train"][0].boxes
    assert [(b.xmin, b.ymin, b.xmax, b.ymax, b.label) for b in boxes] == [(3, 2, 13, 10, "x")]


@pytest.mark.parametrize("name", [None, 5, ["disc"], " ", " a", ""])
def test_a_coco_category_name_must_be_a_plain_name(tmp_path, name):
    """A category named null, 5 or a list was built as the class 'None', '5' or "['disc']"; ' ' as a class ' '."""
    Image.new("RGB", (64, 48)).save(tmp_path / "a.jpg")
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "iscrowd": 0}],
           "categories": [{"id": 1, "name": name}]}
    (tmp_path / "train.json").write_text(json.dumps(doc))
    with pytest.raises(UserError) as exc:
        read_annotations("coco", [f"train={tmp_path / 'train.json'}"])
    assert str(exc.value) == (f"{tmp_path / 'train.json'}: category 1: 'name' must be a class name without "
                              f"surrounding spaces, got {json.dumps(name)}")
    del doc["categories"][0]["name"]
    (tmp_path / "train.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match=r"category 1 has no 'name'; give each category its class name"):
        read_annotations("coco", [f"train={tmp_path / 'train.json'}"])


def test_yolo_nc_must_match_the_names(tmp_path):
    data = _yolo(tmp_path, "1 0.5 0.5 0.2 0.2")
    data.write_text(data.read_text() + "nc: 7\n")
    with pytest.raises(UserError) as exc:
        read_annotations("yolo", [str(data)])
    assert str(exc.value) == f"{data}: nc is 7 but names lists 2 class(es); they must match"
    data.write_text(data.read_text().replace("nc: 7", "nc: two"))
    with pytest.raises(UserError, match="nc must be the number of classes, got 'two'"):
        read_annotations("yolo", [str(data)])
    data.write_text(data.read_text().replace("nc: two", "nc: 2"))
    ann = read_annotations("yolo", [str(data)])
    assert ann.classes == ["car", "sign"] and [b.label for b in ann.splits["train"][0].boxes] == ["sign"]


def test_yolo_text_files_are_named_when_not_utf8(tmp_path):
    data = _yolo(tmp_path, "0 0.5 0.5 0.2 0.2")
    label = data.parent / "labels" / "train" / "a.txt"
    label.write_bytes(b"0 0.5 0.5 0.2 0.2\xff\n")
    with pytest.raises(UserError) as exc:
        read_annotations("yolo", [str(data)])
    assert str(exc.value) == f"YOLO label file {label} is not UTF-8 text (byte 17)"


def test_out_inside_an_input_or_image_folder_is_refused(tmp_path, run_cli):
    from deepvision.datasets.detection import make_fake

    voc = make_fake(tmp_path / "voc", "voc", images=4, size=64, seed=0).out
    before = _snapshot(voc)
    for out in (voc / "JPEGImages" / "built", voc / "built"):
        code, _, err = run_cli("detection", "build", "voc", voc, "--out", out)
        assert code == 2 and err.count("\n") == 1, err
        assert f"--out {out} is inside the input folder ({voc}); write the dataset beside it, e.g. --out " \
               f"{tmp_path / 'voc-built'}" in " ".join(err.split())
    # COCO: the folder holding the images counts as an input even when only the JSON files are named
    coco = make_fake(tmp_path / "coco", "coco", images=4, size=64, seed=0)
    images = Path(read_annotations("coco", coco.build_args[1:]).splits["train"][0].file).parent
    code, _, err = run_cli("detection", "build", "coco", *coco.build_args[1:], "--out", images / "idx")
    assert code == 2 and f"is inside the input folder ({images})" in " ".join(err.split())
    assert not (images / "idx").exists() and _snapshot(voc) == before
    # show: the drawings never land among the photos
    code, _, err = run_cli("detection", "build", "voc", voc, "--out", tmp_path / "built")
    assert code == 0, err
    code, _, err = run_cli("detection", "show", tmp_path / "built", "--out", voc / "JPEGImages")
    assert code == 2 and err.count("\n") == 1
    assert f"--out {voc / 'JPEGImages'} is inside the image folder {voc / 'JPEGImages'}" in " ".join(err.split())
    assert _snapshot(voc) == before


def test_an_image_named_by_two_records_is_refused(tmp_path):
    # two LabelImg XML files naming one photo (an XML copied for another photo and never repointed)
    root = _labelimg(tmp_path / "li", n=3)
    copy = (root / "annotations" / "photo_0.xml").read_text().replace("<xmin>11<", "<xmin>2<")
    (root / "annotations" / "copy_of_2.xml").write_text(copy)
    with pytest.raises(UserError, match=r"photo_0\.jpg is named by two records, .*copy_of_2\.xml \(all\) and "
                                        r".*photo_0\.xml \(all\)"):
        build_from_files("voc", [root], tmp_path / "o1", test_fraction=0.5)
    # a VOC id in two ImageSets lists: the photo would be in train and in test
    (root / "annotations" / "copy_of_2.xml").unlink()
    sets = root / "ImageSets" / "Main"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("photo_0\nphoto_1\n")
    (sets / "test.txt").write_text("photo_2\nphoto_0\n")
    with pytest.raises(UserError, match=r"photo_0\.jpg is named by two records, .*photo_0\.xml \(listed in "
                                        r".*train\.txt\) \(train\) and .*photo_0\.xml \(listed in .*test\.txt\) "
                                        r"\(test\)"):
        build_from_files("voc", [root], tmp_path / "o2")
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()
    (sets / "test.txt").write_text("photo_2\n")
    report = build_from_files("voc", [root], tmp_path / "o3")
    assert report.counts["train"].images == 2 and report.counts["test"].images == 1


def test_an_image_hard_linked_into_two_splits_is_refused(tmp_path, run_cli):
    """A val image that is a hard link to a training image is one file under two names: compared by
    identity, it is refused as a symbolic link is."""
    from deepvision.datasets.detection import make_fake

    yolo = make_fake(tmp_path / "y", "yolo", images=6, size=64, seed=0)
    val = sorted((tmp_path / "y" / "images" / "val").glob("*.jpg"))[0]
    train = sorted((tmp_path / "y" / "images" / "train").glob("*.jpg"))[0]
    val.unlink()
    os.link(train, val)
    code, _, err = run_cli("detection", "build", *yolo.build_args, "--out", tmp_path / "built")
    assert code == 2 and err.count("\n") == 1, err
    assert (f"{val} (one file with {train}: a link) is named by two records, the folder {train.parent} (train) "
            f"and the folder {val.parent} (val)" in err), err
    assert not (tmp_path / "built").exists()


def test_yolo_reads_the_photos_of_a_linked_sub_folder_and_refuses_a_link_out_or_around(tmp_path, run_cli):
    """A linked folder under a split's image folder is followed, as Ultralytics' recursive glob does: its photos
    are read with their labels, never reported missing. A link leading outside the dataset folder, or back to a
    folder holding the split (a loop), is refused in one line naming it, nothing written."""
    from deepvision.datasets.detection import make_fake

    yolo = make_fake(tmp_path / "y", "yolo", images=8, size=64, seed=0)
    train, labels = yolo.out / "images" / "train", yolo.out / "labels" / "train"
    count = len(list(train.glob("*.jpg")))
    (yolo.out / "extra").mkdir()
    (labels / "more").mkdir()
    for photo in sorted(train.glob("*.jpg"))[:2]:  # moved into a folder beside images/, linked from train/
        photo.rename(yolo.out / "extra" / photo.name)
        (labels / f"{photo.stem}.txt").rename(labels / "more" / f"{photo.stem}.txt")
    os.symlink("../../extra", train / "more")
    code, out, err = run_cli("detection", "build", *yolo.build_args, "--out", tmp_path / "built")
    assert code == 0 and "missing" not in out + err, out + err
    assert json.loads((tmp_path / "built" / "dataset.json").read_text())["counts"]["train"]["images"] == count
    (tmp_path / "outside").mkdir()
    for link, target, why in ((train / "out", tmp_path / "outside", "outside the dataset folder"),
                              (train / "up", yolo.out / "images", "following it would never end")):
        (train / "more").unlink(missing_ok=True)
        os.symlink(target, link)
        before = _snapshot(yolo.out)
        code, _, err = run_cli("detection", "build", *yolo.build_args, "--out", tmp_path / "refused")
        assert code == 2 and err.count("\n") == 1 and f"{link} is a link to {target}" in err and why in err, err
        assert not (tmp_path / "refused").exists() and _snapshot(yolo.out) == before
        link.unlink()


def test_yolo_label_file_without_its_image_is_counted_and_refused_with_strict(tmp_path, run_cli):
    """A label file whose image is gone is a missing image, as in VOC and COCO: a warning naming it, and an
    error with --strict; its boxes are never left out without a word."""
    from deepvision.datasets.detection import make_fake

    yolo = make_fake(tmp_path / "y", "yolo", images=8, size=64, seed=0)
    gone = sorted((yolo.out / "images" / "train").glob("*.jpg"))[0]
    gone.unlink()
    label = yolo.out / "labels" / "train" / f"{gone.stem}.txt"
    before = _snapshot(yolo.out)
    code, _, err = run_cli("detection", "build", *yolo.build_args, "--out", tmp_path / "strict", "--strict")
    assert code == 2 and err.count("\n") == 1, err
    assert f"skipped 1 of 8 image(s) whose image file is missing; looked for {gone.stem}.* (the image of {label})" \
        in err and err.rstrip().endswith("(--strict)"), err
    assert not (tmp_path / "strict").exists() and _snapshot(yolo.out) == before
    code, out, _ = run_cli("detection", "build", *yolo.build_args, "--out", tmp_path / "built")
    assert code == 0 and "skipped 1 of 8 image(s)" in out
    assert json.loads((tmp_path / "built" / "dataset.json").read_text())["counts"]["train"]["images"] == 5


def test_yolo_label_beside_its_missing_image_is_counted_and_refused_with_strict(tmp_path, run_cli):
    """Labels beside their images (no labels/ folder): a .txt whose every line is a box and whose image is gone
    counts as a missing image (an error with --strict); classes.txt, a split list, a README or an empty .txt
    beside them are not label files."""
    from deepvision.datasets.detection import make_fake

    yolo = make_fake(tmp_path / "y", "yolo", images=8, size=64, seed=0)
    z = tmp_path / "z"
    for split in ("train", "val"):
        shutil.copytree(yolo.out / "images" / split, z / split)
        for label in (yolo.out / "labels" / split).glob("*.txt"):
            shutil.copy(label, z / split)
    (z / "data.yaml").write_text(f"path: {z}\ntrain: train\nval: val\nnames: [disc, square, triangle]\n")
    (z / "train" / "classes.txt").write_text("disc\nsquare\ntriangle\n")
    (z / "train" / "list.txt").write_text("train/img_00000.jpg\n")
    (z / "train" / "README.txt").write_text("labelled by hand, 3 classes\n")
    (z / "train" / "empty.txt").write_text("")
    gone = sorted((z / "train").glob("*.jpg"))[0]
    gone.unlink()
    before = _snapshot(z)
    code, _, err = run_cli("detection", "build", "yolo", z / "data.yaml", "--out", tmp_path / "strict", "--strict")
    assert code == 2 and err.count("\n") == 1, err
    assert (f"skipped 1 of 8 image(s) whose image file is missing; looked for {gone.stem}.* (the image of "
            f"{gone.with_suffix('.txt')})" in err and err.rstrip().endswith("(--strict)")), err
    assert not (tmp_path / "strict").exists() and _snapshot(z) == before
    code, out, _ = run_cli("detection", "build", "yolo", z / "data.yaml", "--out", tmp_path / "built")
    assert code == 0 and "skipped 1 of 8 image(s)" in out


def test_yolo_list_naming_an_image_twice_names_both_lines(tmp_path, run_cli):
    """A .txt split list naming one image on two lines (two spellings) is one line naming the list, both
    line numbers and both spellings."""
    from deepvision.datasets.detection import make_fake

    yolo = make_fake(tmp_path / "y", "yolo", images=8, size=64, seed=0)
    first = sorted((yolo.out / "images" / "train").glob("*.jpg"))
    listed = [f"images/train/{p.name}" for p in first] + [f"./images/train/{first[0].name}"]
    (yolo.out / "train.txt").write_text("\n".join(listed) + "\n")
    (yolo.out / "d.yaml").write_text("path: .\ntrain: train.txt\nval: images/val\nnames: [disc, square, triangle]\n")
    code, _, err = run_cli("detection", "build", "yolo", yolo.out / "d.yaml", "--out", tmp_path / "built")
    assert code == 2 and err.count("\n") == 1, err
    assert (f"{yolo.out / 'train.txt'} lines 1 and {len(listed)} both name {first[0]} (as "
            f"'images/train/{first[0].name}' and './images/train/{first[0].name}'); list each image once") in err, err
    assert not (tmp_path / "built").exists()


def test_yolo_two_images_of_one_stem_sharing_a_label_file_are_refused(tmp_path, run_cli):
    """img.jpg and img.png both take labels/img.txt (Ultralytics' rule): one line naming both and the label
    file, never one photo's boxes on the other."""
    from deepvision.datasets.detection import make_fake

    yolo = make_fake(tmp_path / "y", "yolo", images=8, size=64, seed=0)
    jpg = sorted((yolo.out / "images" / "train").glob("*.jpg"))[0]
    Image.new("RGB", (64, 64), "white").save(jpg.with_suffix(".png"))
    before = _snapshot(yolo.out)
    code, _, err = run_cli("detection", "build", *yolo.build_args, "--out", tmp_path / "built")
    assert code == 2 and err.count("\n") == 1, err
    label = yolo.out / "labels" / "train" / f"{jpg.stem}.txt"
    assert f"{jpg} and {jpg.with_suffix('.png')} share the label file {label}; give each image its own" in err, err
    assert not (tmp_path / "built").exists() and _snapshot(yolo.out) == before


@pytest.mark.parametrize(("fmt", "option", "message"), [
    ("yolo", ["--images", "elsewhere"], "--images applies to voc and coco; yolo finds each image where"),
    ("voc", ["--reference-clip"], "--reference-clip applies to imglab boxes; voc has no such rule"),
])
def test_a_build_option_the_format_would_ignore_is_refused(tmp_path, run_cli, fmt, option, message):
    from deepvision.datasets.detection import make_fake

    fake = make_fake(tmp_path / "in", fmt, images=4, size=64, seed=0)
    code, _, err = run_cli("detection", "build", *fake.build_args, "--out", tmp_path / "built", *option)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "built").exists()


def test_yolo_folder_with_classes_txt_given_by_a_relative_path(tmp_path, monkeypatch):
    """`detection build yolo DIR` with DIR relative: the splits are DIR's, not DIR/DIR's."""
    yolo = tmp_path / "y"
    (yolo / "images" / "train").mkdir(parents=True)
    (yolo / "labels" / "train").mkdir(parents=True)
    Image.new("RGB", (40, 20)).save(yolo / "images" / "train" / "a.jpg")
    (yolo / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (yolo / "classes.txt").write_text("car\n")
    monkeypatch.chdir(tmp_path)
    ann = read_annotations("yolo", ["y"])
    assert [Path(r.file) for r in ann.splits["train"]] == [(yolo / "images" / "train" / "a.jpg").resolve()]


def test_class_names_equal_under_unicode_normalisation_are_one_name_given_twice():
    from deepvision.datasets.detection.checks import check_class_names
    from deepvision.datasets.detection.schema import Annotations

    with pytest.raises(UserError, match=r"^the annotations: class name .* is given twice \(two Unicode spellings "
                                        r"of one name\); class names must be unique$"):
        check_class_names(["cafe\u0301", "caf\u00e9"], Annotations({}, []))  # printed alike
    check_class_names(["caf\u00e9", "cafe"], Annotations({}, []))
    with pytest.raises(UserError, match=r"^the annotations: class name ' disc' has surrounding spaces \(it prints "
                                        r"as 'disc'\); rename it$"):  # classes.txt is read back stripped
        check_class_names(["cat", " disc"], Annotations({}, []))  # the built index would be refused when read


def test_a_build_replaces_an_earlier_build_whole_and_no_other_folder(tmp_path, run_cli):
    """A COCO build over a VOC build (train + test) left the VOC test.json beside the new index; a folder
    of other files (a train.json of the user's) was written into."""
    from deepvision.datasets.detection import make_fake

    voc = make_fake(tmp_path / "voc", "voc", images=8, size=64, seed=0).out
    coco = make_fake(tmp_path / "coco", "coco", images=6, size=64, seed=1).out
    built = tmp_path / "built"
    code, _, err = run_cli("detection", "build", "voc", voc, "--out", built)
    assert code == 0 and (built / "test.json").is_file(), err
    code, out, err = run_cli("detection", "build", "coco",
                             f"train={coco / 'annotations' / 'instances_train2017.json'}",
                             "--images", coco / "train2017", "--out", built)
    assert code == 0, err
    assert f"replaced the earlier build in {built}, its split(s) test removed" in out.replace("\n  ", " ")
    assert json.loads((built / "dataset.json").read_text())["splits"] == ["train"]
    assert not (built / "test.json").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "train.json").write_text('{"mine": 1}')
    code, out, err = run_cli("detection", "build", "voc", voc, "--out", mine)
    assert (code, out) == (2, "") and "holds files but no dataset.json of an earlier detection build" in err
    assert [p.name for p in mine.iterdir()] == ["train.json"]


@pytest.mark.parametrize("key", ["\u0661", "+1", " 1", "01", "True"])
def test_yolo_names_keys_are_plain_class_indices(key):
    """int() reads '١' (an Arabic-Indic one), '+1' and ' 1' as 1: the lookup of names['1'] then failed with a
    traceback. A names key is an integer or its ASCII digits; an index given twice is refused."""
    from deepvision.datasets.detection.readers.yolo import _yolo_names

    assert _yolo_names({0: "a", "1": "b"}, "d.yaml") == ["a", "b"]
    names = {0: "a", key: "b"} if key != "True" else {0: "a", True: "b"}
    with pytest.raises(UserError, match=r"^d\.yaml: names key .* is not a class index"):
        _yolo_names(names, "d.yaml")
    with pytest.raises(UserError, match=r"^d\.yaml: names gives class 0 twice"):
        _yolo_names({0: "a", "0": "b"}, "d.yaml")


def test_yolo_classes_txt_is_one_name_a_line(tmp_path, run_cli):
    """'big disc' is one class: splitting classes.txt on spaces made two, and every later class id named the
    class before it."""
    from deepvision.datasets.detection import make_fake

    yolo = make_fake(tmp_path / "yolo", "yolo", images=4, size=64, seed=0).out
    (yolo / "data.yaml").unlink()
    (yolo / "classes.txt").write_text("big disc\nsquare\n\ntriangle\n")
    assert read_annotations("yolo", [str(yolo)]).classes == ["big disc", "square", "triangle"]
    (yolo / "classes.txt").write_text("disc\nsquare\ndisc\n")
    before = _snapshot(yolo)
    code, out, err = run_cli("detection", "build", "yolo", yolo, "--out", tmp_path / "built")
    assert (code, out) == (2, "") and err.count("\n") == 1 and "classes.txt" in err and "'disc'" in err
    assert _snapshot(yolo) == before and not (tmp_path / "built").exists()


def test_yolo_folder_with_several_yaml_files_or_a_disagreeing_classes_txt_is_refused(tmp_path, run_cli):
    """Two data YAMLs in one folder: the first by name was read without a word; a classes.txt beside the data
    YAML that names the classes in another order was ignored. The YAML given itself is read."""
    from deepvision.datasets.detection import make_fake

    yolo = make_fake(tmp_path / "yolo", "yolo", images=4, size=64, seed=0).out
    (yolo / "a-old.yml").write_text("path: .\ntrain: images/train\nnames: [triangle, square, disc]\n")
    before = _snapshot(yolo)
    code, out, err = run_cli("detection", "build", "yolo", yolo, "--out", tmp_path / "built")
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert "2 YAML files (a-old.yml, data.yaml)" in err and f"detection build yolo {yolo / 'data.yaml'}" in err
    assert _snapshot(yolo) == before and not (tmp_path / "built").exists()
    assert read_annotations("yolo", [str(yolo / "data.yaml")]).classes == ["disc", "square", "triangle"]
    (yolo / "a-old.yml").unlink()
    (yolo / "classes.txt").write_text("triangle\nsquare\ndisc\n")
    before = _snapshot(yolo)
    for given in (yolo, yolo / "data.yaml"):
        code, out, err = run_cli("detection", "build", "yolo", given, "--out", tmp_path / "built")
        assert (code, out) == (2, "") and err.count("\n") == 1
        assert "disagree (class 0 is 'disc' in data.yaml and 'triangle' in classes.txt)" in err
        assert _snapshot(yolo) == before and not (tmp_path / "built").exists()
    (yolo / "classes.txt").write_text("disc\nsquare\n")
    with pytest.raises(UserError, match="data.yaml names 3 classes and classes.txt 2"):
        read_annotations("yolo", [str(yolo)])
    (yolo / "classes.txt").write_text("disc\nsquare\ntriangle\n")
    assert read_annotations("yolo", [str(yolo)]).classes == ["disc", "square", "triangle"]


def test_a_voc_folder_with_two_annotation_folders_is_refused(tmp_path, run_cli):
    """annotations/ and xml/ both holding XML files: the first in a fixed order was read, the other ignored."""
    root = _labelimg(tmp_path / "pets")
    shutil.copytree(root / "annotations", root / "xml")
    (root / "annotations" / "photo_0.xml").unlink()
    before = _snapshot(root)
    code, out, err = run_cli("detection", "build", "voc", root, "--out", tmp_path / "built")
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert f"XML annotations in 2 folders ({root / 'annotations'}, {root / 'xml'})" in err
    assert f"detection build voc {root / 'xml'}" in err
    assert _snapshot(root) == before and not (tmp_path / "built").exists()
    assert len(read_annotations("voc", [str(root / "xml")]).splits["all"]) == 4
    assert len(read_annotations("voc", [str(root / "annotations")]).splits["all"]) == 3
    shutil.rmtree(root / "xml")
    shutil.copy(root / "annotations" / "photo_1.xml", root / "photo_1.xml")  # XML beside the photos too
    with pytest.raises(UserError, match="in 2 folders .*move the other folder out"):
        read_annotations("voc", [str(root)])


def test_a_photo_in_two_voc_image_folders_that_differ_is_refused(tmp_path, run_cli):
    """JPEGImages/ and images/ both holding a photo of one name: the first folder searched won without a word.
    Two copies of one photo are read; --images picks the folder."""
    root = _labelimg(tmp_path / "pets", n=2)
    (root / "JPEGImages").mkdir()
    shutil.copy(root / "images" / "photo_0.jpg", root / "JPEGImages" / "photo_0.jpg")
    assert len(read_annotations("voc", [str(root)]).splits["all"]) == 2
    Image.new("RGB", (64, 48), (0, 0, 255)).save(root / "JPEGImages" / "photo_1.jpg")
    before = _snapshot(root)
    code, out, err = run_cli("detection", "build", "voc", root, "--out", tmp_path / "built")
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert f"photo_1.jpg is in {root / 'JPEGImages'} and in {root / 'images'}, and the two files differ" in err
    assert _snapshot(root) == before and not (tmp_path / "built").exists()
    ann = read_annotations("voc", [str(root)], images_dir=str(root / "JPEGImages"))
    assert {Path(r.file).parent for r in ann.splits["all"]} == {(root / "JPEGImages").resolve()}


def test_coco_images_in_two_standard_folders_are_refused(tmp_path, run_cli):
    """train2017/ and images/train2017/ both holding the images: the first searched was read without a word."""
    from deepvision.datasets.detection import make_fake

    coco = make_fake(tmp_path / "coco", "coco", images=4, size=64, seed=0).out
    shutil.copytree(coco / "train2017", coco / "images" / "train2017")
    ann = coco / "annotations" / "instances_train2017.json"
    before = _snapshot(coco)
    code, out, err = run_cli("detection", "build", "coco", ann, "--out", tmp_path / "built")
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert f"are both in {coco / 'train2017'} and in {coco / 'images' / 'train2017'}; give the folder" in err
    assert _snapshot(coco) == before and not (tmp_path / "built").exists()
    code, _, err = run_cli("detection", "build", "coco", ann, "--images", coco / "train2017", "--out",
                           tmp_path / "built")
    assert code == 0, err


@pytest.mark.parametrize("change", ["remove", "zzz.jpg", "000000000000.JPG"])
def test_one_missing_coco_image_is_skipped_alone(tmp_path, run_cli, change):
    """The image folder was found only when the first file_name was in it: one missing image (or a renamed or
    case-slipped file_name) sent the whole split to the annotation folder, 9 of 12 skipped, train built empty."""
    from deepvision.datasets.detection import make_fake

    coco = make_fake(tmp_path / "coco", "coco", images=12, size=64, seed=0).out
    train = coco / "annotations" / "instances_train2017.json"
    if change == "remove":
        (coco / "train2017" / "000000000000.jpg").unlink()
    else:
        train.write_text(train.read_text().replace("000000000000.jpg", change))
    code, out, err = run_cli("detection", "build", "coco", train, coco / "annotations" / "instances_val2017.json",
                           "--out", tmp_path / "built")
    shown = "000000000000.jpg" if change == "remove" else change
    assert code == 0 and f"skipped 1 of 12 image(s) whose image file is missing; looked for {shown} in " \
        f"{coco / 'train2017'}" in " ".join(out.split()), out + err
    counts = json.loads((tmp_path / "built" / "dataset.json").read_text())["counts"]
    assert (counts["train"]["images"], counts["val"]["images"]) == (8, 3)


@pytest.mark.parametrize("fmt", ["coco", "voc"])
def test_a_split_left_empty_by_missing_images_is_refused(tmp_path, run_cli, fmt):
    """Every image of one split missing while the other split has its images: the split was built empty, exit 0."""
    from deepvision.datasets.detection import make_fake

    root = make_fake(tmp_path / "d", fmt, images=12, size=64, seed=0).out
    if fmt == "coco":
        for image in (root / "train2017").iterdir():
            image.unlink()
        inputs = [root / "annotations" / f"instances_{s}2017.json" for s in ("train", "val")]
    else:
        for name in (root / "ImageSets" / "Main" / "train.txt").read_text().split():
            (root / "JPEGImages" / f"{name}.jpg").unlink()
        inputs = [root]
    before = _snapshot(root)
    code, out, err = run_cli("detection", "build", fmt, *inputs, "--out", tmp_path / "built")
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert "error: no image of split train is left to write (" in err and "whose image file is missing" in err
    assert _snapshot(root) == before and not (tmp_path / "built").exists()


def test_a_yolo_list_line_naming_two_files_is_refused(tmp_path):
    """A list's line is read inside the dataset path, else inside the list's own folder: a line naming a file
    in both was read from the first without a word (and the second was never tried when the path is absolute)."""
    root = tmp_path / "y"
    for folder in (root / "images", root / "lists" / "images"):
        folder.mkdir(parents=True)
    Image.new("RGB", (40, 20)).save(root / "images" / "a.jpg")
    Image.new("RGB", (80, 60)).save(root / "lists" / "images" / "a.jpg")
    Image.new("RGB", (80, 60)).save(root / "lists" / "images" / "b.jpg")
    (root / "lists" / "train.txt").write_text("images/a.jpg\nimages/b.jpg\n")
    for path in (".", str(root)):
        (root / "data.yaml").write_text(f"path: {path}\ntrain: lists/train.txt\nnames: [car]\n")
        with pytest.raises(UserError, match=r"train.txt line 1: 'images/a.jpg' names both .*give the path absolute"):
            read_annotations("yolo", [str(root / "data.yaml")])
    (root / "images" / "a.jpg").unlink()
    ann = read_annotations("yolo", [str(root / "data.yaml")])
    assert [Path(r.file).parent for r in ann.splits["train"]] == [(root / "lists" / "images").resolve()] * 2


@pytest.mark.parametrize("nest", ["annotation", "object"])
def test_a_voc_annotation_or_object_left_open_is_refused(tmp_path, run_cli, nest):
    """An <annotation> pasted inside another (or an <object> inside one) gave its boxes to this photo too:
    the objects were read at any depth."""
    root = _labelimg(tmp_path / "ds", n=2)
    first, second = (root / "annotations" / f"photo_{i}.xml" for i in range(2))
    text = first.read_text()
    if nest == "annotation":
        text = text.replace("</annotation>", second.read_text() + "</annotation>")
    else:
        obj = text[text.index("<object>"):text.index("</object>") + len("</object>")]
        text = text.replace("</object>", obj.replace("</object>", "") + "</object></object>", 1)
    first.write_text(text)
    before = _snapshot(root)
    code, _, err = run_cli("detection", "build", "voc", root, "--out", tmp_path / "o")
    assert code == 2 and err.count("\n") == 1, err
    assert f"{first}: an <object> lies inside <{nest}>; each <object> belongs directly under <annotation> (is an " \
           f"element left open?)" in err, err
    assert _snapshot(root) == before and not (tmp_path / "o").exists()


def test_yolo_label_files_beside_the_photos_are_refused(tmp_path, run_cli):
    """LabelImg writes images/train/a.txt beside a.jpg, where YOLO does not look once the path has images/: a
    photo with a label file in both places, or label files beside the photos only (built as negatives, exit 0
    before), stop the build in one line; an empty labels/ or a note beside the photos is no label file."""
    from deepvision.datasets.detection import make_fake

    base = make_fake(tmp_path / "y", "yolo", images=8, size=64, seed=0).out
    both, beside = tmp_path / "both", tmp_path / "beside"
    for root in (both, beside):
        shutil.copytree(base, root)
        (root / "data.yaml").write_text((base / "data.yaml").read_text().replace(str(base), str(root)))
    first = sorted((both / "labels" / "train").glob("*.txt"))
    for label in first:
        shutil.copy(label, both / "images" / "train")
        label.write_text("0 0.5 0.5 0.2 0.2\n")
    moved = sorted((beside / "labels" / "train").glob("*.txt"))
    for label in moved:
        shutil.move(label, beside / "images" / "train")
    (beside / "labels" / "train").rmdir()
    (beside / "images" / "train" / "README.txt").write_text("labelled by hand\n")
    image = sorted((both / "images" / "train").glob("*.jpg"))[0]
    for root, message in (
        (both, f"{image} has two label files, {first[0]} and {image.with_suffix('.txt')} beside it; YOLO reads only "
               f"{first[0]}: remove the other"),
        (beside, f"{len(moved)} label file(s) lie beside the train photos "
                 f"({beside / 'images' / 'train' / moved[0].name} and {len(moved) - 1} more); YOLO reads a photo's "
                 f"labels from the labels/ folder that mirrors images/ ({beside / 'labels' / 'train'}): move them "
                 f"there"),
    ):
        before = _snapshot(root)
        code, _, err = run_cli("detection", "build", "yolo", root / "data.yaml", "--out", tmp_path / "built")
        assert code == 2 and err.count("\n") == 1, err
        assert message in err, err
        assert _snapshot(root) == before and not (tmp_path / "built").exists()


@pytest.mark.parametrize(("old", "new", "message"), [
    ("<xmin>11</xmin>", "<xmin>11<xmin>3</xmin></xmin>",
     "object 'dog': <xmin> holds its value '11' and an element <xmin>"),
    ("<name>dog</name>", "<name>dog<bndbox><xmin>1</xmin></bndbox></name>",
     "object: <name> holds its value 'dog' and an element <bndbox>"),
    ("<difficult>0</difficult>", "<difficult>0<truncated>1</truncated></difficult>",
     "<difficult> holds its value '0' and an element <truncated>"),
    ("<filename>photo_0.jpg</filename>", "<filename>photo_0.jpg<name>x</name></filename>",
     "<filename> holds its value 'photo_0.jpg' and an element <name>"),
    ("<width>64</width>", "<width>64<height>48</height></width>",
     "<width> holds its value '64' and an element <height>"),
], ids=["xmin", "name", "difficult", "filename", "width"])
def test_a_value_element_holding_elements_is_refused(tmp_path, run_cli, old, new, message):
    """A VOC value (<xmin>41<xmin>3</xmin></xmin>, <name>cat<bndbox>..</bndbox></name>) was read as its own text,
    the nested element dropped silently; one line names it. A person-layout <part> holding <name> and <bndbox> is
    still read (the part is not a second box)."""
    root = _labelimg(tmp_path / "ds", n=2)
    xml = root / "annotations" / "photo_0.xml"
    xml.write_text(xml.read_text().replace(old, new, 1))
    before = _snapshot(root)
    code, _, err = run_cli("detection", "build", "voc", root, "--out", tmp_path / "built")
    assert code == 2 and err.count("\n") == 1, err
    assert f"{xml}" in err and f"{message}; a value holds only text: remove the element" in err, err
    assert _snapshot(root) == before and not (tmp_path / "built").exists()
    part = "<part><name>head</name><bndbox><xmin>12</xmin><ymin>7</ymin><xmax>20</xmax><ymax>15</ymax></bndbox></part>"
    xml.write_text(xml.read_text().replace(new, old).replace("</object>", f"{part}</object>", 1))
    code, _, err = run_cli("detection", "build", "voc", root, "--out", tmp_path / "built")
    assert code == 0, err
    assert sum(len(img.boxes) for imgs in load_index(tmp_path / "built").splits.values() for img in imgs) == 2


def test_an_imglab_label_holding_an_element_is_refused(tmp_path, run_cli):
    """<label>front<label>rear</label></label> was read as 'front'; one line, nothing written."""
    Image.new("RGB", (40, 30)).save(tmp_path / "a.jpg")
    xml = tmp_path / "t.xml"
    xml.write_text(IMGLAB.format(f"<image file='a.jpg'>{BOX.format('front<label>rear</label>')}</image>"))
    before = xml.read_bytes()
    code, _, err = run_cli("detection", "build", "imglab", f"train={xml}", "--out", tmp_path / "o")
    assert code == 2 and err.count("\n") == 1, err
    assert ("image a.jpg: <label> holds its value 'front' and an element <label>; a value holds only text: remove "
            "the element (or close <label> before it)") in err, err
    assert xml.read_bytes() == before and not (tmp_path / "o").exists()


def test_voc_annotation_files_are_read_whatever_the_case_of_xml(tmp_path, run_cli):
    root = _labelimg(tmp_path / "pets")
    (root / "annotations" / "photo_1.xml").rename(root / "annotations" / "photo_1.XML")
    (root / "annotations" / "photo_2.xml").rename(root / "annotations" / "photo_2.Xml")
    for source in (root, root / "annotations"):
        ann = read_annotations("voc", [str(source)])
        assert sorted(Path(r.file).name for r in ann.splits["all"]) == [f"photo_{i}.jpg" for i in range(4)]
    sets = root / "ImageSets" / "Main"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("photo_0\nphoto_1\nphoto_2\nphoto_3\n")
    assert len(read_annotations("voc", [str(root)]).splits["train"]) == 4
    shutil.rmtree(sets.parent)
    shutil.copy(root / "annotations" / "photo_1.XML", root / "annotations" / "photo_1.xml")
    code, _, err = run_cli("detection", "build", "voc", root, "--out", tmp_path / "built")
    assert code == 2 and len(err.strip().splitlines()) == 1 and not (tmp_path / "built").exists()
    assert f"{root / 'annotations'} holds photo_1.XML and photo_1.xml, two annotations of one photo" in err


@pytest.mark.parametrize("where", ["annotation", "size", "part"])
def test_a_voc_box_outside_an_object_is_refused(tmp_path, run_cli, where):
    """A <bndbox> outside any <object> (directly under <annotation>, in <size>, in a <part> of no object) was
    dropped without a word; one line names where it lies, nothing is written."""
    root = _labelimg(tmp_path / "ds", n=2)
    xml = root / "annotations" / "photo_0.xml"
    box = "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox>"
    text = xml.read_text()
    text = {"annotation": text.replace("</annotation>", f"{box}</annotation>"),
            "size": text.replace("</size>", f"{box}</size>"),
            "part": text.replace("</annotation>", f"<part><name>head</name>{box}</part></annotation>")}[where]
    xml.write_text(text)
    before = _snapshot(root)
    code, _, err = run_cli("detection", "build", "voc", root, "--out", tmp_path / "built")
    assert code == 2 and err.count("\n") == 1, err
    assert (f"{xml}: a <bndbox> lies in <{where}>; each <bndbox> belongs inside an <object> (with its <name>), "
            f"one <object> per box") in err, err
    assert _snapshot(root) == before and not (tmp_path / "built").exists()


def test_voc_split_lists_are_read_whatever_the_case_of_imagesets_main(tmp_path, run_cli):
    """Lists in imagesets/main/ were ignored and the splits drawn at random; two spellings are refused."""
    root = _labelimg(tmp_path / "ds")
    sets = root / "imagesets" / "main"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("photo_0\nphoto_1\nphoto_2\n")
    (sets / "val.txt").write_text("photo_3\n")
    ann = read_annotations("voc", [str(root)])
    assert {k: len(v) for k, v in ann.splits.items()} == {"train": 3, "val": 1}
    other = root / "ImageSets" / "Main"
    other.mkdir(parents=True)
    (other / "train.txt").write_text("photo_0\n")
    before = _snapshot(root)
    code, _, err = run_cli("detection", "build", "voc", root, "--out", tmp_path / "built")
    assert code == 2 and err.count("\n") == 1, err
    assert f"{root} holds split lists in 2 folders ({other}, {sets}); keep one ImageSets/Main folder" in err, err
    assert _snapshot(root) == before and not (tmp_path / "built").exists()


def test_voc_split_list_files_are_read_whatever_their_case(tmp_path, run_cli):
    """Train.txt/Val.txt were ignored (the splits drawn at random) and train.TXT beside val.txt dropped the
    training split; the lists are read in any case, two spellings of one list refused naming both."""
    root = _labelimg(tmp_path / "ds")
    sets = root / "ImageSets" / "Main"
    sets.mkdir(parents=True)
    (sets / "Train.txt").write_text("photo_0\nphoto_1\nphoto_2\n")
    (sets / "Val.txt").write_text("photo_3\n")
    names = lambda ann: {k: sorted(Path(r.file).name for r in v) for k, v in ann.splits.items()}
    assert names(read_annotations("voc", [str(root)])) == {"train": ["photo_0.jpg", "photo_1.jpg", "photo_2.jpg"],
                                                           "val": ["photo_3.jpg"]}
    (sets / "Train.txt").rename(sets / "train.TXT")
    (sets / "Val.txt").rename(sets / "val.txt")
    assert {k: len(v) for k, v in read_annotations("voc", [str(root)]).splits.items()} == {"train": 3, "val": 1}
    (sets / "Train.txt").write_text("photo_0\n")
    before = _snapshot(root)
    code, _, err = run_cli("detection", "build", "voc", root, "--out", tmp_path / "built")
    assert code == 2 and err.count("\n") == 1, err
    assert f"{sets} holds both Train.txt and train.TXT, two spellings of one split list; keep one of them" in err, err
    assert _snapshot(root) == before and not (tmp_path / "built").exists()


@pytest.mark.parametrize("extra", ["loose", "Train", "valid", "extra"])
def test_a_yolo_classes_folder_refuses_photos_it_would_leave_out(tmp_path, run_cli, extra):
    """Beside classes.txt, photos in images/ beside the split folders and split folders other than
    train/val/test were left out without a word; one line names them and how to include them."""
    root = tmp_path / "y"
    (root / "classes.txt").parent.mkdir()
    (root / "classes.txt").write_text("disc\n")
    for stem in ("train/a", "val/b", "f" if extra == "loose" else f"{extra}/z"):
        (root / "images" / stem).parent.mkdir(parents=True, exist_ok=True)
        (root / "labels" / stem).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 20)).save(root / "images" / f"{stem}.jpg")
        (root / "labels" / f"{stem}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    before = _snapshot(root)
    code, _, err = run_cli("detection", "build", "yolo", root, "--out", tmp_path / "built")
    assert code == 2 and err.count("\n") == 1, err
    images = root / "images"
    if extra == "loose":
        assert (f"{images} holds 1 photos beside its split folders that would be in no split (f.jpg); move them into "
                f"a split folder (e.g. images/train/, their labels into labels/train/)") in err, err
    else:
        assert (f"{images} holds split folders {extra} that would be left out: beside classes.txt only images/train, "
                f"images/val and images/test are read; rename them, or give a data YAML naming each split's folder "
                f"(e.g. val: images/{extra})") in err, err
    assert _snapshot(root) == before and not (tmp_path / "built").exists()


@pytest.mark.parametrize("layout", ["classes", "yaml", "Images"])
def test_yolo_labels_are_found_whatever_the_case_of_the_folder_and_suffix(tmp_path, run_cli, layout):
    """Labels/ (another spelling of labels/), or a.TXT in it, was never read: every photo built as a negative.
    The folder and the suffix are found in any case; two spellings of either are refused naming both."""
    root = tmp_path / "y"
    images = root / ("Images" if layout == "Images" else "images")
    for stem in ("train/a", "train/b", "train/c", "val/d", "val/e"):
        (images / stem).parent.mkdir(parents=True, exist_ok=True)
        (root / "Labels" / stem).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64)).save(images / f"{stem}.jpg")
        (root / "Labels" / f"{stem}.{'TXT' if stem == 'train/a' else 'txt'}").write_text("0 0.5 0.5 0.2 0.2\n")
    if layout == "yaml":
        (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [disc, square]\n")
    else:
        (root / "classes.txt").write_text("disc\nsquare\n")
    ann = read_annotations("yolo", [str(root)])
    assert {k: [len(r.boxes) for r in v] for k, v in ann.splits.items()} == {"train": [1, 1, 1], "val": [1, 1]}
    (root / "labels" / "train").mkdir(parents=True)
    (root / "Labels" / "train" / "b.txt").rename(root / "labels" / "train" / "b.txt")
    before = _snapshot(root)
    code, _, err = run_cli("detection", "build", "yolo", root, "--out", tmp_path / "built", "--strict")
    assert code == 2 and err.count("\n") == 1, err
    assert f"{root} holds both Labels and labels, two spellings of one labels folder; keep one of them" in err, err
    assert _snapshot(root) == before and not (tmp_path / "built").exists()
    shutil.rmtree(root / "labels")
    (root / "Labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    code, _, err = run_cli("detection", "build", "yolo", root, "--out", tmp_path / "built")
    assert code == 2 and err.count("\n") == 1, err
    assert (f"{root / 'Labels' / 'train'} holds both a.TXT and a.txt, two spellings of one label file; keep one of "
            f"them") in err, err


@pytest.mark.parametrize(("name", "message"), [
    ("dataset", "split name 'dataset' is a name the folder's own files take (dataset, label_map, classes)"),
    ("Classes", "split name 'Classes' is a name the folder's own files take"),
    ("label_map", "split name 'label_map' is a name the folder's own files take"),
    ("../esc", "split name must be a plain file name (no path separators, '..', "),
    ("a b/c", "got 'a b/c'"),
    ("a\\b", "got 'a\\\\b'"),
    ("tr\x1bain", "got 'tr\\x1bain'"),
    (".hidden", "got '.hidden'"),
    ("", "got ''"),
    (" train", "got ' train'"),
])
@pytest.mark.parametrize("fmt", ["coco", "imglab"])
def test_a_split_name_its_file_cannot_take_is_refused_before_anything_is_read(tmp_path, run_cli, fmt, name,
                                                                            message):
    """SPLIT=PATH names the split's file SPLIT.json beside dataset.json: a split named 'dataset' was replaced
    by the index (the build said 9 images, the index held none), '../x' landed elsewhere and was listed under
    a name no reader found, an ESC went raw to the terminal. Each is one line before any file is read."""
    from deepvision.datasets.detection import make_fake

    fake = make_fake(tmp_path / fmt, fmt, images=6, size=64, seed=0).out
    first = next(p for p in sorted(fake.rglob("*")) if p.suffix in (".json", ".xml"))
    built = tmp_path / "built"
    code, _, err = run_cli("detection", "build", fmt, f"train={first}", "--out", built)
    assert code == 0, err
    before, inputs = _snapshot(built), _snapshot(fake)
    for given in (first, tmp_path / "missing.json"):  # a file that is not there is never looked at first
        code, out, err = run_cli("detection", "build", fmt, f"{name}={given}", f"val={first}", "--out", built)
        assert (code, out) == (2, "") and err.count("\n") == 1 and "\x1b" not in err, err
        assert err.startswith("deepvision detection build: error: ") and ": split name" in err and message in err
        assert _snapshot(built) == before and _snapshot(fake) == inputs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["built", fmt]


def test_a_file_named_as_the_index_is_refused_as_a_split_and_every_reader_s_names_are_checked(tmp_path, run_cli):
    """A plain path's split is named by its stem (dataset.json -> 'dataset'): refused the same way, saying
    that SPLIT=PATH names it; a reader's own split names (the API, read_voc's `splits`) meet the same rule."""
    from deepvision.datasets.detection import make_fake

    fake = make_fake(tmp_path / "coco", "coco", images=6, size=64, seed=0).out
    own = tmp_path / "mine" / "dataset.json"
    own.parent.mkdir()
    own.write_bytes((fake / "annotations" / "instances_train2017.json").read_bytes())
    code, out, err = run_cli("detection", "build", "coco", own, "--images", fake / "train2017", "--out",
                             tmp_path / "built")
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert f"{own} (a split named by the file's stem; SPLIT=PATH names it): split name 'dataset' is a name" in err
    code, _, err = run_cli("detection", "build", "coco", f"train={own}", "--images", fake / "train2017", "--out",
                           tmp_path / "built")
    assert code == 0 and (tmp_path / "built" / "train.json").is_file(), err
    ann = read_annotations("coco", [f"train={own}"], images_dir=str(fake / "train2017"))
    ann.splits = {"label_map": ann.splits["train"]}
    with pytest.raises(UserError, match=r"^the coco annotations: split name 'label_map' is a name the folder's own "
                                        r"files take \(dataset, label_map, classes\); choose another name$"):
        build_dataset(ann, tmp_path / "other")
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize("kind", ["fifo", "broken link"])
def test_a_yolo_classes_folder_names_a_fifo_or_broken_link_beside_its_split_folders(tmp_path, run_cli, kind):
    """A FIFO or broken link named like a photo in images/ beside the split folders was passed over without a
    word (only regular files were counted as photos left out); it is named for what it is, never opened."""
    root = tmp_path / "y"
    root.mkdir()
    (root / "classes.txt").write_text("disc\n")
    for folder in ("images/train", "labels/train"):
        (root / folder).mkdir(parents=True)
    Image.new("RGB", (40, 20)).save(root / "images" / "train" / "a.jpg")
    (root / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    odd = root / "images" / "f.jpg"
    os.mkfifo(odd) if kind == "fifo" else odd.symlink_to(tmp_path / "gone.jpg")
    code, _, err = run_cli("detection", "build", "yolo", root, "--out", tmp_path / "built")
    assert code == 2 and err.count("\n") == 1, err
    what = "a FIFO" if kind == "fifo" else "a broken link"
    assert f"{odd} is {what}, not an image file; remove it from {root / 'images'}" in err, err
    assert not (tmp_path / "built").exists()


def test_a_class_list_with_an_empty_name_is_refused(tmp_path, run_cli):
    """`--classes 'disc,,square'` built two classes and dropped the triangles as "not in the class list"."""
    from deepvision.datasets.detection.fake import make_fake

    make_fake(tmp_path / "v", "voc", images=4, size=64)
    code, out, err = run_cli("detection", "build", "voc", tmp_path / "v", "--out", tmp_path / "b",
                             "--classes", "disc,,square")
    assert (code, out) == (2, "") and err.endswith("error: --classes: name 2 of 3 is empty (two commas in a row, or "
                                                   "one at an end)\n"), err
    assert not (tmp_path / "b").exists()
