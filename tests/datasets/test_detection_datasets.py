"""Detection datasets: every reader on files written the way each tool writes them, the build checks, the index."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepvision.data.detection import load_index
from deepvision.datasets.detection import build_dataset, make_fake
from deepvision.datasets.detection.build import label_map_text, read_annotations, read_class_list
from deepvision.errors import Terminated, UserError
from tests.helpers import stop_on_call


def _built_truth(root: Path, split: str) -> dict[str, list[tuple]]:
    index = load_index(root, [split])
    out = {}
    for img in index.splits[split]:
        out[str(img.file.resolve())] = [(*map(float, b), index.classes[int(k) - 1], bool(d))
                                        for b, k, d in zip(img.pixel_boxes(), img.labels, img.difficult)]
    return out


def _key(box: tuple) -> tuple:
    return tuple(round(v) for v in box[:4])


def _same(a: dict[str, list[tuple]], b: dict[str, list[tuple]], tol: float = 1e-3) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert len(a[key]) == len(b[key]), key
        for x, y in zip(sorted(a[key], key=_key), sorted(b[key], key=_key)):
            assert np.allclose(x[:4], y[:4], atol=tol), (key, x, y)
            assert x[4:] == y[4:], (key, x, y)


@pytest.mark.parametrize("fmt", ["voc", "coco", "yolo", "imglab"])
def test_fake_round_trip_every_format(tmp_path, fmt):
    fake = make_fake(tmp_path / fmt, fmt, images=10, size=96, seed=1)
    ann = read_annotations(fmt, fake.build_args[1:])
    report = build_dataset(ann, tmp_path / "built")
    assert sorted(report.counts) == sorted(fake.splits)
    for split in fake.splits:
        _same(_built_truth(tmp_path / "built", split), fake.truth(split), tol=1e-3 if fmt == "yolo" else 1e-5)
        truth = fake.truth(split)
        assert report.counts[split].boxes == sum(len(v) for v in truth.values())
        assert report.counts[split].negatives == sum(not v for v in truth.values())
    # formats without a class order (VOC, imglab) get sorted names; COCO/YOLO keep theirs
    assert report.classes == (sorted(fake.classes) if fmt in ("voc", "imglab") else fake.classes)


def test_lisa_three_class_filter_and_reference_split(tmp_path):
    from sklearn.model_selection import train_test_split

    fake = make_fake(tmp_path / "lisa", "lisa", images=16, size=96, seed=2)
    csv = fake.out / "allAnnotations.csv"
    ann = read_annotations("lisa", [str(csv)], classes=fake.classes)
    assert any("speedLimit35" in n for n in ann.notes)
    report = build_dataset(ann, tmp_path / "built", classes=fake.classes)
    truth = {**fake.truth("train"), **fake.truth("test")}
    kept = [k for k, v in truth.items() if v]  # frames enter only through rows of the 3 classes
    # the reference: group by image in CSV order, then train_test_split(keys, test_size=0.25, random_state=42)
    order = list(dict.fromkeys(str((csv.parent / line.split(";")[0]).resolve())
                               for line in csv.read_text().splitlines()[1:] if line.split(";")[1] in fake.classes))
    assert sorted(order) == sorted(kept)
    train_keys, test_keys = train_test_split(order, test_size=0.25, random_state=42)
    assert list(_built_truth(tmp_path / "built", "train")) == train_keys
    assert list(_built_truth(tmp_path / "built", "test")) == test_keys
    _same({**_built_truth(tmp_path / "built", "train"), **_built_truth(tmp_path / "built", "test")},
          {k: truth[k] for k in kept})
    assert report.counts["train"].negatives == 0


def test_lisa_csv_as_distributed(tmp_path):
    """The header and row layout of the real allAnnotations.csv (one ',' pair inside ';' fields)."""
    folder = tmp_path / "aiua120214-0" / "frameAnnotations-DataLog02142012_external_camera.avi_annotations"
    folder.mkdir(parents=True)
    Image.new("RGB", (1024, 522)).save(folder / "stop_1330545910.avi_image0.png")
    rel = folder.relative_to(tmp_path).as_posix() + "/stop_1330545910.avi_image0.png"
    (tmp_path / "allAnnotations.csv").write_text(
        "Filename;Annotation tag;Upper left corner X;Upper left corner Y;Lower right corner X;Lower right corner Y;"
        "Occluded,On another road;Origin file;Origin frame number;Origin track;Origin track frame number\n"
        f"{rel};stop;862;104;916;158;0,0;aiua120214-0/DataLog02142012_external_camera.avi;2667;"
        "stop_1330545910.avi;0\n"
        f"{rel};speedLimit25;10;10;40;40;1,0;aiua120214-0/DataLog02142012_external_camera.avi;2667;x.avi;0\n")
    ann = read_annotations("lisa", [str(tmp_path / "allAnnotations.csv")], classes=["pedestrianCrossing",
                                                                                     "signalAhead", "stop"])
    report = build_dataset(ann, tmp_path / "out", classes=["pedestrianCrossing", "signalAhead", "stop"],
                           test_fraction=0)
    img = load_index(tmp_path / "out").splits["train"][0]
    assert (img.width, img.height) == (1024, 522) and img.labels.tolist() == [3]
    assert np.allclose(img.boxes, [[862 / 1024, 104 / 522, 916 / 1024, 158 / 522]])
    assert report.counts["train"].boxes == 1
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{LISA_HEADER}\nimg.png;stop;1;2;abc;4;0,0\n")
    with pytest.raises(UserError, match="bad.csv line 2: x2 'abc' is not a number"):
        read_annotations("lisa", [str(bad)], classes=["stop"])
    bad.write_text(f"{LISA_HEADER}\nimg.png;stop;1;2;3\n")
    with pytest.raises(UserError, match="bad.csv line 2: expected 6 or more ';'-separated fields"):
        read_annotations("lisa", [str(bad)], classes=["stop"])


LISA_HEADER = ("Filename;Annotation tag;Upper left corner X;Upper left corner Y;Lower right corner X;"
               "Lower right corner Y;Occluded,On another road;Origin file")


def _swap_columns(text: str, pairs: list[tuple[int, int]]) -> str:
    """`text` with the ';'-separated fields of every line (the header too) exchanged pairwise."""
    out = []
    for line in text.splitlines():
        fields = line.split(";")
        for i, j in pairs:
            fields[i], fields[j] = fields[j], fields[i]
        out.append(";".join(fields))
    return "\n".join(out) + "\n"


def test_lisa_columns_are_found_by_their_header_names_in_any_order(tmp_path):
    fake = make_fake(tmp_path / "lisa", "lisa", images=8, size=64, seed=3)
    csv = fake.out / "allAnnotations.csv"
    text = csv.read_text()
    expected = read_annotations("lisa", [str(csv)], classes=None)
    assert sum(len(r.boxes) for r in expected.splits["all"]) > 8
    # Y before X, the tag last of the six and the corners after the 'Occluded,On another road' column
    for pairs in ([(2, 3), (4, 5)], [(1, 5)], [(2, 6), (0, 7)]):
        moved = fake.out / "moved.csv"
        moved.write_text(_swap_columns(text, pairs))
        got = read_annotations("lisa", [str(moved)], classes=None)
        assert {r.file: r.boxes for r in got.splits["all"]} == {r.file: r.boxes for r in expected.splits["all"]}
    # the names in another case (a spreadsheet's export): the same columns
    lines = text.splitlines()
    moved.write_text("\n".join([lines[0].upper()] + lines[1:]) + "\n")
    got = read_annotations("lisa", [str(moved)], classes=None)
    assert {r.file: r.boxes for r in got.splits["all"]} == {r.file: r.boxes for r in expected.splits["all"]}


@pytest.mark.parametrize("header, message", [
    ("Filename;Annotation tag;Upper left corner X;Top;Lower right corner X;Lower right corner Y",
     "lacks the LISA column 'Upper left corner Y' in its header (first line 'Filename;Annotation tag;"),
    ("a;b;c;d;e;f", "lacks the LISA column 'Filename' in its header (first line 'a;b;c;d;e;f')"),
    ("img.png;stop;1;2;30;40", "lacks the LISA column 'Filename'"),  # no header: never read by position
    (f"{LISA_HEADER};Upper left corner X", "names twice the LISA column 'Upper left corner X'"),
    (f"{LISA_HEADER};UPPER LEFT CORNER X", "names twice the LISA column 'Upper left corner X'"),
])
def test_lisa_header_missing_a_column_is_refused_naming_it(tmp_path, run_cli, header, message):
    Image.new("RGB", (64, 48)).save(tmp_path / "img.png")
    csv = tmp_path / "allAnnotations.csv"
    csv.write_text(f"{header}\nimg.png;stop;1;2;30;40;0,0;x;9\n")
    before = csv.read_bytes()
    code, out, err = run_cli("detection", "build", "lisa", csv, "--classes", "stop", "--out", tmp_path / "out")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert message in err, err
    assert csv.read_bytes() == before and not (tmp_path / "out").exists()


def test_imglab_written_by_dlib_clipping_rules(tmp_path):
    dlib = pytest.importorskip("dlib")
    Image.new("RGB", (100, 80)).save(tmp_path / "a.jpg")
    meta = dlib.image_dataset_metadata
    data = meta.dataset()
    image = meta.image()
    image.filename = "a.jpg"
    for rect, label, ignore in (((-10, 5, 39, 24), "rear", False),  # left -10, width 50: past the left border
                                ((60, 50, 109, 89), "front", False),  # past the right and bottom borders
                                ((120, 5, 130, 15), "rear", False),  # wholly outside: max < min after clipping
                                ((5, 5, 20, 20), "front", True)):  # ignore
        box = meta.box()
        box.rect = dlib.rectangle(*rect)
        box.label, box.ignore = label, ignore
        image.boxes.append(box)
    data.images.append(image)
    meta.save_image_dataset_metadata(data, str(tmp_path / "training.xml"))
    modern = read_annotations("imglab", [str(tmp_path / "training.xml")])
    ref = read_annotations("imglab", [str(tmp_path / "training.xml")], reference_clip=True)
    assert list(modern.splits) == ["train"]
    boxes = [b.coords for b in modern.splits["train"][0].boxes]
    assert boxes == [(0, 5, 40, 25), (60, 50, 100, 80)]  # end from the unclipped start: -10 + 50 = 40
    assert [b.coords for b in ref.splits["train"][0].boxes] == [(0, 5, 50, 25), (60, 50, 100, 80)]  # reference
    assert "skipped 1 boxes marked ignore" in modern.notes[0]
    assert "dropped 1" in modern.notes[1]


def test_imglab_difficult_boxes_are_kept_as_difficult_and_turned_boxes_refused(tmp_path, run_cli):
    """dlib writes difficult='1' and angle on a <box>: a difficult box was read as an ordinary one, and a box
    turned by 45 degrees as an upright one, exit 0."""
    dlib = pytest.importorskip("dlib")
    Image.new("RGB", (100, 80)).save(tmp_path / "a.jpg")
    meta = dlib.image_dataset_metadata

    def save(name: str, angle: float) -> None:
        data, image = meta.dataset(), meta.image()
        image.filename = "a.jpg"
        for rect, difficult in (((10, 5, 39, 24), True), ((60, 50, 89, 69), False)):
            box = meta.box()
            box.rect, box.label, box.difficult, box.angle = dlib.rectangle(*rect), "car", difficult, angle
            image.boxes.append(box)
        data.images.append(image)
        meta.save_image_dataset_metadata(data, str(tmp_path / name))

    save("training.xml", 0.0)
    assert "difficult='1'" in (tmp_path / "training.xml").read_text()
    read = read_annotations("imglab", [str(tmp_path / "training.xml")])
    assert [b.difficult for b in read.splits["train"][0].boxes] == [True, False]
    save("turned.xml", 45.0)
    code, out, err = run_cli("detection", "build", "imglab", tmp_path / "turned.xml", "--out", tmp_path.parent / "o")
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert "turned.xml, image a.jpg: a <box> turned by angle 45 cannot be read as an upright box" in err, err
    assert not (tmp_path.parent / "o").exists()


@pytest.mark.parametrize("attrs", ["width='-15' height='16'", "width='15' height='0'"])
def test_an_imglab_box_of_negative_or_zero_size_is_refused_like_every_format(tmp_path, run_cli, attrs):
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (64, 64)).save(src / "a.jpg")
    (src / "training.xml").write_text(f"<dataset><images><image file='a.jpg'>"
                                           f"<box top='27' left='40' {attrs}><label>car</label></box>"
                                           f"<box top='2' left='3' width='10' height='10'><label>car</label></box>"
                                           f"</image></images></dataset>")
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    code, out, err = run_cli("detection", "build", "imglab", src / "training.xml", "--out", tmp_path / "out")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert f"{src / 'a.jpg'}: box [40, 27, " in err and "'car' has zero or negative width/height; repair " \
        "with --fix clip" in err, err
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before and not (tmp_path / "out").exists()
    code, out, err = run_cli("detection", "build", "imglab", src / "training.xml", "--out", tmp_path / "out",
                             "--fix", "drop")
    assert code == 0 and "dropped 1 bad box(es) (--fix drop)" in out + err, out + err
    assert json.loads((tmp_path / "out" / "train.json").read_text())["images"][0]["boxes"] != []


VOC2007_000001 = """<annotation>
\t<folder>VOC2007</folder>
\t<filename>000001.jpg</filename>
\t<source>
\t\t<database>The VOC2007 Database</database>
\t\t<annotation>PASCAL VOC2007</annotation>
\t\t<image>flickr</image>
\t\t<flickrid>341012865</flickrid>
\t</source>
\t<owner>
\t\t<flickrid>Fried Camels</flickrid>
\t\t<name>Jinky the Fruit Bat</name>
\t</owner>
\t<size>
\t\t<width>353</width>
\t\t<height>500</height>
\t\t<depth>3</depth>
\t</size>
\t<segmented>0</segmented>
\t<object>
\t\t<name>dog</name>
\t\t<pose>Left</pose>
\t\t<truncated>1</truncated>
\t\t<difficult>0</difficult>
\t\t<bndbox>
\t\t\t<xmin>48</xmin>
\t\t\t<ymin>240</ymin>
\t\t\t<xmax>195</xmax>
\t\t\t<ymax>371</ymax>
\t\t</bndbox>
\t</object>
\t<object>
\t\t<name>person</name>
\t\t<pose>Left</pose>
\t\t<truncated>1</truncated>
\t\t<difficult>1</difficult>
\t\t<bndbox>
\t\t\t<xmin>8</xmin>
\t\t\t<ymin>12</ymin>
\t\t\t<xmax>352</xmax>
\t\t\t<ymax>498</ymax>
\t\t</bndbox>
\t</object>
</annotation>
"""


def _voc_tree(root: Path) -> Path:
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True)
    (root / "Annotations" / "000001.xml").write_text(VOC2007_000001)
    Image.new("RGB", (353, 500)).save(root / "JPEGImages" / "000001.jpg")
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("000001\n")
    (root / "ImageSets" / "Main" / "dog_trainval.txt").write_text("000001  1\n")  # per-class lists are skipped
    return root


def test_voc2007_file_one_based_corners_and_difficult(tmp_path):
    ann = read_annotations("voc", [str(_voc_tree(tmp_path / "VOC2007"))])
    assert list(ann.splits) == ["train"]  # trainval serves as train when there is no train.txt
    rec = ann.splits["train"][0]
    assert (rec.width, rec.height) == (353, 500)
    assert [(b.coords, b.label, b.difficult) for b in rec.boxes] == [
        ((47, 239, 195, 371), "dog", False), ((7, 11, 352, 498), "person", True)]


def test_coco_file_loads_in_pycocotools_and_maps_sparse_ids(tmp_path):
    pycocotools = pytest.importorskip("pycocotools.coco")
    from pycocotools import mask as mask_utils

    fake = make_fake(tmp_path / "coco", "coco", images=8, size=96, seed=3)
    path = fake.out / "annotations" / "instances_train2017.json"
    coco = pycocotools.COCO(str(path))
    assert sorted(coco.getCatIds()) == [1, 3, 7]
    crowd = [a for a in coco.dataset["annotations"] if a["iscrowd"]]
    assert crowd, "the fake has crowd regions"
    a = crowd[0]
    x, y, w, h = a["bbox"]
    mask = coco.annToMask(a)  # our uncompressed RLE decodes to the box
    assert mask.sum() == w * h and mask[y:y + h, x:x + w].all()
    assert mask_utils.area(mask_utils.encode(np.asfortranarray(mask))) == w * h
    # a plain path (standard layout: annotations/instances_val2017.json + val2017/) names the split and finds images
    ann = read_annotations("coco", [str(fake.out / "annotations" / "instances_val2017.json")])
    assert list(ann.splits) == ["val"] and all(Path(r.file).is_file() for r in ann.splits["val"])
    assert ann.classes == ["disc", "square", "triangle"]


def test_yolo_polygons_missing_label_files_and_bad_class(tmp_path):
    root = tmp_path / "ds"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for name in ("a", "b", "c"):
        Image.new("RGB", (200, 100)).save(root / "images" / "train" / f"{name}.jpg")
    lines = ["0 0.5 0.5 0.2 0.4", "1 0.1 0.1 0.3 0.1 0.3 0.5 0.1 0.5", "7 0.5 0.5 0.1 0.1"]  # box, polygon, bad class
    (root / "labels" / "train" / "a.txt").write_text("\n".join(lines) + "\n")
    (root / "labels" / "train" / "b.txt").write_text("")  # negative; c has no label file: also a negative
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [car, sign]\n")
    ann = read_annotations("yolo", [str(root / "data.yaml")])
    with pytest.raises(UserError, match=r"a\.txt line 3: class index 7 is not in names \(0\.\.1\); repair with"):
        build_dataset(ann, tmp_path / "out")
    report = build_dataset(ann, tmp_path / "out", fix="drop")
    assert report.counts["train"].negatives == 2
    img = load_index(tmp_path / "out").splits["train"][0]
    assert np.allclose(img.pixel_boxes(), [[80, 30, 120, 70], [20, 10, 60, 50]], atol=1e-3)
    assert img.labels.tolist() == [1, 2]


def _one_image(tmp_path: Path, boxes: list[tuple], size=(50, 40)):
    from deepvision.datasets.detection.schema import Annotations, Box, ImageRecord

    (tmp_path / "images").mkdir(exist_ok=True)  # the built index goes beside the image folder, never inside
    Image.new("RGB", size).save(tmp_path / "images" / "img.png")
    rec = ImageRecord(str(tmp_path / "images" / "img.png"), [Box(*b) for b in boxes])
    return Annotations({"train": [rec]}, None, [], "test")


def test_bad_boxes_need_fix_and_are_named(tmp_path):
    boxes = [(10, 10, 10, 20, "a"), (40, 5, 60, 30, "a"), (1, 1, 20, 20, "a"), (-0.5, 0, 50.8, 40, "b")]
    with pytest.raises(UserError) as err:
        build_dataset(_one_image(tmp_path, boxes), tmp_path / "out")
    msg = str(err.value)
    assert "2 bad box(es)" in msg and "img.png: box [10, 10, 10, 20] 'a' has zero or negative width" in msg
    assert "--fix clip" in msg and "\n" not in msg
    report = build_dataset(_one_image(tmp_path, boxes), tmp_path / "clip", fix="clip")
    img = load_index(tmp_path / "clip").splits["train"][0]
    assert np.allclose(img.pixel_boxes(), [[40, 5, 50, 30], [1, 1, 20, 20], [0, 0, 50, 40]])  # empty one dropped
    assert "clipped 2 bad box(es)" in report.notes[0]
    build_dataset(_one_image(tmp_path, boxes), tmp_path / "drop", fix="drop")
    assert np.allclose(load_index(tmp_path / "drop").splits["train"][0].pixel_boxes(), [[1, 1, 20, 20], [0, 0, 50, 40]])


def test_a_box_too_thin_for_the_index_is_a_bad_box_so_every_build_reads_back(tmp_path, run_cli):
    """1e-7 px wide at x = 10 of 50: positive in float64, zero in the index reader's float32. The build applies
    the reader's rule: refused, or dropped by --fix, never written for every later command to refuse."""
    from deepvision.data.detection.index import bad_boxes

    thin = (10, 10, 10 + 1e-7, 15, "a")
    assert bad_boxes([x / 50 for x in thin[:4]]).tolist() == [True]  # the reader's own rule
    assert bad_boxes([[0.2, 0.2, 0.2 + 1e-6, 0.3], [0, 0, 1, 1]]).tolist() == [False, False]
    boxes = [thin, (1, 1, 20, 20, "a"), (50 - 1e-7, 3, 50.5, 9, "a")]  # thin once clipped to the image
    with pytest.raises(UserError) as err:
        build_dataset(_one_image(tmp_path, boxes), tmp_path / "out")
    msg = str(err.value)
    assert msg.startswith("2 bad box(es), first: ") and "\n" not in msg
    assert "img.png: box [10, 10, 10, 15] 'a' has a width or height too small to store" in msg
    assert not (tmp_path / "out").exists()
    for fix in ("drop", "clip"):
        report = build_dataset(_one_image(tmp_path, boxes), tmp_path / fix, fix=fix)
        assert report.counts["train"].boxes == 1 and "2 bad box(es)" in report.notes[-1]
        img = load_index(tmp_path / fix).splits["train"][0]
        assert np.allclose(img.pixel_boxes()[0], [1, 1, 20, 20])
    code, _, err = run_cli("detection", "show", tmp_path / "drop", "--out", tmp_path / "show")
    assert code == 0, err


