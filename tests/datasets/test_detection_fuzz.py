"""Property tests of the annotation readers: random and mutated VOC, COCO, imglab and YOLO files end in
annotations or a one-line UserError, never another exception (a bounded number of examples)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from deepvision.datasets.detection.build import build_dataset, read_annotations
from deepvision.errors import UserError

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies
SETTINGS = hypothesis.settings(max_examples=60, deadline=None, derandomize=True,
                               suppress_health_check=list(hypothesis.HealthCheck))

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
NUMBER = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**12, 10**12),
                   st.sampled_from(["nan", "inf", "-1", "1e400", "", "x", "1.5"]))
JSON_VALUE = st.recursive(st.one_of(st.none(), st.booleans(), NUMBER, TEXT),
                          lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                  st.dictionaries(TEXT, inner, max_size=3)), max_leaves=12)


def _outcome(fmt: str, inputs: list[str], out: Path) -> None:
    try:
        ann = read_annotations(fmt, inputs)
        build_dataset(ann, out, fix="clip", test_fraction=0)
    except UserError as exc:
        assert "\n" not in str(exc)


def _image(folder: Path) -> None:
    from PIL import Image

    Image.new("RGB", (20, 10)).save(folder / "a.jpg")


@SETTINGS
@hypothesis.given(name=TEXT, filename=st.one_of(TEXT, st.just("a.jpg")), coords=st.lists(NUMBER, min_size=4,
                                                                                          max_size=4))
def test_voc_xml(name, filename, coords):
    from xml.sax.saxutils import escape

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _image(root)
        box = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), coords))
        text = (f"<annotation><filename>{escape(filename)}</filename><object><name>{escape(name)}</name>"
                f"<bndbox>{box}</bndbox></object></annotation>")
        try:
            (root / "a.xml").write_text(text, encoding="utf-8")
        except UnicodeEncodeError:
            return
        _outcome("voc", [str(root)], root / "out")


@SETTINGS
@hypothesis.given(doc=st.one_of(JSON_VALUE, st.fixed_dictionaries({
    "images": st.lists(st.fixed_dictionaries({"id": JSON_VALUE, "file_name": st.one_of(TEXT, st.just("a.jpg")),
                                              "width": JSON_VALUE, "height": JSON_VALUE}), max_size=2),
    "annotations": st.lists(st.fixed_dictionaries({"image_id": JSON_VALUE, "category_id": JSON_VALUE,
                                                   "bbox": st.one_of(JSON_VALUE, st.lists(NUMBER, min_size=4,
                                                                                          max_size=4))}), max_size=2),
    "categories": st.lists(st.fixed_dictionaries({"id": JSON_VALUE, "name": JSON_VALUE}), max_size=2)})))
def test_coco_json(doc):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _image(root)
        (root / "train.json").write_text(json.dumps(doc))
        _outcome("coco", [f"train={root / 'train.json'}"], root / "out")


@SETTINGS
@hypothesis.given(lines=st.lists(st.lists(NUMBER, max_size=6).map(lambda v: " ".join(map(str, v))), max_size=3),
                  names=JSON_VALUE)
def test_yolo_labels_and_names(lines, names):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "images").mkdir()
        (root / "labels").mkdir()
        _image(root / "images")
        (root / "labels" / "a.txt").write_text("\n".join(lines))
        (root / "data.yaml").write_text(json.dumps({"path": ".", "train": "images", "names": names}))
        _outcome("yolo", [str(root / "data.yaml")], root / "out")


@SETTINGS
@hypothesis.given(file=st.one_of(TEXT, st.just("a.jpg")), values=st.lists(NUMBER, min_size=4, max_size=4))
def test_imglab_xml(file, values):
    from xml.sax.saxutils import quoteattr

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _image(root)
        attrs = " ".join(f"{k}={quoteattr(str(v))}" for k, v in zip(("top", "left", "width", "height"), values))
        try:
            (root / "training.xml").write_text(f"<dataset><images><image file={quoteattr(file)}><box {attrs}>"
                                               f"<label>a</label></box></image></images></dataset>", encoding="utf-8")
        except UnicodeEncodeError:
            return
        _outcome("imglab", [str(root / "training.xml")], root / "out")
