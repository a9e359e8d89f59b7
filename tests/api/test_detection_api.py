"""The Python API mirrors the detection CLI: detection_fake -> detection_build -> train -> evaluate -> detect
(image, folder, video) -> export."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepvision import api
from deepvision.data.detection import load_index
from deepvision.errors import UserError


def test_fake_then_build_like_the_cli(tmp_path, run_cli):
    fake = api.detection_fake(tmp_path / "yolo", "yolo", images=8, size=64, seed=1)
    assert fake.classes == ["disc", "square", "triangle"] and sum(len(v) for v in fake.splits.values()) == 8
    report = api.detection_build("yolo", fake.build_args[1], tmp_path / "built")
    index = load_index(tmp_path / "built")
    assert report.classes == index.classes == fake.classes
    assert {s: c.images for s, c in report.counts.items()} == {s: len(v) for s, v in index.splits.items()}
    objects = sum(len(i.objects) for v in fake.splits.values() for i in v)
    assert sum(c.boxes for c in report.counts.values()) == objects
    code, out, err = run_cli("detection", "build", "yolo", fake.build_args[1], "--out", tmp_path / "cli")
    assert code == 0, err
    assert "\n".join(report.lines()).replace("built", "cli") == out.rstrip("\n")  # the same counts and notes
    assert (tmp_path / "cli" / "train.json").read_text() == (tmp_path / "built" / "train.json").read_text()
    only_two = api.detection_build("yolo", fake.build_args[1], tmp_path / "two", classes=["disc", "square"])
    assert only_two.classes == ["disc", "square"]
    recipe = api._as_config("detection_synthetic", ["data.root=shapes-built"])  # train takes recipe names too
    assert recipe.task == "detection" and recipe.data.root == "shapes-built"
    with pytest.raises(UserError, match="unknown annotation format"):
        api.detection_build("pascal", fake.build_args[1], tmp_path / "x")


def test_evaluate_and_detect_on_image_folder_and_video(trained_detection_run, tmp_path, capsys):
    cv2 = pytest.importorskip("cv2")
    report = api.evaluate(trained_detection_run, out=tmp_path / "eval")  # a detection run: test split by default
    printed = capsys.readouterr().out
    assert printed.startswith("test: 3 images") and "VOC mAP@0.5, all-point (VOC2010+): " in printed
    trained = json.loads((trained_detection_run / "test_metrics.json").read_text())
    assert report["split"] == "test" and report["voc_map50"] == pytest.approx(trained["test_map50"], abs=1e-12)

    root = api.load_run(trained_detection_run).cfg.data.root
    files = [im.file for im in load_index(root, ["test"]).splits["test"]]
    folder = tmp_path / "folder"
    folder.mkdir()
    for f in files[1:]:
        (folder / f.name).write_bytes(f.read_bytes())
    writer = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5, (96, 96))
    for f in files:
        writer.write(cv2.resize(cv2.imread(str(f)), (96, 96)))
    writer.release()
    images, videos = api.detect(trained_detection_run, [files[0], folder, tmp_path / "clip.mp4"],
                                min_confidence=0.1, out=tmp_path / "out")
    assert [r.source for r in images] == [str(files[0]), *(str(folder / f.name) for f in files[1:])]
    assert all(d.score >= 0.1 and d.name in ("disc", "square", "triangle") for r in images for d in r.detections)
    assert videos[0].frames == len(files) and len(videos[0].per_frame) == len(files)
    doc = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert len(doc["images"]) == len(files) and len(doc["videos"][0]["detections"]) == len(files)
    single, _ = api.detect(trained_detection_run, files[0], min_confidence=0.1)  # one path, nothing written
    assert [d.box for d in single[0].detections] == [d.box for d in images[0].detections]
    assert np.isfinite([d.score for r in images for d in r.detections]).all()