def test_a_box_given_twice_in_one_image_is_kept_once_and_counted(tmp_path):
    """One class and coordinates twice in one image were two targets (an extra false negative in evaluation):
    the first is kept, the others dropped and counted in one note naming the first image, as Ultralytics does.
    Compared as kept, after the silent clip of the rounding band; another class or another image is no repeat."""
    boxes = [(1, 1, 20, 40, "a"), (1, 1, 20, 40, "a"), (1, 1, 20, 40, "b"), (1, 1, 20, 40.5, "a"),
             (2, 1, 20, 40, "a"), (1, 1, 20, 40, "a", True)]
    ann = _one_image(tmp_path, boxes)
    from deepvision.datasets.detection.schema import Box, ImageRecord

    Image.new("RGB", (50, 40)).save(tmp_path / "images" / "other.png")
    ann.splits["train"].append(ImageRecord(str(tmp_path / "images" / "other.png"), [Box(1, 1, 20, 20, "a")]))
    report = build_dataset(ann, tmp_path / "out")
    first = tmp_path / "images" / "img.png"
    assert report.notes == [f"dropped 3 box(es) given twice in one image (one class and coordinates), first: {first}"]
    assert report.counts["train"].boxes == 4
    index = load_index(tmp_path / "out")
    img, other = index.splits["train"]
    assert np.allclose(img.pixel_boxes(), [[1, 1, 20, 40], [1, 1, 20, 40], [2, 1, 20, 40]])
    assert [index.classes[int(k) - 1] for k in img.labels] == ["a", "b", "a"]
    assert img.difficult.tolist() == [0, 0, 0]  # the first given is the one kept
    assert np.allclose(other.pixel_boxes(), [[1, 1, 20, 20]])
    assert json.loads((tmp_path / "out" / "dataset.json").read_text())["notes"] == report.notes


