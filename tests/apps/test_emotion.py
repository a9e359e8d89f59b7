"""Emotion case study: FER2013 CSV -> HDF5, a recipe trained on it, and the §9.1 app run headless on a
video made from the astronaut photo (moved and scaled across frames)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from deepvision.apps.emotion.app import frames_from, run_emotion
from deepvision.apps.emotion.fer2013 import build_fer2013, make_fake_fer_csv
from deepvision.data.hdf5 import read_hdf5_arrays
from tests.faces.facetools import expected_box, fer_model, iou, write_video

SIX = ["angry", "scared", "happy", "sad", "surprised", "neutral"]


@pytest.fixture(scope="module")
def fer_csv(tmp_path_factory) -> Path:
    return make_fake_fer_csv(tmp_path_factory.mktemp("fer") / "fer2013.csv", rows=70, seed=1)


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_fer2013_build_six_classes(fer_csv, tmp_path, run_cli):
    rows = _csv_rows(fer_csv)
    code, out, err = run_cli("fer2013", "build", fer_csv, "--out", tmp_path / "fer")
    assert code == 0, err
    total = 0
    for split, usage in (("train", "Training"), ("val", "PrivateTest"), ("test", "PublicTest")):
        images, labels, names = read_hdf5_arrays(tmp_path / "fer" / f"{split}.hdf5")
        mine = [r for r in rows if r["Usage"] == usage]
        want = [{0: 0, 1: 0, 2: 1, 3: 2, 4: 3, 5: 4, 6: 5}[int(r["emotion"])] for r in mine]  # disgust -> angry
        assert images.dtype == np.float64 and images.shape == (len(mine), 48, 48) and names == SIX
        assert labels.tolist() == want
        assert images[0].ravel().astype(int).tolist() == [int(v) for v in mine[0]["pixels"].split()]
        total += len(labels)
    assert total == len(rows)
    assert "train" in out and "surprised" in out
    code, _, err = run_cli("fer2013", "build", fer_csv, "--out", tmp_path / "fer")
    assert code == 2 and "already exist" in err  # never overwritten


def test_fer2013_build_seven_classes_and_bad_rows(fer_csv, tmp_path, run_cli):
    build = build_fer2013(fer_csv, tmp_path / "fer7", classes=7, dtype="uint8")
    assert len(build.classes) == 7 and sum(build.counts["train"]) > 0 and build.counts["val"][1] > 0  # disgust kept
    bad = tmp_path / "bad.csv"
    lines = fer_csv.read_text().splitlines()
    lines[5] = lines[5].replace(",Training", ",Somewhere").replace(",PrivateTest", ",Somewhere").replace(
        ",PublicTest", ",Somewhere")
    bad.write_text("\n".join(lines) + "\n")
    code, _, err = run_cli("fer2013", "build", bad, "--out", tmp_path / "bad")
    assert code == 2 and "bad.csv:6: Usage must be" in err
    assert not any((tmp_path / "bad").glob("*.hdf5"))  # nothing half-written


@pytest.fixture(scope="module")
def astronaut_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "astronaut.avi"
    return path, write_video(path, frames=8, blank_frames=(5,))


@pytest.fixture(scope="module")
def fer_run(tmp_path_factory):
    from deepvision.interop.keras_import import import_keras

    return import_keras(fer_model(), tmp_path_factory.mktemp("runs") / "fer", "auto")


def test_emotion_headless_frames_on_the_moving_astronaut(astronaut_video, fer_run, tmp_path, run_cli):
    video, plan = astronaut_video
    out = tmp_path / "annotated"
    code, stdout, err = run_cli("emotion", fer_run, "--video", video, "--headless", "--out", out)
    assert code == 0, err
    assert "frames/s" in stdout and "no face found in 1 of 8 frames" in stdout
    rows = _csv_rows(out / "results.csv")
    assert len(rows) == 8
    for i, (row, (scale, dx, dy)) in enumerate(zip(rows, plan)):
        if i == 5:  # the blank frame: said so, and the run went on
            assert row["faces"] == "0" and row["label"] == "" and row["x"] == ""
            continue
        box = tuple(int(row[k]) for k in "xywh")
        assert iou(box, expected_box(scale, dx, dy)) > 0.6, (i, box)
        assert row["label"] == "happy" and float(row["happy"]) > 0.8
        frame = cv2.imread(str(out / "face" / f"{i:06d}.png"))
        assert frame.shape == (225, 300, 3)  # resized to width 300
        x, y, w, h = box
        assert (frame[y + h // 2, x] == (0, 0, 255)).all() and (frame[y, x + w // 2] == (0, 0, 255)).all()
        canvas = cv2.imread(str(out / "probabilities" / f"{i:06d}.png"))
        assert canvas.shape == (7 * 35 + 10, 300, 3)
        end = int(float(row["happy"]) * 300)
        assert (canvas[3 * 35 + 32, 5 : end - 1] == (0, 0, 255)).all() and (canvas[3 * 35 + 32, end + 2 :] == 0).all()
    blank = cv2.imread(str(out / "probabilities" / "000005.png"))
    assert (blank[:, 10:] != (0, 0, 255)).any(axis=-1).all()  # no bar on the no-face frame
    doc = json.loads((out / "results.json").read_text())
    assert doc["frames"] == 8 and doc["no_face"] == 1 and doc["results"][0]["probabilities"]["happy"] > 0.8


def test_emotion_to_a_video_file(astronaut_video, fer_run, tmp_path):
    video, _ = astronaut_video
    out = tmp_path / "annotated.mp4"
    summary = run_emotion(fer_run, video=video, headless=True, out=out, max_frames=4)
    assert summary.frames == 4 and summary.fps > 0
    cap = cv2.VideoCapture(str(out))
    n, size = 0, None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n, size = n + 1, frame.shape
    assert n == 4 and size == (256, 600, 3)  # frame (300 wide) and canvas side by side, padded to even
    assert Path(summary.files["csv"]) == tmp_path / "annotated.csv" and Path(summary.files["json"]).is_file()
    assert not list(tmp_path.glob(".*partial*"))


def test_emotion_with_a_trained_recipe_run(astronaut_video, fer_csv, tmp_path, run_cli):
    code, _, err = run_cli("fer2013", "build", fer_csv, "--out", tmp_path / "fer", "--dtype", "uint8")
    assert code == 0, err
    code, _, err = run_cli("train", "emotion_vgg_e4", "--data-root", tmp_path / "fer", "--out", tmp_path / "runs",
                           "--set", "train.epochs=1", "--set", "data.batch_size=16", "--set", "data.workers=0",
                           "--set", "train.tensorboard=false", "--set", "checkpoint.period=1")
    assert code == 0, err
    video, plan = astronaut_video
    summary = run_emotion(tmp_path / "runs" / "emotion_vgg_e4", video=video, headless=True, out=tmp_path / "o")
    assert summary.frames == 8 and summary.no_face == 1
    first = summary.results[0]
    assert first.label in SIX and len(first.probs) == 6 and abs(sum(first.probs) - 1) < 1e-5
    assert iou(first.box, expected_box(*plan[0])) > 0.6


def test_emotion_bad_input(tmp_path, fer_run, run_cli):
    code, _, err = run_cli("emotion", fer_run, "--video", tmp_path / "missing.mp4", "--headless", "--out", tmp_path)
    assert code == 2 and "video not found" in err
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video")
    code, _, err = run_cli("emotion", fer_run, "--video", junk, "--headless", "--out", tmp_path / "o")
    assert code == 2 and "cannot open" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("emotion", fer_run, "--camera", "99", "--headless", "--out", tmp_path / "o")
    assert code == 2 and "camera 99 cannot be opened" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("emotion", fer_run, "--video", junk, "--headless")
    assert code == 2 and "--headless needs --out" in err
    code, _, err = run_cli("emotion", tmp_path / "nothing", "--video", junk, "--headless", "--out", tmp_path / "o")
    assert code == 2 and "model not found" in err


class _FlakyCamera:
    def __init__(self, pattern: str) -> None:
        self.pattern = list(pattern)  # "1" a frame, "0" a failed read

    def read(self):
        if not self.pattern:
            return False, None
        ok = self.pattern.pop(0) == "1"
        return ok, (np.zeros((4, 4, 3), np.uint8) if ok else None)


def test_failed_camera_reads_are_skipped():
    assert len(list(frames_from(_FlakyCamera("1001101"), is_camera=True, max_frames=4))) == 4
    assert len(list(frames_from(_FlakyCamera("1101"), is_camera=False))) == 2  # a video ends at its first failure