def _give_a_box_twice(fmt: str, fake) -> tuple[Path, str]:
    """Repeat one box of `fake` in its own image, as a hand edit would; the file edited and the image's name."""
    out = fake.out
    if fmt == "yolo":
        path = next(p for p in sorted((out / "labels" / "train").glob("*.txt")) if p.read_text().strip())
        path.write_text(path.read_text() + path.read_text().splitlines()[-1] + "\n")
        return path, path.stem
    if fmt == "voc":
        path = sorted((out / "Annotations").glob("*.xml"))[0]
        text = path.read_text()
        obj = re.findall(r"<object>.*?</object>", text, re.S)[0]
        path.write_text(text.replace("</annotation>", obj + "</annotation>"))
        return path, re.search(r"<filename>(.*?)</filename>", text).group(1)
    if fmt == "coco":
        path = Path(fake.build_args[1].split("=")[-1])
        doc = json.loads(path.read_text())
        doc["annotations"].append({**doc["annotations"][0], "id": 99999})
        path.write_text(json.dumps(doc))
        image_id = doc["annotations"][0]["image_id"]
        return path, next(i["file_name"] for i in doc["images"] if i["id"] == image_id)
    if fmt == "imglab":
        path = Path(fake.build_args[1].split("=")[-1])
        text = path.read_text()
        box = re.search(r"<box .*?</box>", text, re.S).group(0)
        path.write_text(text.replace(box, box + box, 1))
        return path, re.search(r"<image file='(.*?)'", text).group(1)
    path = Path(fake.build_args[1].split("=")[-1])  # lisa
    lines = path.read_text().splitlines(keepends=True)
    line = next(x for x in lines[1:] if x.split(";")[1] in ("pedestrianCrossing", "signalAhead", "stop"))
    path.write_text("".join(lines) + line)
    return path, line.split(";")[0]


@pytest.mark.parametrize("fmt", ["yolo", "voc", "coco", "imglab", "lisa"])
def test_every_format_keeps_a_box_given_twice_once(tmp_path, run_cli, fmt):
    fake = make_fake(tmp_path / fmt, fmt, images=8, size=64, seed=3)
    code, _, err = run_cli("detection", "build", *fake.build_args, "--out", tmp_path / "before")
    assert code == 0, err
    before = json.loads((tmp_path / "before" / "dataset.json").read_text())
    edited, image = _give_a_box_twice(fmt, fake)
    text = edited.read_bytes()
    code, out, err = run_cli("detection", "build", *fake.build_args, "--out", tmp_path / "after")
    assert code == 0, err
    assert "dropped 1 box(es) given twice in one image (one class and coordinates), first:" in out
    after = json.loads((tmp_path / "after" / "dataset.json").read_text())
    note = [n for n in after["notes"] if "given twice" in n]
    assert not any("given twice" in n for n in before["notes"])
    assert len(note) == 1 and Path(note[0].split("first: ")[1]).stem == Path(image).stem, note
    assert after["counts"] == before["counts"]  # one target, as before the repeat
    assert edited.read_bytes() == text  # the input is left as it is


def test_split_options_are_refused_where_the_annotations_come_split(tmp_path, run_cli):
    """--test-fraction and --seed were taken and ignored when the annotations held their splits (VOC
    ImageSets/Main lists, COCO files per split): a 50% test split asked for, the files' 25% given, rc 0.
    Refused on one line like --reference-clip; they still draw the split of annotations that come as one set."""
    voc = make_fake(tmp_path / "voc", "voc", images=8, size=48, seed=0).out
    coco = make_fake(tmp_path / "coco", "coco", images=8, size=48, seed=0)
    for args, message in [
            (["voc", voc, "--test-fraction", "0.5", "--seed", "7"], f"--test-fraction and --seed apply when the "
             f"annotations come as one set; {voc} has ImageSets/Main lists (train, test): leave --test-fraction "
             f"and --seed out"),
            (["voc", voc, "--seed", "42"], "--seed applies when the annotations come as one set; "),
            (["coco", *coco.build_args[1:], "--test-fraction", "0"], "--test-fraction applies when the annotations "
             "come as one set; the coco annotations come in splits (train, val): leave --test-fraction out")]:
        code, out, err = run_cli("detection", "build", *args, "--out", tmp_path / "built")
        assert (code, out) == (2, "") and err.count("\n") == 1 and message in err, err
        assert not (tmp_path / "built").exists()
    with pytest.raises(UserError, match="--test-fraction applies when the annotations come as one set"):
        build_dataset(_one_image(tmp_path, [(1, 1, 20, 20, "a")]), tmp_path / "built", test_fraction=0.5)
    code, out, err = run_cli("detection", "build", "voc", voc, "--out", tmp_path / "built")
    assert code == 0 and "train        6 images" in out and "test         2 images" in out, err
    (voc / "ImageSets" / "Main" / "train.txt").unlink()
    (voc / "ImageSets" / "Main" / "test.txt").unlink()
    code, out, err = run_cli("detection", "build", "voc", voc, "--out", tmp_path / "one-set", "--test-fraction",
                             "0.5", "--seed", "7")
    assert code == 0 and "train        4 images" in out and "test         4 images" in out, err


def test_unknown_classes_missing_images_negatives_strict(tmp_path):
    from deepvision.datasets.detection.schema import Box, ImageRecord

    ann = _one_image(tmp_path, [(1, 1, 20, 20, "cat"), (2, 2, 9, 9, "zebra")])
    ann.splits["train"].append(ImageRecord(str(tmp_path / "images" / "gone.jpg"), [Box(1, 1, 5, 5, "cat")]))
    Image.new("RGB", (30, 30)).save(tmp_path / "images" / "empty.png")
    ann.splits["train"].append(ImageRecord(str(tmp_path / "images" / "empty.png")))
    report = build_dataset(ann, tmp_path / "out", classes=["cat", "dog"])
    text = "\n".join(report.notes)
    assert all(len(line) <= 80 or " " not in line.strip() for line in report.lines())  # wrapped to 80 columns
    gone = tmp_path / "images" / "gone.jpg"
    assert f"skipped 1 of 3 image(s) whose image file is missing; first: {gone}" in text
    assert "skipped 1 box(es) of 1 class(es) not in the class list: zebra (1)" in text
    assert report.counts["train"].images == 2 and report.counts["train"].negatives == 1
    with pytest.raises(UserError, match="missing.*--strict"):
        build_dataset(ann, tmp_path / "strict", classes=["cat", "dog"], strict=True)


def test_label_map_and_class_lists(tmp_path):
    (tmp_path / "label_map.pbtxt").write_text(label_map_text(["b", "a"]).replace("id: 1", "id:1"))
    assert read_class_list(str(tmp_path / "label_map.pbtxt")) == ["b", "a"]
    (tmp_path / "classes.txt").write_text("x\ny\n")
    assert read_class_list(str(tmp_path / "classes.txt")) == ["x", "y"]
    assert read_class_list("stop, yield") == ["stop", "yield"]
    with pytest.raises(UserError, match="repeat"):
        read_class_list("a,a")


@pytest.mark.parametrize("value, message", [
    ("label_map.pbtx", "class list file 'label_map.pbtx' not found (did you mean 'label_map.pbtxt'?)"),
    ("label_map.pbtxt ", "class list file 'label_map.pbtxt ' not found (did you mean 'label_map.pbtxt'?)"),
    ("label_map", "class list file 'label_map' not found (did you mean 'label_map.pbtxt'?)"),
    ("lists/classes.txt", "class list file 'lists/classes.txt' not found;"),
    ("data.yaml", "class list file 'data.yaml' not found;"),
    ("disc,label_map.pbtxt", "--classes 'disc,label_map.pbtxt' mixes the file 'label_map.pbtxt' with class names"),
])
def test_classes_naming_a_missing_file_is_refused(tmp_path, monkeypatch, run_cli, value, message):
    """A --classes value that names a file (a path separator, a file suffix, NAME.pbtxt beside it) but no
    existing file is one line, exit 2: never a one-class set named after the file with every box dropped."""
    monkeypatch.chdir(tmp_path)
    make_fake(tmp_path / "y", "yolo", images=4, size=64)
    Path("label_map.pbtxt").write_text(label_map_text(["disc", "square", "triangle"]))
    code, _, err = run_cli("detection", "build", "yolo", "y", "--classes", value, "--out", "b")
    assert code == 2 and message in err and err.count("\n") == 1 and not Path("b").exists()
    assert read_class_list("disc, square") == ["disc", "square"] and read_class_list("st.louis") == ["st.louis"]


def test_label_map_names_with_quotes_round_trip(tmp_path):
    """A quote or backslash in a class name is escaped in label_map.pbtxt and read back the same; a
    name with a brace or "id: 9" inside stays one name; an unescaped quote is one line, never a rename."""
    names = ["driver's seat", "back\\slash", 'say "hi"', "x } id: 9"]
    text = label_map_text(names)
    assert "name: 'driver\\'s seat'" in text and "name: 'back\\\\slash'" in text
    (tmp_path / "label_map.pbtxt").write_text(text)
    assert read_class_list(str(tmp_path / "label_map.pbtxt")) == names
    (tmp_path / "tfod.pbtxt").write_text('item {\n  name: "a\\"b\\303\\251"\n  id: 1\n  display_name: "A"\n}\n')
    assert read_class_list(str(tmp_path / "tfod.pbtxt")) == ['a"b\u00e9']  # octal escapes are UTF-8 bytes
    (tmp_path / "bad.pbtxt").write_text("item {\n  id: 1\n  name: 'driver's seat'\n}\n")
    with pytest.raises(UserError, match="unclosed quote"):
        read_class_list(str(tmp_path / "bad.pbtxt"))


@pytest.mark.parametrize("text, message", [
    ("item { id: 1.9 name: 'disc' }\n", "item { id: 1.9 name: 'disc' }.* has id '1.9', not a whole number"),
    ("item { id: 1e0 name: 'disc' }\n", "has id '1e0', not a whole number"),
    ("item { id: 2 id: 1 name: 'disc' }\nitem { id: 2 name: 'b' }\n",
     "item { id: 2 id: 1 name: 'disc' }.* gives 'id' twice"),
    ("item { id: 1 name: 'b' name: 'disc' }\n", "gives 'name' twice"),
    ("item { id: 1 name: disc }\n", "unquoted name"),
])
def test_label_map_read_as_protobuf_reads_it(tmp_path, text, message):
    """What protobuf's text_format.Parse refuses (a non-integer id, a field given twice) is one line naming
    the item, never a guess at which value was meant; the file is left as it was."""
    path = tmp_path / "label_map.pbtxt"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        read_class_list(str(path))
    assert path.read_text() == text


def test_label_map_comments_and_display_name(tmp_path):
    """`#` to the end of a line is a comment (not inside a name); the class is `name` wherever display_name
    stands; adjacent string literals are one name, as protobuf reads them."""
    path = tmp_path / "label_map.pbtxt"
    path.write_text("item { id: 1 display_name: 'square' name: 'disc' }\n# item { id: 3 name: 'old' }\n"
                    "item {\n  id: 2  # square\n  name: 'sq' \"uare # 2\"\n  display_name: 'disc'\n}\n")
    assert read_class_list(str(path)) == ["disc", "square # 2"]


@pytest.mark.parametrize("text", [
    "item: { id: 1 name: 'b' }\nitem < id: 2 name: 'a' >\nitem { id: 3; name: 'c', }\n",
    "item: [{ id: 3 name: 'c' }, { id: 1 name: 'b' }]\nitem {\n  id: 2\n  name: 'a'\n  keypoints {\n    id: 0\n"
    "    label: 'apex'\n  }\n  keypoints < id: 1 label: 'base' >\n  frequency: RARE\n  instance_count: 4\n"
    "  ancestor_ids: [5, 6]\n  descendant_ids: 7\n}\n",
])
def test_label_map_every_protobuf_spelling_of_an_item(tmp_path, text):
    """`item {`, `item: {`, `item < >` and `item: [...]` are one field to protobuf; the fields TFOD's
    StringIntLabelMapItem has besides id and name (keypoints, LVIS counts) are read and left aside; a .txt
    holding such items is read as a label map, not as class names."""
    for name in ("label_map.pbtxt", "classes.txt"):
        (tmp_path / name).write_text(text)
        assert read_class_list(str(tmp_path / name)) == ["b", "a", "c"]


@pytest.mark.parametrize("text, message", [
    ("item { id: 1 name: 'disc' }\niten { id: 2 name: 'square' }\n",
     r"line 2: a label map has no field named 'iten' \(it has item\)"),
    ("item { id: 1 name: 'disc' colour: 'red' }\n", "line 1: a label map item has no field named 'colour'"),
    ("item { id: 1 name: 'disc' keypoints { id: 0 lable: 'x' } }\n", "a keypoint has no field named 'lable'"),
    ("item { id: 1 name: 'disc' frequency: OFTEN }\n", "has frequency 'OFTEN'; use one of UNSPECIFIED"),
    ("item { id: 1 name: 'disc' keypoints: 3 }\n", "'keypoints' is a message: write keypoints { ... }"),
    ("item { id: 1 name: 'disc' }}\n", "expected a field name, got '}'"),
    ("item { id: 1 name: 'disc'\n", "an item's '}' is missing"),
    ("# no items\n", "no class names"),
])
def test_label_map_unknown_fields_and_broken_text_are_refused(tmp_path, text, message):
    """What protobuf refuses (a field the proto lacks, a brace too many or too few) is one line naming it:
    an item is never dropped and the file never taken as "no classes given"."""
    path = tmp_path / "label_map.pbtxt"
    path.write_text(text)
    with pytest.raises(UserError, match=message) as err:
        read_class_list(str(path))
    assert "\n" not in str(err.value) and path.read_text() == text


def test_load_index_rejects_edited_files(tmp_path):
    build_dataset(_one_image(tmp_path, [(1, 1, 20, 20, "a")]), tmp_path / "out")
    doc = json.loads((tmp_path / "out" / "train.json").read_text())
    doc["images"][0]["labels"] = [5]
    (tmp_path / "out" / "train.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match="class ids outside 1..1"):
        load_index(tmp_path / "out")
    with pytest.raises(UserError, match="not a built detection dataset"):
        load_index(tmp_path)


@pytest.mark.parametrize(("name", "edit"), [
    ("classes.txt", lambda text: "b\na\n"),
    ("label_map.pbtxt", lambda text: text.replace("'a'", "'@'").replace("'b'", "'a'").replace("'@'", "'b'")),
    ("label_map.pbtxt", lambda text: text.replace("name: 'b'", "name: 'c'")),
    ("label_map.pbtxt", lambda text: text.replace("id: 1", "id: @").replace("id: 2", "id: 1").replace("@", "2")),
    ("train.json", None),
])
def test_load_index_refuses_companions_that_disagree(tmp_path, name, edit):
    """classes.txt, label_map.pbtxt and each box's class name repeat what dataset.json and the class ids say;
    one reordered or renamed by hand was ignored here (and believed by the tools that read it)."""
    build_dataset(_one_image(tmp_path, [(1, 1, 20, 20, "a"), (2, 2, 30, 30, "b")]), tmp_path / "out")
    assert load_index(tmp_path / "out").classes == ["a", "b"]
    label_map, built = tmp_path / "out" / "label_map.pbtxt", (tmp_path / "out" / "label_map.pbtxt").read_text()
    label_map.write_text(built.replace("'", '"'))  # double quotes: the same label map
    assert load_index(tmp_path / "out").classes == ["a", "b"]
    label_map.write_text(built)
    path = tmp_path / "out" / name
    if edit is None:
        doc = json.loads(path.read_text())
        doc["images"][0]["names"] = doc["images"][0]["names"][::-1]
        path.write_text(json.dumps(doc))
        message = r"train.json: .* names classes \['b', 'a'\] that its class ids do not give; rebuild the dataset"
    else:
        path.write_text(edit(path.read_text()))
        message = rf"{re.escape(str(path))} disagrees with the classes of .*dataset.json; rebuild the dataset"
    with pytest.raises(UserError, match=message):
        load_index(tmp_path / "out")


@pytest.mark.parametrize(("edit", "message"), [
    ({"boxes": [[float("nan"), 0.1, 0.5, 0.5]]}, "has a box that is not a finite number"),
    ({"width": 1e9, "height": 1e9}, "is 1000000000 x 1000000000; sides must be 1 to 16,384"),
    ({"width": 0}, "sides must be 1 to 16,384"),
    ({"file": "../../../../etc/passwd"}, "leaves the image folder"),
    ({"file": "/etc/passwd"}, "leaves the image folder"),
    ({"file": 7}, "malformed image entry"),
    ({"labels": [1.5]}, "has class id 1.5; class ids are whole numbers"),
    ({"labels": [True]}, "has class id True; class ids are whole numbers"),
    ({"difficult": ["maybe"]}, "has difficult flag 'maybe'; difficult flags are 0 or 1"),
    ({"difficult": [2]}, "has difficult flag 2; difficult flags are 0 or 1"),
])
def test_load_index_refuses_values_a_build_never_writes(tmp_path, edit, message):
    """A train.json edited by hand (or sent by someone): NaN boxes, sides past the ceiling, files outside
    the image folder are one line naming the split file, before any image is read."""
    build_dataset(_one_image(tmp_path, [(1, 1, 20, 20, "a")]), tmp_path / "out")
    doc = json.loads((tmp_path / "out" / "train.json").read_text())
    doc["images"][0].update(edit)
    (tmp_path / "out" / "train.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match=rf"train.json: .*{re.escape(message)}.*rebuild the dataset"):
        load_index(tmp_path / "out")


@pytest.mark.parametrize("classes, message", [
    (["disc\x1b[2J"], "'classes': class name 'disc\\x1b[2J' is empty or holds a control character"),
    ([7], "'classes' must be a list of class names (text); rebuild the dataset"),
])
def test_load_index_refuses_class_names_a_build_never_writes(tmp_path, run_cli, classes, message):
    build_dataset(_one_image(tmp_path, [(1, 1, 20, 20, "a")]), tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    meta["classes"] = classes
    (tmp_path / "out" / "dataset.json").write_text(json.dumps(meta))
    code, out, err = run_cli("detection", "show", tmp_path / "out", "--split", "train", "--out", tmp_path / "show")
    assert code == 2 and out == "" and err.count("\n") == 1 and "\x1b" not in err, err
    assert err.startswith(f"deepvision detection show: error: {tmp_path / 'out' / 'dataset.json'} {message}"), err
    assert not (tmp_path / "show").exists()
    doc = json.loads((tmp_path / "out" / "train.json").read_text())
    doc["images"][0]["difficult"] = [True]  # JSON's true is a yes/no flag
    meta["classes"] = ["a"]
    (tmp_path / "out" / "dataset.json").write_text(json.dumps(meta))
    (tmp_path / "out" / "train.json").write_text(json.dumps(doc))
    assert load_index(tmp_path / "out").splits["train"][0].difficult.tolist() == [True]


def test_cli_build_fake_show(tmp_path, run_cli):
    code, out, _ = run_cli("detection", "fake", "--format", "voc", "--out", tmp_path / "voc", "--images", "6",
                           "--size", "64")
    assert code == 0 and "deepvision detection build voc" in out
    code, out, _ = run_cli("detection", "build", "voc", tmp_path / "voc", "--out", tmp_path / "built")
    assert code == 0 and "3 classes; wrote" in out
    assert max(len(line) for line in out.splitlines() if str(tmp_path) not in line) <= 80
    code, out, _ = run_cli("detection", "show", tmp_path / "built", "--count", "2")
    shown = sorted((tmp_path / "built" / "show").glob("*.png"))
    assert code == 0 and len(shown) == 2
    index = load_index(tmp_path / "built", ["train"])
    first = next(i for i, img in enumerate(index.splits["train"]) if len(img.boxes))
    run_cli("detection", "show", tmp_path / "built", "--count", "99", "--out", tmp_path / "all")
    drawn = np.asarray(Image.open(sorted((tmp_path / "all").glob(f"train_{first:05d}_*.png"))[0]))
    x1, y1, x2, y2 = index.splits["train"][first].pixel_boxes()[0].round().astype(int)
    edge = drawn[y1 + 3: y2 - 3, x1]  # the left edge of the first box
    assert ((edge == [0, 255, 0]).all(1) | (edge == [255, 165, 0]).all(1)).all()
    code, _, err = run_cli("detection", "build", "coco", tmp_path / "nope.json", "--out", tmp_path / "x")
    assert code == 2 and err.count("\n") == 1 and "not found" in err


@pytest.mark.parametrize(("stop", "code"), [(Terminated, 143), (KeyboardInterrupt, 130)])
def test_a_stopped_show_leaves_the_folder_as_it_was(tmp_path, run_cli, monkeypatch, stop, code):
    """Ctrl+C or SIGTERM at the second drawing: the earlier show stays as it was (none of this run's drawings
    without its show.json, which the next show would refuse), a new --out is not created."""
    from deepvision.datasets.detection import show

    run_cli("detection", "fake", "--format", "voc", "--out", tmp_path / "voc", "--images", "6", "--size", "64")
    run_cli("detection", "build", "voc", tmp_path / "voc", "--out", tmp_path / "built")
    assert run_cli("detection", "show", tmp_path / "built", "--count", "1", "--out", tmp_path / "s")[0] == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "s").iterdir()}
    real_draw, calls = show.draw_boxes, []

    def stop_at_the_second(image, classes):
        calls.append(image)
        if len(calls) % 2 == 0:
            raise stop
        return real_draw(image, classes)

    monkeypatch.setattr(show, "draw_boxes", stop_at_the_second)
    for out in (tmp_path / "s", tmp_path / "new" / "s"):
        got, _, err = run_cli("detection", "show", tmp_path / "built", "--count", "3", "--seed", "1", "--out", out)
        assert (got, err.count("\n")) == (code, 1)
    assert {p.name: p.read_bytes() for p in (tmp_path / "s").iterdir()} == before
    assert not (tmp_path / "new").exists()
    monkeypatch.setattr(show, "draw_boxes", real_draw)
    code, _, err = run_cli("detection", "show", tmp_path / "built", "--count", "3", "--seed", "1",
                           "--out", tmp_path / "s")
    assert code == 0, err


def test_show_draws_only_into_its_own_folder(tmp_path, run_cli):
    """A folder of the user's files (one named like a drawing) or a run's folder is refused in one line,
    nothing replaced or added; the default DIR/show, with its show.json, is drawn into again."""
    run_cli("detection", "fake", "--format", "voc", "--out", tmp_path / "voc", "--images", "6", "--size", "64")
    run_cli("detection", "build", "voc", tmp_path / "voc", "--out", tmp_path / "built")
    code, _, err = run_cli("detection", "show", tmp_path / "built", "--count", "2")
    assert code == 0, err
    drawn = sorted(p.name for p in (tmp_path / "built" / "show").glob("*.png"))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / drawn[0]).write_bytes(b"my photo")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: {name: lenet}\n")
    for out in (mine, run, tmp_path / "built"):
        before = sorted(p.name for p in out.iterdir())
        code, text, err = run_cli("detection", "show", tmp_path / "built", "--count", "2", "--out", out)
        assert (code, text) == (2, "") and err.count("\n") == 1, err
        assert f"--out {out} holds files but no show.json of an earlier detection show" in err
        assert sorted(p.name for p in out.iterdir()) == before
    assert (mine / drawn[0]).read_bytes() == b"my photo"
    code, _, err = run_cli("detection", "show", tmp_path / "built", "--count", "3", "--seed", "1")
    assert code == 0, err
    marker = json.loads((tmp_path / "built" / "show" / "show.json").read_text())
    assert marker["split"] == "train" and len(marker["images"]) == 3
    (tmp_path / "built" / "show" / "show.json").write_text(json.dumps({**marker, "images": marker["images"][1:]}))
    first = tmp_path / "built" / "show" / marker["images"][0]  # now a file the earlier show does not list
    first.write_bytes(b"the user's picture, put there since")
    code, _, err = run_cli("detection", "show", tmp_path / "built", "--count", "3", "--seed", "1")
    assert code == 2 and f"holds {first.name}, which its show.json does not list as an output" in err, err
    assert first.read_bytes() == b"the user's picture, put there since"



def test_fake_refuses_a_folder_that_already_holds_data(tmp_path, run_cli):
    """`detection fake --out` over an existing dataset writes nothing: its fixed names
    (Annotations/2008_000000.xml ...) would replace the user's annotations."""
    ann = tmp_path / "voc" / "Annotations"
    ann.mkdir(parents=True)
    (ann / "2008_000000.xml").write_text("<annotation>mine</annotation>")
    code, _, err = run_cli("detection", "fake", "--format", "voc", "--out", tmp_path / "voc", "--images", "4",
                           "--size", "48")
    assert code == 2 and err.count("\n") == 1 and "not empty" in err
    assert (ann / "2008_000000.xml").read_text() == "<annotation>mine</annotation>"
    assert sorted(p.name for p in (tmp_path / "voc").rglob("*")) == ["2008_000000.xml", "Annotations"]
    (tmp_path / "empty").mkdir()
    code, _, _ = run_cli("detection", "fake", "--format", "yolo", "--out", tmp_path / "empty", "--images", "2",
                         "--size", "48")
    assert code == 0 and (tmp_path / "empty" / "data.yaml").is_file()


@pytest.mark.parametrize(("where", "call", "stop"), [
    ("fake.fake_scene", 3, "Terminated"), ("fake.fake_scene", 5, "KeyboardInterrupt"),
    ("fake._write_coco", 1, "Terminated")])
def test_a_stopped_fake_leaves_no_half_written_tree(tmp_path, run_cli, monkeypatch, where, call, stop):
    """SIGTERM (or Ctrl+C) while `detection fake` wrote its images left train2017/ without annotations/, and
    its own next run refused the folder as not empty: a stop removes what the run wrote."""
    from deepvision import errors

    exc = getattr(errors, stop, KeyboardInterrupt)
    stop_on_call(monkeypatch, f"deepvision.datasets.detection.{where}", call, exc)
    out = tmp_path / "sets" / "coco"
    code, _, err = run_cli("detection", "fake", "--format", "coco", "--out", out, "--images", "6", "--size", "48")
    if stop == "Terminated":
        assert (code, err) == (143, "deepvision detection fake: terminated (SIGTERM); unfinished files were removed\n")
    else:
        assert (code, err) == (130, "interrupted\n")
    assert not (tmp_path / "sets").exists()
    monkeypatch.undo()
    code, _, err = run_cli("detection", "fake", "--format", "coco", "--out", out, "--images", "6", "--size", "48")
    assert code == 0 and (out / "annotations" / "instances_val2017.json").is_file(), err


@pytest.mark.parametrize("stop", [Terminated, KeyboardInterrupt])
def test_a_stopped_build_leaves_no_file_its_next_run_refuses(tmp_path, run_cli, monkeypatch, stop):
    """A build stopped after its first split file, before dataset.json, left a folder the same command then
    refused as not its own; a stopped rebuild left new split files beside the earlier dataset.json. The
    files land together at the end: a stop leaves no new folder, and an earlier build whole."""
    assert run_cli("detection", "fake", "--format", "voc", "--out", tmp_path / "voc", "--images", "8",
                   "--size", "48")[0] == 0
    build = ["detection", "build", "voc", tmp_path / "voc", "--out", tmp_path / "new" / "built"]
    stop_on_call(monkeypatch, "deepvision.datasets.detection.build.atomic_write_text", 2, stop)
    code, _, err = run_cli(*build)
    assert code == (143 if stop is Terminated else 130) and err.count("\n") == 1, err
    assert not (tmp_path / "new").exists()
    monkeypatch.undo()
    assert run_cli(*build)[0] == 0
    built = tmp_path / "new" / "built"
    before = {p.name: p.read_bytes() for p in built.iterdir()}
    stop_on_call(monkeypatch, "deepvision.datasets.detection.build.atomic_write_text", 4, stop)
    assert run_cli(*build, "--classes", "triangle,square,disc")[0] in (130, 143)  # files that differ
    assert {p.name: p.read_bytes() for p in built.iterdir()} == before


@pytest.mark.parametrize(("splits", "message"), [
    (["dataset"], "'splits': split name 'dataset' is a name the folder's own files take"),
    (["../train"], "'splits': split name must be a plain file name (no path separators"),
    (["tr\x1bain"], "'splits': split name must be a plain file name"),
    ("train", "'splits' must be a list of split names; rebuild the dataset"),
    ([7], "'splits': split name must be a plain file name"),
])
def test_load_index_reads_only_the_splits_dataset_json_lists_by_plain_names(tmp_path, run_cli, splits, message):
    """`--split dataset` read dataset.json itself as a split ("has no image"); a hand-edited list of splits
    ('../x', a word instead of a list) led to files outside the dataset. Each is one line, nothing drawn."""
    build_dataset(_one_image(tmp_path, [(1, 1, 20, 20, "a")]), tmp_path / "out")
    for split in ("dataset", "classes", "../out/train", "val"):
        code, out, err = run_cli("detection", "show", tmp_path / "out", "--split", split, "--out", tmp_path / "show")
        assert (code, out) == (2, "") and err.count("\n") == 1, err
        assert err == f"deepvision detection show: error: split {split!r} not found in {tmp_path / 'out'}; " \
                      f"available: train\n"
    meta_path = tmp_path / "out" / "dataset.json"
    meta = json.loads(meta_path.read_text())
    meta["splits"] = splits
    meta_path.write_text(json.dumps(meta))
    code, out, err = run_cli("detection", "show", tmp_path / "out", "--out", tmp_path / "show")
    assert (code, out) == (2, "") and err.count("\n") == 1 and "\x1b" not in err, err
    assert err.startswith(f"deepvision detection show: error: {meta_path} {message}"), err
    assert not (tmp_path / "show").exists()


@pytest.mark.parametrize("case", ["test", "train", "spelled", "link"])
def test_load_index_refuses_an_image_listed_twice_or_in_two_splits(tmp_path, run_cli, case):
    """A hand-edited or merged index listing a training image in test.json trained and scored it without a word (the
    test score counted an image trained on); one listed twice in train.json weighed double. The build never writes
    either: every reader refuses it in one line naming the image and both places, the split not asked for too."""
    from tests.detection_helpers import built_fake

    root = built_fake(tmp_path, images=8, size=48)
    train = json.loads((root / "train.json").read_text())
    first = train["images"][0]["file"]
    entry = dict(train["images"][0], file={"spelled": f"./{first}", "link": "link.jpg"}.get(case, first))
    if case == "link":
        image_root = root / json.loads((root / "dataset.json").read_text())["image_root"]
        (image_root / "link.jpg").symlink_to(image_root / first)
    split = "train" if case == "train" else "test"
    doc = json.loads((root / f"{split}.json").read_text())
    doc["images"].append(entry)
    (root / f"{split}.json").write_text(json.dumps(doc))
    before = {p.name: p.read_bytes() for p in root.iterdir()}
    last = f"image {len(doc['images'])} of {root / f'{split}.json'}"
    name = "link.jpg (one file with {first}: a link)" if case == "link" else first
    message = f"{name.format(first=first)} is listed twice, as image 1 of {root / 'train.json'} and {last}; an image " \
              f"belongs to one split, once: keep one entry or rebuild the dataset"
    for splits in (None, ["test"], ["train"]):
        with pytest.raises(UserError) as err:
            load_index(root, splits)
        assert str(err.value) == message
    assert load_index(root, []).classes  # the metadata alone reads no split
    code, out, err = run_cli("detection", "show", root, "--split", "test", "--out", tmp_path / "show")
    assert (code, out, err) == (2, "", f"deepvision detection show: error: {message}\n")
    assert not (tmp_path / "show").exists() and {p.name: p.read_bytes() for p in root.iterdir()} == before


@pytest.mark.parametrize(("edit", "message"), [
    ({"difficult": [0, 1]}, "has 1 box(es) but 2 difficult flag(s); rebuild the dataset"),
    ({"difficult": []}, "has 1 box(es) but 0 difficult flag(s); rebuild the dataset"),
    ({"labels": [1, 1]}, "has 1 box(es) but 2 label(s); rebuild the dataset"),
])
def test_load_index_names_the_list_whose_length_differs_from_the_boxes(tmp_path, edit, message):
    """A difficult list shorter or longer than the boxes read "has 2 boxes but 2 labels": the wrong field."""
    build_dataset(_one_image(tmp_path, [(1, 1, 20, 20, "a")]), tmp_path / "out")
    doc = json.loads((tmp_path / "out" / "train.json").read_text())
    doc["images"][0].update(edit)
    (tmp_path / "out" / "train.json").write_text(json.dumps(doc))
    with pytest.raises(UserError) as err:
        load_index(tmp_path / "out")
    assert str(err.value) == f"{tmp_path / 'out' / 'train.json'}: img.png {message}"
