"""Emotion case study: FER2013 CSV -> HDF5, a recipe trained on it, and the emotion app run headless on a
video made from the astronaut photo (moved and scaled across frames)."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from deepvision.apps.emotion.app import frames_from, run_emotion
from deepvision.apps.emotion.fer2013 import build_fer2013, make_fake_fer_csv
from deepvision.data.hdf5 import read_hdf5_arrays
from deepvision.datasets.fer import FER7_LABELS
from tests.faces.facetools import expected_box, fer_model, iou, write_video
from tests.helpers import fill_disk_after

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


def test_fer2013_build_on_a_full_disk_is_one_line_and_leaves_nothing(fer_csv, tmp_path, run_cli, monkeypatch):
    """A disk that filled while HDF5 finished a split file: a traceback and a segmentation fault (exit 139)."""
    fill_disk_after(monkeypatch, 200_000)
    code, out, err = run_cli("fer2013", "build", fer_csv, "--out", tmp_path / "fer")
    assert (code, out) == (2, "")
    assert err == (f"deepvision fer2013 build: error: could not write {tmp_path / 'fer' / 'train.hdf5'}: No space "
                   f"left on device — free some space or choose another --out\n")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("usage", ["PrivateTest", "PublicTest"])
def test_fer2013_build_refuses_a_split_that_would_get_no_face_and_writes_nothing(fer_csv, tmp_path, run_cli, usage):
    """val.hdf5 and test.hdf5 were written with no row (exit 0), and training on them ended in a traceback."""
    lines = fer_csv.read_text().splitlines()
    (tmp_path / "x.csv").write_text("\n".join(line for line in lines if not line.endswith("," + usage)) + "\n")
    before = sorted(os.listdir(tmp_path))
    code, out, err = run_cli("fer2013", "build", tmp_path / "x.csv", "--out", tmp_path / "o2")
    split = {"PrivateTest": "val", "PublicTest": "test"}[usage]
    assert (code, out) == (2, "")
    assert err == (f"deepvision fer2013 build: error: no {usage} row in {tmp_path / 'x.csv'}, so {split}.hdf5 would "
                   f"hold no row: part of the release is missing (the reference's splits need Training, PrivateTest "
                   f"and PublicTest); nothing written\n"), err
    assert sorted(os.listdir(tmp_path)) == before  # not even the --out folder
    release = _image_release(fer_csv, tmp_path / "FER")  # the image-folder release is refused as before
    for _, _, file in (r for r in release if r[0] == usage):
        file.unlink()
    code, _, err = run_cli("fer2013", "build", tmp_path / "FER", "--out", tmp_path / "o3")
    assert code == 2 and err.count("\n") == 1 and f"no {usage}_N image under" in err, err
    assert not (tmp_path / "o3").exists()


def test_fer2013_fake_rows_are_bounded_before_anything_is_built(tmp_path, run_cli):
    code, out, err = run_cli("fer2013", "fake", "--out", tmp_path / "f.csv", "--rows", "1000000000")
    assert (code, out) == (2, "")
    assert err.splitlines() == ["deepvision fer2013 fake: error: --rows ask for 1,000,000,000 images; a fake data set "
                                "holds at most 20,000"]
    assert not list(tmp_path.iterdir())


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


def _image_release(fer_csv: Path, root: Path) -> list[tuple[str, int, Path]]:
    """The CSV as the Kaggle image-folder release: train/<emotion>/Training_N.jpg, test/<emotion>/PublicTest_N.jpg
    and PrivateTest_N.jpg (48x48 grayscale JPEGs); returns (usage, emotion, file) in CSV order."""
    folders = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    out = []
    for n, row in enumerate(_csv_rows(fer_csv)):
        usage, emotion = row["Usage"], int(row["emotion"])
        folder = root / ("train" if usage == "Training" else "test") / folders[emotion]
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.array(row["pixels"].split(), np.uint8).reshape(48, 48)
        Image.fromarray(pixels, "L").save(folder / f"{usage}_{n * 7 + 3}.jpg", quality=90)
        out.append((usage, emotion, folder / f"{usage}_{n * 7 + 3}.jpg"))
    return out


def test_fer2013_build_from_the_image_folder_release(fer_csv, tmp_path, run_cli):
    release = _image_release(fer_csv, tmp_path / "FER")
    # augmented copies and stray files of the re-shared releases are left out and counted
    Image.new("L", (48, 48)).save(tmp_path / "FER" / "train" / "happy" / "aug_Training_3_flip.jpg")
    (tmp_path / "FER" / "test" / "sad" / "Thumbs.db").write_bytes(b"x")
    code, out, err = run_cli("fer2013", "build", tmp_path / "FER", "--out", tmp_path / "fer")
    assert code == 0, err
    assert "left out 2 file(s) not named Training_N, PrivateTest_N or PublicTest_N (1 in test/, 1 in train/)" in (
        " ".join(out.split()))
    for split, usage in (("train", "Training"), ("val", "PrivateTest"), ("test", "PublicTest")):
        images, labels, names = read_hdf5_arrays(tmp_path / "fer" / f"{split}.hdf5")
        mine = [(emotion, file) for u, emotion, file in release if u == usage]
        assert names == SIX and images.shape == (len(mine), 48, 48)
        assert labels.tolist() == [{0: 0, 1: 0, 2: 1, 3: 2, 4: 3, 5: 4, 6: 5}[e] for e, _ in mine]
        assert np.array_equal(images[0], np.asarray(Image.open(mine[0][1])))  # the decoded JPEG, unchanged
    seven = build_fer2013(tmp_path / "FER", tmp_path / "fer7", classes=7, dtype="uint8")
    assert seven.counts["val"] == [sum(1 for u, e, _ in release if u == "PrivateTest" and e == k) for k in range(7)]
    (tmp_path / "FER" / "train" / "contempt").mkdir()
    code, _, err = run_cli("fer2013", "build", tmp_path / "FER", "--out", tmp_path / "bad")
    assert code == 2 and err.count("\n") == 1 and "contempt: unknown emotion folder" in err
    (tmp_path / "plain" / "docs").mkdir(parents=True)
    code, _, err = run_cli("fer2013", "build", tmp_path / "plain", "--out", tmp_path / "bad")
    assert code == 2 and "has no folder of emotion folders" in err
    (tmp_path / "other" / "train" / "happy").mkdir(parents=True)
    Image.new("L", (48, 48)).save(tmp_path / "other" / "train" / "happy" / "im0.png")
    code, _, err = run_cli("fer2013", "build", tmp_path / "other", "--out", tmp_path / "bad")
    assert code == 2 and err.count("\n") == 1 and "the 1 file(s) there, e.g." in err and "im0.png" in err



@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fer2013_image_release_names_a_fifo_or_broken_link_named_like_a_face(fer_csv, tmp_path, run_cli):
    """A FIFO or a broken link named Training_N.jpg was counted among the files "not named Training_N" (a wrong
    reason); it is refused by name, as every image folder reader refuses it."""
    _image_release(fer_csv, tmp_path / "FER")
    happy = tmp_path / "FER" / "train" / "happy"
    for make, kind in ((os.mkfifo, "a FIFO"), (lambda p: os.symlink(tmp_path / "gone.jpg", p), "a broken link")):
        make(happy / "Training_99999.jpg")
        code, out, err = run_cli("fer2013", "build", tmp_path / "FER", "--out", tmp_path / "fer")
        assert (code, out) == (2, "") and err == (f"deepvision fer2013 build: error: {happy / 'Training_99999.jpg'} is "
                                                  f"{kind}, not an image file; remove it from {happy} (only regular "
                                                  f"files are read as images)\n"), err
        assert not list(tmp_path.glob("fer/*.hdf5"))
        os.unlink(happy / "Training_99999.jpg")

def test_fer2013_folders_of_any_name_and_a_missing_split(fer_csv, tmp_path, run_cli):
    """Copies that move PublicTest into validation/ build the same splits; a missing part is one line."""
    import shutil

    release = _image_release(fer_csv, tmp_path / "FER")
    for _, _, file in release:
        if file.name.startswith("PublicTest_"):
            target = tmp_path / "FER" / "validation" / file.parent.name / file.name
            target.parent.mkdir(parents=True, exist_ok=True)
            file.rename(target)
    built = build_fer2013(tmp_path / "FER", tmp_path / "fer", dtype="uint8")
    assert sum(built.counts["test"]) == sum(1 for u, _, _ in release if u == "PublicTest") > 0
    shutil.rmtree(tmp_path / "FER" / "validation")
    code, _, err = run_cli("fer2013", "build", tmp_path / "FER", "--out", tmp_path / "bad")
    assert code == 2 and err.count("\n") == 1 and "no PublicTest_N image under" in err
    assert not (tmp_path / "bad").exists() or not list((tmp_path / "bad").iterdir())


def test_fer2013_folder_holding_the_csv_and_the_image_release_is_refused(fer_csv, tmp_path, run_cli):
    """A folder holding fer2013.csv beside the image-folder release was read from its images, the CSV left out
    without a word; one line names both and how to choose."""
    import shutil

    _image_release(fer_csv, tmp_path / "FER")
    shutil.copy(fer_csv, tmp_path / "FER" / "fer2013.csv")
    before = sorted(str(p) for p in (tmp_path / "FER").rglob("*"))
    code, _, err = run_cli("fer2013", "build", tmp_path / "FER", "--out", tmp_path / "fer")
    assert code == 2 and err.count("\n") == 1, err
    assert (f"{tmp_path / 'FER'} holds both fer2013.csv and the image-folder release (test/, train/); give the one "
            f"to read: the CSV itself ({tmp_path / 'FER' / 'fer2013.csv'}), or the folder once the CSV is moved "
            f"out") in err, err
    assert sorted(str(p) for p in (tmp_path / "FER").rglob("*")) == before and not (tmp_path / "fer").exists()
    built = build_fer2013(tmp_path / "FER" / "fer2013.csv", tmp_path / "fer", dtype="uint8")
    assert sum(sum(c) for c in built.counts.values()) == len(_csv_rows(fer_csv))


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
    code, stdout, err = run_cli("emotion", fer_run, "--video", video, "--headless", "--out", out, "--detector", "haar")
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
    summary = run_emotion(fer_run, video=video, headless=True, out=out, max_frames=4, detector="haar")
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


@pytest.mark.parametrize("chained", [False, True])
def test_a_sigterm_keeps_the_frames_processed_as_ctrl_c_does(astronaut_video, fer_run, tmp_path, chained):
    """`timeout 60 deepvision emotion --video CAM --out rec.mp4` records a minute: the SIGTERM that ends it
    (raised as Terminated, or as the error a compiled library turned it into) keeps the frames processed,
    as Ctrl+C and `q` do."""
    from deepvision.errors import Terminated

    video, _ = astronaut_video
    out = tmp_path / "rec.mp4"

    def stop_after_three(result):
        if result.frame == 2:
            if chained:
                raise ImportError("initialization failed") from Terminated()
            raise Terminated

    summary = run_emotion(fer_run, video=video, headless=True, out=out, max_frames=8, detector="haar",
                          on_frame=stop_after_three)
    cap = cv2.VideoCapture(str(out))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert summary.frames == frames == 3 and Path(summary.files["json"]).is_file()
    assert not list(tmp_path.glob(".*partial*"))


def test_emotion_with_a_trained_recipe_run(astronaut_video, fer_csv, tmp_path, run_cli):
    code, _, err = run_cli("fer2013", "build", fer_csv, "--out", tmp_path / "fer", "--dtype", "uint8")
    assert code == 0, err
    code, _, err = run_cli("train", "emotion_vgg_e4", "--data-root", tmp_path / "fer", "--out", tmp_path / "runs",
                           "--set", "train.epochs=1", "--set", "data.batch_size=16", "--set", "data.workers=0",
                           "--set", "train.tensorboard=false", "--set", "checkpoint.period=1")
    assert code == 0, err
    video, plan = astronaut_video
    summary = run_emotion(tmp_path / "runs" / "emotion_vgg_e4", video=video, headless=True, out=tmp_path / "o",
                          detector="haar")
    assert summary.frames == 8 and summary.no_face == 1
    first = summary.results[0]
    assert first.label in SIX and len(first.probs) == 6 and abs(sum(first.probs) - 1) < 1e-5
    assert iou(first.box, expected_box(*plan[0])) > 0.6


def test_emotion_bad_input(tmp_path, fer_run, run_cli):
    code, _, err = run_cli("emotion", fer_run, "--video", tmp_path / "missing.mp4", "--headless", "--out", tmp_path)
    assert code == 2 and "video not found" in err
    os.mkfifo(tmp_path / "g.fifo")
    code, out, err = run_cli("emotion", fer_run, "--video", tmp_path / "g.fifo", "--headless", "--out", tmp_path / "o")
    assert (code, out) == (2, "")
    assert err.splitlines() == [f"deepvision emotion: error: video {tmp_path / 'g.fifo'} is a FIFO, not a regular file"]
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video")
    code, _, err = run_cli("emotion", fer_run, "--video", junk, "--headless", "--out", tmp_path / "o")
    assert code == 2 and "is a text file, not a video" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "binary.mp4").write_bytes(b"\0\1\2not a video" * 10)
    code, _, err = run_cli("emotion", fer_run, "--video", tmp_path / "binary.mp4", "--headless", "--out",
                           tmp_path / "o")
    assert code == 2 and "cannot open" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("emotion", fer_run, "--camera", "99", "--headless", "--out", tmp_path / "o")
    assert code == 2 and "camera 99 cannot be opened" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("emotion", fer_run, "--video", junk, "--headless")
    assert code == 2 and "--headless needs --out" in err
    code, _, err = run_cli("emotion", tmp_path / "nothing", "--video", junk, "--headless", "--out", tmp_path / "o")
    assert code == 2 and "model not found" in err
    import cv2

    empty = tmp_path / "empty.avi"  # a valid container holding no frame
    cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64)).release()
    code, out, err = run_cli("emotion", fer_run, "--video", empty, "--headless", "--out", tmp_path / "o")
    assert (code, out) == (2, "") and err.strip().endswith(f"{empty}: no frame could be decoded (a damaged video, "
                                                           "or a codec this OpenCV lacks); nothing was written")
    assert not (tmp_path / "o").exists()
    Image = pytest.importorskip("PIL.Image")
    Image.new("RGB", (64, 48)).save(tmp_path / "p.png")
    for option in (["--max-frames", "-1"], ["--detect-every", "0"], ["--full-size-detection"]):
        code, out, err = run_cli("emotion", fer_run, "--image", tmp_path / "p.png", *option)  # were ignored
        assert (code, out) == (2, "") and f"{option[0]} applies to videos and the camera, not to --image" in err
    code, _, err = run_cli("emotion", fer_run, "--image", tmp_path / "p.png", "--keras-model", "mini_xception")
    assert code == 2 and "--keras-model names the architecture of a Keras file" in err


def test_emotion_refuses_a_video_path_holding_a_frame_number_pattern(tmp_path, fer_run, run_cli):
    """OpenCV would read "pat%01d.avi" as pat0.avi, pat1.avi, ... (a FIFO among them blocks for good): one
    line, before the model loads, nothing written."""
    named = tmp_path / "pat%01d.avi"
    named.write_bytes(b"\x00\x01garbage" * 100)
    (tmp_path / "pat0.avi").write_bytes(cv2.imencode(".png", np.full((64, 64, 3), 200, np.uint8))[1].tobytes())
    os.mkfifo(tmp_path / "pat1.avi")
    line = (f"deepvision emotion: error: {named}: '%01d' in a video's path is a frame-number pattern (OpenCV and "
            f"FFmpeg would read other, numbered files in its place); rename it without the '%'")
    for model in (fer_run, tmp_path / "nothing"):
        code, out, err = run_cli("emotion", model, "--video", named, "--headless", "--out", tmp_path / "o")
        assert (code, out, err.splitlines()) == (2, "", [line])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pat%01d.avi", "pat0.avi", "pat1.avi"]


def test_emotion_reads_a_video_named_like_an_ffmpeg_protocol_as_that_file(tmp_path, fer_run, run_cli, monkeypatch):
    """FFmpeg would read "concat:g.avi|long.avi" as g.avi then long.avi (frames of files never named): the
    file named is the file read, its 3 frames; the other files unchanged."""
    monkeypatch.chdir(tmp_path)
    for name, frames in (("long.avi", 9), ("concat:g.avi|long.avi", 3)):
        writer = cv2.VideoWriter(name, cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
        for _ in range(frames):
            writer.write(np.full((48, 64, 3), 90, np.uint8))
        writer.release()
    (tmp_path / "g.avi").write_bytes(b"\x00\x01garbage" * 90)
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    code, out, err = run_cli("emotion", fer_run, "--video", "concat:g.avi|long.avi", "--headless", "--out", "o.avi")
    assert code == 0, err
    assert "no face found in 3 of 3 frames" in out and json.loads((tmp_path / "o.json").read_text())["frames"] == 3
    cap = cv2.VideoCapture(str(tmp_path / "o.avi"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()
    assert {p: p.read_bytes() for p in before} == before


def _near_frames(n: int) -> list[np.ndarray]:
    """640 x 480 frames of the astronaut's head and shoulders (the face about 95 pixels at width 300), panning."""
    from tests.faces.facetools import astronaut_bgr

    photo = astronaut_bgr()
    return [cv2.resize(photo[8 + 4 * i : 233 + 4 * i, 90 + 8 * i : 390 + 8 * i], (640, 480),
                       interpolation=cv2.INTER_LINEAR) for i in range(n)]


def test_fast_detection_finds_the_same_face_and_probabilities():
    import copy

    import torch

    from deepvision.apps.classifier import Classifier
    from deepvision.apps.emotion.app import EmotionRecognizer
    from deepvision.data.preprocess import Preprocess
    from deepvision.inference.faces.detect import create_detector, to_gray
    from deepvision.inference.faces.draw import resize_to_width
    from deepvision.models import create_model

    torch.manual_seed(0)
    net = create_model("mini_xception", 7, 1).eval()
    for m in net.modules():  # BN statistics away from the identity, so that the probabilities are far from uniform
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.01, 0.05)
    clf = Classifier(net, Preprocess(1, (64, 64), mean=[0.5], std=[0.5]), [str(i) for i in range(7)], "random")
    before = EmotionRecognizer(copy.deepcopy(clf), create_detector("haar"), fast_detection=False, channels_last=False)
    after = EmotionRecognizer(clf, create_detector("haar"))
    half_size = []
    search = after.detector.detect_at
    after.detector.detect_at = lambda image, scale: half_size.append(scale) or search(image, scale)
    for i, frame in enumerate(_near_frames(6)):
        _, _, b = before.process(frame, i)
        shown, _, a = after.process(frame, i)
        # Haar's boxes at half size are a little larger (about one step, 10%, of its scale pyramid)
        assert b.box[2] > 80 and iou(a.box, b.box) > 0.75 and abs(a.box[2] - b.box[2]) <= 0.15 * b.box[2]
        x, y, w, h = a.box  # the NCHW model on the ROI of the box found: the same probabilities
        roi = to_gray(resize_to_width(frame, 300)[0])[y : y + h, x : x + w]
        ref = before.classifier.probabilities(before.classifier.prepare(roi))[0]
        assert np.abs(ref - np.asarray(a.probs)).max() < 1e-5 and ref.max() - ref.min() > 0.05
        assert (shown[y + h // 2, x] == (0, 0, 255)).all()  # the box drawn where it was found
    assert half_size == [0.5] * 5  # every frame after the first searched at half size first
    assert clf.model.head.weight.is_contiguous(memory_format=torch.channels_last)


def test_fast_detection_searches_full_size_after_a_small_face(astronaut_video, fer_run, tmp_path, run_cli):
    from deepvision.apps.classifier import load_classifier
    from deepvision.apps.emotion.app import EmotionRecognizer
    from deepvision.inference.faces.detect import create_detector

    video, plan = astronaut_video
    rec = EmotionRecognizer(load_classifier(fer_run), create_detector("haar"))
    rec.tracker.last_side = 200  # as if the previous frame had a large face: the half-size search finds none here
    cap = cv2.VideoCapture(str(video))
    ok, frame = cap.read()
    cap.release()
    _, _, result = rec.process(frame)
    assert ok and iou(result.box, expected_box(*plan[0])) > 0.6 and result.box[2] < 48
    out = tmp_path / "o"
    code, _, err = run_cli("emotion", fer_run, "--video", video, "--headless", "--out", out, "--max-frames", "2",
                           "--detector", "haar", "--full-size-detection")
    assert code == 0, err
    assert json.loads((out / "results.json").read_text())["fast_detection"] is False


class _FlakyCamera:
    def __init__(self, pattern: str) -> None:
        self.pattern = list(pattern)  # "1" a frame, "0" a failed read

    def get(self, prop):  # as a video file, it declares as many frames as its pattern holds
        return float(len(self.pattern)) if prop == cv2.CAP_PROP_FRAME_COUNT else 0.0

    def read(self):
        if not self.pattern:
            return False, None
        ok = self.pattern.pop(0) == "1"
        return ok, (np.zeros((4, 4, 3), np.uint8) if ok else None)


def test_failed_camera_reads_are_skipped():
    assert len(list(frames_from(_FlakyCamera("1001101"), is_camera=True, max_frames=4))) == 4
    video = frames_from(_FlakyCamera("1101"), is_camera=False)  # a damaged frame of a video is skipped, and named
    assert len(list(video)) == 3 and video.skipped == [2]


def test_emotion_skips_and_names_a_damaged_video_frame_and_refuses_a_mostly_damaged_video(fer_run, tmp_path,
                                                                                         run_cli):
    from tests.inference.videotools import damaged_avi

    video = damaged_avi(tmp_path / "clip.avi", damaged=(4,))
    before = video.read_bytes()
    code, out, err = run_cli("emotion", fer_run, "--video", video, "--headless", "--out", tmp_path / "e.avi",
                             "--detector", "haar")
    assert code == 0, err
    assert "clip.avi: skipped 1 damaged frame of 10 (frame 4)" in out and "9 frames:" in out
    doc = json.loads((tmp_path / "e.json").read_text())
    assert doc["frames"] == 9 and doc["skipped_frames"] == [4] and len(doc["results"]) == 9
    assert [r["frame"] for r in doc["results"]] == [0, 1, 2, 3, 5, 6, 7, 8, 9]  # the video's own frame numbers
    assert video.read_bytes() == before
    # the output video keeps the input's timing: a black frame in the damaged frame's slot
    cap, means = cv2.VideoCapture(str(tmp_path / "e.avi")), []
    while (got := cap.read())[0]:
        means.append(float(got[1].mean()))
    cap.release()
    assert [m < 3 for m in means] == [False] * 4 + [True] + [False] * 5
    bad = damaged_avi(tmp_path / "bad.avi", damaged=(1, 2, 3, 4, 5, 6))
    code, out, err = run_cli("emotion", fer_run, "--video", bad, "--headless", "--out", tmp_path / "out" / "b.avi",
                             "--detector", "haar")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "bad.avi: 6 of its 10 frames could not be decoded (frames 1, 2, 3, 4, 5 and 1 more)" in err
    assert not (tmp_path / "out").exists()


def test_emotion_on_still_images_labels_every_face(fer_run, tmp_path, run_cli):
    from tests.faces.facetools import FACE, astronaut_bgr

    photos = tmp_path / "photos"
    photos.mkdir()
    astronaut = astronaut_bgr()
    cv2.imwrite(str(photos / "pair.png"), np.concatenate([astronaut, astronaut], axis=1))  # 1024 x 512, two faces
    cv2.imwrite(str(photos / "wall.png"), np.full((200, 300, 3), 90, np.uint8))
    out = tmp_path / "emotions"
    code, stdout, err = run_cli("emotion", fer_run, "--image", photos, "--out", out, "--detector", "haar")
    assert code == 0, err
    lines = stdout.splitlines()
    assert lines[0] == f"{photos / 'pair.png'}: 2 faces" and lines[1].startswith("  face 1 at ")
    assert f"{photos / 'wall.png'}: no face found" in lines
    rows = _csv_rows(out / "results.csv")
    assert [r["face"] for r in rows] == ["0", "1"] and all(r["label"] == "happy" for r in rows)
    # boxes in the photo's own pixels (detected at width 800): the cascade's face, and the same 512 px to the right
    for row, dx in zip(rows, (0, 512)):
        box = tuple(int(row[k]) for k in "xywh")
        assert iou(box, (FACE[0] + dx, *FACE[1:])) > 0.7, box
    annotated = cv2.imread(str(out / "pair.png"))
    assert annotated.shape == (400, 800, 3)  # the detection size: width 800
    doc = json.loads((out / "results.json").read_text())
    assert doc["images"] == 2 and doc["no_face"] == [str(photos / "wall.png")] and len(doc["faces"]) == 2
    code, _, err = run_cli("emotion", fer_run, "--image", tmp_path / "none.jpg")
    assert code == 2 and "image not found" in err


def test_fer2013_build_refuses_a_fifo_without_waiting(tmp_path, run_cli):
    import os

    os.mkfifo(tmp_path / "fer2013.csv")
    code, _, err = run_cli("fer2013", "build", tmp_path / "fer2013.csv", "--out", tmp_path / "fer")
    assert code == 2 and err.count("\n") == 1, err
    assert "FER2013 CSV" in err and "is a FIFO, not a regular file" in err
    assert not (tmp_path / "fer").exists() or not any((tmp_path / "fer").iterdir())


@pytest.mark.parametrize("width", ["0", "-7", "100000"])
def test_emotion_width_is_bounded(astronaut_video, fer_run, tmp_path, run_cli, width):
    """--width below 32 (0 is not taken as the default) or above the image-side ceiling: one line,
    before any frame is resized (100000 would ask OpenCV for 22.5 GB)."""
    video, _ = astronaut_video
    code, _, err = run_cli("emotion", fer_run, "--video", video, "--headless", "--out", tmp_path / "o",
                           "--width", width, "--max-frames", "1")
    assert code == 2 and err.count("\n") == 1 and "--width" in err
    assert not (tmp_path / "o").exists()


def test_emotion_out_cannot_be_the_input_video(astronaut_video, fer_run, tmp_path, run_cli):
    video, _ = astronaut_video
    copy = tmp_path / "v.avi"
    copy.write_bytes(video.read_bytes())
    (tmp_path / "link.avi").symlink_to(copy)
    before = copy.read_bytes()
    for out in (copy, tmp_path / "link.avi"):
        code, _, err = run_cli("emotion", fer_run, "--video", copy, "--headless", "--out", out,
                               "--max-frames", "2")
        assert code == 2 and err.count("\n") == 1 and "is an input of this command" in err
    assert copy.read_bytes() == before


def test_emotion_video_sidecars_never_replace_a_users_file(astronaut_video, fer_run, tmp_path, run_cli):
    video, _ = astronaut_video
    (tmp_path / "report.csv").write_text("my precious spreadsheet\n")
    code, _, err = run_cli("emotion", fer_run, "--video", video, "--headless", "--out", tmp_path / "report.avi",
                           "--max-frames", "1")
    assert code == 2 and err.count("\n") == 1 and "report.csv, which already exists" in err
    assert (tmp_path / "report.csv").read_text() == "my precious spreadsheet\n"
    assert not (tmp_path / "report.avi").exists()


def test_emotion_replaces_only_a_video_an_earlier_run_wrote(astronaut_video, fer_run, tmp_path, run_cli):
    """An existing video without its run's report beside it is the user's recording: refused in one line,
    unchanged; a video an earlier run wrote (its STEM.json beside it lists it) is replaced."""
    video, _ = astronaut_video
    holiday = tmp_path / "holiday.avi"
    holiday.write_bytes(video.read_bytes())
    (tmp_path / "holiday.json").write_text('{"model": "not a results table either"}\n')
    code, _, err = run_cli("emotion", fer_run, "--video", video, "--headless", "--out", holiday, "--max-frames", "1",
                           "--detector", "haar")
    assert code == 2 and err.count("\n") == 1, err
    assert "holiday.avi already exists and is not a video an earlier emotion run wrote (no holiday.json" in err
    assert holiday.read_bytes() == video.read_bytes() and not (tmp_path / "holiday.csv").exists()
    out = tmp_path / "annotated.avi"
    for frames in ("1", "2"):  # the second run replaces the first one's video and tables
        code, _, err = run_cli("emotion", fer_run, "--video", video, "--headless", "--out", out, "--max-frames",
                               frames, "--detector", "haar")
        assert code == 0, err
    assert len(_csv_rows(tmp_path / "annotated.csv")) == 2


def test_emotion_never_replaces_the_report_of_another_video_of_the_same_stem(astronaut_video, fer_run, tmp_path,
                                                                              run_cli):
    """e.avi's report is e.csv and e.json; --out e.mp4 (or e.AVI, e.mkv) would write the same two files: one line
    naming the video they belong to, nothing written, the first recording and its report unchanged. A report
    that names no video is refused too; --out e.avi itself still replaces its own report."""
    video, _ = astronaut_video
    first = tmp_path / "e.avi"
    code, _, err = run_cli("emotion", fer_run, "--video", video, "--headless", "--out", first, "--max-frames", "3",
                           "--detector", "haar")
    assert code == 0, err
    doc = json.loads((tmp_path / "e.json").read_text())
    assert doc["outputs"] == ["e.avi", "e.csv", "e.json"] and doc["input"] == str(video)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for name in ("e.mp4", "e.AVI", "e.mkv"):
        code, out, err = run_cli("emotion", fer_run, "--video", video, "--headless", "--out", tmp_path / name,
                                 "--max-frames", "1", "--detector", "haar")
        assert (code, out) == (2, "") and err.splitlines() == [
            f"deepvision emotion: error: --out {tmp_path / name} would replace e.csv and e.json, the report written "
            f"with e.avi by an earlier emotion run; choose another name, or move them"], err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    (tmp_path / "e.json").unlink()  # a report that names no video (the run stopped before writing it)
    code, _, err = run_cli("emotion", fer_run, "--video", video, "--headless", "--out", tmp_path / "e.mp4",
                           "--max-frames", "1", "--detector", "haar")
    assert code == 2 and err.count("\n") == 1 and "would replace e.csv, the report of an earlier emotion run that " \
        "does not name e.mp4 as its video" in err, err
    (tmp_path / "e.json").write_bytes(before["e.json"])
    code, _, err = run_cli("emotion", fer_run, "--video", video, "--headless", "--out", first, "--max-frames", "1",
                           "--detector", "haar")
    assert code == 0, err
    assert len(_csv_rows(tmp_path / "e.csv")) == 1 and json.loads((tmp_path / "e.json").read_text())["frames"] == 1


def test_emotion_frames_replace_a_planted_link_never_follow_it(astronaut_video, fer_run, tmp_path, run_cli):
    video, _ = astronaut_video
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / "o" / "face").mkdir(parents=True)
    (tmp_path / "o" / "results.csv").write_text("frame,faces,x,y,w,h,label\n")  # an earlier run's folder
    (tmp_path / "o" / "face" / "000000.png").symlink_to(victim)
    code, _, err = run_cli("emotion", fer_run, "--video", video, "--headless", "--out", tmp_path / "o",
                           "--max-frames", "1", "--detector", "haar")
    assert code == 0, err
    assert victim.read_text() == "precious\n"
    frame = tmp_path / "o" / "face" / "000000.png"
    assert not frame.is_symlink() and cv2.imread(str(frame)).shape == (225, 300, 3)


def test_emotion_refuses_a_linked_sub_folder_in_out(astronaut_video, fer_run, tmp_path, run_cli):
    """--out O where O/probabilities is a link to a folder elsewhere: one line before any frame, nothing
    written through the link."""
    video, _ = astronaut_video
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "results.csv").write_text("frame,faces,x,y,w,h,label\n")  # an earlier run's folder
    (tmp_path / "o" / "probabilities").symlink_to(elsewhere)
    code, _, err = run_cli("emotion", fer_run, "--video", video, "--headless", "--out", tmp_path / "o",
                           "--max-frames", "1", "--detector", "haar")
    assert code == 2 and err.count("\n") == 1, err
    assert "probabilities is a link; deepvision never writes through a link inside an output folder" in err
    assert list(elsewhere.iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["probabilities", "results.csv"]  # face/: removed


def test_emotion_images_out_inside_the_photo_folder_is_refused_before_the_model_loads(tmp_path, run_cli):
    """The annotated copies, named as the photos, would be read back as photos by the next run over the
    folder: one line, exit 2, before the model is read; the folder unchanged."""
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(photos / "face.png")
    (tmp_path / "link").symlink_to(photos)
    for out in (photos / "emo", tmp_path / "link" / "emo"):
        code, stdout, err = run_cli("emotion", tmp_path / "no-model", "--image", photos, "--out", out)
        assert (code, stdout) == (2, "") and err.splitlines() == [
            f"deepvision emotion: error: --out {out} is inside the input folder {photos}; its files would be read "
            f"as part of it next time, so choose a folder outside it"], err
    assert [p.name for p in photos.iterdir()] == ["face.png"]
    code, _, err = run_cli("emotion", tmp_path / "no-model", "--image", photos, "--out", tmp_path / "out")
    assert code == 2 and "model not found" in err  # beside the folder: past the check, to the model


def test_emotion_images_never_replace_the_photos_or_each_other(fer_run, tmp_path, run_cli):
    """--out the photos' own folder is refused (the photos unchanged); face.jpg and face.png get
    face.jpg.png and face.png.png, not one face.png for both."""
    from tests.faces.facetools import astronaut_bgr

    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "face.jpg"), astronaut_bgr())
    cv2.imwrite(str(photos / "face.png"), np.full((200, 300, 3), 90, np.uint8))
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    for out in (photos, tmp_path / "link"):
        if out.name == "link":
            out.symlink_to(photos)
        code, _, err = run_cli("emotion", fer_run, "--image", photos, "--out", out, "--detector", "haar")
        assert code == 2 and err.count("\n") == 1 and "is inside the input folder" in err, err
        code, _, err = run_cli("emotion", fer_run, "--image", photos / "face.jpg", "--out", out, "--detector", "haar")
        assert code == 2 and err.count("\n") == 1 and "holds the input" in err, err
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before
    code, _, err = run_cli("emotion", fer_run, "--image", photos, "--out", tmp_path / "o", "--detector", "haar")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "o").glob("*.png")) == ["face.jpg.png", "face.png.png"]
    assert cv2.imread(str(tmp_path / "o" / "face.png.png")).shape == (200, 300, 3)
    assert cv2.imread(str(tmp_path / "o" / "face.jpg.png")).shape == (512, 512, 3)
    code, _, err = run_cli("emotion", fer_run, "--image", photos, "--out", tmp_path / "o", "--detector", "haar")
    assert code == 0, err  # its own outputs are replaced
    (photos / "mine.png").write_bytes(before["face.png"])
    (tmp_path / "o" / "mine.png").write_bytes(b"the user's own, put there since")
    code, _, err = run_cli("emotion", fer_run, "--image", photos / "mine.png", "--out", tmp_path / "o",
                           "--detector", "haar")
    assert code == 2 and "holds mine.png, which its results.json does not list as an output" in err, err
    assert (tmp_path / "o" / "mine.png").read_bytes() == b"the user's own, put there since"


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--camera", "-1", "--camera must be a whole number from 0 to 9,999, got -1"),
    ("--camera", "-5", "--camera must be a whole number from 0 to 9,999, got -5"),
    ("--camera", "99999999999999999999", "--camera must be a whole number from 0 to 9,999, got 99999999999999999999"),
    ("--camera", "2147483648", "--camera must be a whole number from 0 to 9,999, got 2147483648"),
    ("--threads", "100000", "--threads must be a whole number from 1 to 1,024, got 100000"),
    ("--threads", "0", "--threads must be a whole number from 1 to 1,024, got 0"),
])
def test_emotion_camera_and_threads_are_checked_before_opencv_and_torch(fer_run, tmp_path, run_cli, option,
                                                                        value, message):
    """A negative camera index never reaches cv2.VideoCapture (it crashes in some builds); 100,000
    threads never reach torch.set_num_threads: one line, nothing written."""
    code, _, err = run_cli("emotion", fer_run, option, value, "--headless", "--out", tmp_path / "o",
                           "--max-frames", "1", "--detector", "haar")
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "o").exists()
    if option == "--threads":
        code, _, err = run_cli("emotion", fer_run, "--image", tmp_path, option, value)
        assert code == 2 and err.count("\n") == 1 and message in err, err


def test_fer2013_release_links_stay_inside_and_folders_are_read_once(fer_csv, tmp_path):
    import os

    from deepvision.errors import UserError

    release = _image_release(fer_csv, tmp_path / "FER")
    trains = [file for usage, _, file in release if usage == "Training"]
    trains[0].rename(trains[0].with_name(trains[0].name.lower()))  # 'training_N.jpg': the same split
    os.symlink(tmp_path / "FER" / "train", tmp_path / "FER" / "validation")  # a folder reached twice
    built = build_fer2013(tmp_path / "FER", tmp_path / "fer", dtype="uint8")
    assert sum(built.counts["train"]) == len(trains)  # each Training face once, the renamed one too
    assert any("is the same folder" in note and "validation" in note for note in built.notes)
    outside = tmp_path / "secret"
    outside.mkdir()
    Image.new("L", (48, 48)).save(outside / "face.jpg")
    os.symlink(outside / "face.jpg", tmp_path / "FER" / "train" / "happy" / "Training_99999.jpg")
    with pytest.raises(UserError, match=r"Training_99999\.jpg is a link to .*secret/face\.jpg, outside the release"):
        build_fer2013(tmp_path / "FER", tmp_path / "fer2", dtype="uint8")
    (tmp_path / "FER" / "train" / "happy" / "Training_99999.jpg").unlink()
    (tmp_path / "FER" / "extra").mkdir()
    os.symlink(outside, tmp_path / "FER" / "extra" / "fear")  # an emotion folder that is a link out
    with pytest.raises(UserError, match=r"extra/fear is a link to .*secret, outside the release"):
        build_fer2013(tmp_path / "FER", tmp_path / "fer3", dtype="uint8")


@pytest.mark.parametrize("kind", ["symlink", "hard link"])
def test_fer2013_release_refuses_a_link_to_another_face_under_another_number(fer_csv, tmp_path, run_cli, kind):
    """A link named like a new face (another number, another emotion or the test split) is one image with two
    labels, or a training face tested on: one line naming both paths, nothing written, the release unchanged."""
    release = _image_release(fer_csv, tmp_path / "FER")
    face = next(file for usage, _, file in release if usage == "Training")
    other = "happy" if face.parent.name != "happy" else "sad"
    for alias in (tmp_path / "FER" / "train" / other / "Training_99999.jpg",
                  tmp_path / "FER" / "test" / face.parent.name / "PublicTest_99999.jpg"):
        alias.parent.mkdir(parents=True, exist_ok=True)
        if kind == "symlink":
            alias.symlink_to(os.path.relpath(face, alias.parent))
        else:
            os.link(face, alias)
        code, out, err = run_cli("fer2013", "build", tmp_path / "FER", "--out", tmp_path / "o")
        assert (code, out) == (2, "") and err.count("\n") == 1, err
        assert f"{alias}" in err and f"{face}" in err and "are one file (a link)" in err, err
        assert not (tmp_path / "o").exists()
        alias.unlink()
    assert build_fer2013(tmp_path / "FER", tmp_path / "o", dtype="uint8").counts  # without the link: built


@pytest.mark.parametrize("pixel, shown", [("99999999999999999999", "99999999999999999999"), ("2_5_5", "2_5_5"),
                                          ("+9", "+9"), ("\u0665", "\u0665")])
def test_fer2013_csv_pixels_are_plain_digits_0_to_255(fer_csv, tmp_path, pixel, shown):
    from deepvision.errors import UserError

    lines = fer_csv.read_text().splitlines()
    emotion, pixels, usage = lines[3].split(",")
    values = pixels.split()
    values[5] = pixel
    lines[3] = ",".join((emotion, " ".join(values), usage))
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=rf"bad\.csv:4: pixels must be space-separated integers 0\.\.255 in plain "
                                        rf"digits, got '{re.escape(shown)}'"):
        build_fer2013(bad, tmp_path / "o")
    lines[3] = ",".join(("0_2", pixels, usage))
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"bad\.csv:4: emotion must be an integer 0-6, got '0_2'"):
        build_fer2013(bad, tmp_path / "o")
    assert not any((tmp_path / "o").glob("*.hdf5"))


def test_fer2013_csv_pixel_above_255_is_named_as_a_value_not_a_count(fer_csv, tmp_path):
    """2,304 values with one of them 256: the value is wrong, not the count."""
    from deepvision.errors import UserError

    lines = fer_csv.read_text().splitlines()
    emotion, pixels, usage = lines[3].split(",")
    values = pixels.split()
    values[5] = "256"
    lines[3] = ",".join((emotion, " ".join(values), usage))
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"bad\.csv:4: pixel 6 is 256, outside 0\.\.255$"):
        build_fer2013(bad, tmp_path / "o")
    assert not any((tmp_path / "o").glob("*.hdf5"))

def test_fer2013_csv_with_a_byte_order_mark_is_read_whole(fer_csv, tmp_path):
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + fer_csv.read_bytes())  # Excel's 'CSV UTF-8'
    plain = build_fer2013(fer_csv, tmp_path / "a", dtype="uint8")
    assert build_fer2013(bom, tmp_path / "b", dtype="uint8").counts == plain.counts


def test_fer2013_one_face_one_file_and_out_outside_the_release(fer_csv, tmp_path, run_cli):
    """Two files claiming one face number (under two emotions, or `Training_01.png` beside `Training_1.jpg`)
    are one line naming both; an --out inside the release is refused like detection build's."""
    release = _image_release(fer_csv, tmp_path / "FER")
    usage, _, first = next(item for item in release if item[0] == "Training")
    number = int(first.stem.split("_")[1])
    other = tmp_path / "FER" / "train" / ("happy" if first.parent.name != "happy" else "sad") / first.name
    other.parent.mkdir(exist_ok=True)
    other.write_bytes(first.read_bytes())
    code, _, err = run_cli("fer2013", "build", tmp_path / "FER", "--out", tmp_path / "o")
    assert code == 2 and err.count("\n") == 1 and str(first) in err and str(other) in err
    assert f"both face Training_{number} (the same pixels); one face, one file" in err
    other.unlink()
    padded = first.with_name(f"Training_0{number}.png")
    Image.open(first).save(padded)
    code, _, err = run_cli("fer2013", "build", tmp_path / "FER", "--out", tmp_path / "o")
    assert code == 2 and str(padded) in err and str(first) in err and "one face, one file" in err
    assert not (tmp_path / "o").exists()
    padded.unlink()
    code, _, err = run_cli("fer2013", "build", tmp_path / "FER", "--out", tmp_path / "FER" / "train")
    assert code == 2 and err.count("\n") == 1
    assert f"--out {tmp_path / 'FER' / 'train'} is inside the FER2013 release {tmp_path / 'FER'}" in err
    assert not list((tmp_path / "FER" / "train").glob("*.hdf5"))


def test_fer2013_one_number_two_different_faces_keeps_both(fer_csv, tmp_path):
    """The Kaggle release names two pairs of different faces alike under two emotions: both faces of a
    pair are packed, each under its folder's label, and the build says so on one line."""
    release = _image_release(fer_csv, tmp_path / "FER")
    plain = build_fer2013(tmp_path / "FER", tmp_path / "plain", classes=7, dtype="uint8")
    _, _, first = next(item for item in release if item[0] == "Training")
    folder = "happy" if first.parent.name != "happy" else "sad"
    other = tmp_path / "FER" / "train" / folder / first.name
    other.parent.mkdir(exist_ok=True)
    Image.fromarray(255 - np.asarray(Image.open(first).convert("L"))).save(other)
    built = build_fer2013(tmp_path / "FER", tmp_path / "both", classes=7, dtype="uint8")
    added = [0] * 7
    added[FER7_LABELS.index(folder)] = 1
    assert built.counts["train"] == [n + k for n, k in zip(plain.counts["train"], added)]
    assert [n for n in built.notes if "kept 1 face number(s)" in n and first.stem in n]
    images, labels, _ = read_hdf5_arrays(tmp_path / "both" / "train.hdf5")
    pair = [i for i, image in enumerate(images) if np.array_equal(image.squeeze(), np.asarray(Image.open(other)))]
    assert len(pair) == 1 and labels[pair[0]] == FER7_LABELS.index(folder)


def test_fer2013_build_that_fails_partway_leaves_no_out_folder(fer_csv, tmp_path, run_cli):
    """A bad last CSV row, or an image that is not 48 x 48, fails after the writers opened: the --out
    folder the build made goes again; a folder the user had stays (empty), as do its files."""
    lines = fer_csv.read_text().splitlines()
    lines.append(lines[-1].replace(",Training", ",Elsewhere").replace(",PublicTest", ",Elsewhere")
                 .replace(",PrivateTest", ",Elsewhere"))
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    code, _, err = run_cli("fer2013", "build", bad, "--out", tmp_path / "new" / "fer")
    assert code == 2 and f"bad.csv:{len(lines)}: Usage must be" in err
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()
    code, _, _ = run_cli("fer2013", "build", bad, "--out", tmp_path / "mine")
    assert code == 2 and (tmp_path / "mine").is_dir() and not list((tmp_path / "mine").iterdir())
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "notes.txt").write_text("mine")
    code, _, _ = run_cli("fer2013", "build", bad, "--out", tmp_path / "kept")
    assert code == 2 and [p.name for p in (tmp_path / "kept").iterdir()] == ["notes.txt"]
    release = _image_release(fer_csv, tmp_path / "FER")
    Image.new("L", (64, 64)).save(release[-1][2])
    code, _, err = run_cli("fer2013", "build", tmp_path / "FER", "--out", tmp_path / "fer")
    assert code == 2 and "is 64x64; FER2013 faces are 48x48" in err and not (tmp_path / "fer").exists()


def test_fer2013_csv_row_of_more_or_fewer_cells_than_the_header_is_refused(fer_csv, tmp_path, run_cli):
    """A stray comma shifts a row: its extra cell is not dropped, a missing one not taken as empty."""
    lines = fer_csv.read_text().splitlines()
    for name, row, message in (("more.csv", lines[1] + ",x", "more.csv:2: 4 cells under a header of 3"),
                               ("fewer.csv", lines[1].rsplit(",", 1)[0], "fewer.csv:2: 2 cells under a header of 3")):
        (tmp_path / name).write_text("\n".join([lines[0], row, *lines[2:]]) + "\n")
        code, out, err = run_cli("fer2013", "build", tmp_path / name, "--out", tmp_path / "o")
        assert code == 2 and err.strip() == f"deepvision fer2013 build: error: {tmp_path / message}", err
        assert not (tmp_path / "o").exists()


def test_fer2013_build_refusals_are_the_error_line_alone(fer_csv, tmp_path, run_cli, busy_machine):
    """A refused CSV (a bad emotion, a column named twice) prints nothing on stdout, not even the
    progress bar's closing line, and no busy-cores note before the error."""
    lines = fer_csv.read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([lines[0], "7" + lines[1][1:], *lines[2:]]) + "\n")
    twice = tmp_path / "twice.csv"
    twice.write_text("\n".join([lines[0] + ",emotion", *(line + ",0" for line in lines[1:])]) + "\n")
    for path, message in ((bad, "bad.csv:2: emotion must be an integer 0-6, got '7'"),
                          (twice, "the header names the column(s) 'emotion' twice")):
        code, out, err = run_cli("fer2013", "build", path, "--out", tmp_path / "o")
        assert code == 2 and out == "" and len(err.splitlines()) == 1 and message in err, (out, err)


def test_csv_rows_repeating_a_face_are_counted(fer_csv, tmp_path, run_cli):
    """The Kaggle CSV repeats some faces (in another split, under another emotion); the reference packed
    them as given, so the build does too and says how many."""
    with open(fer_csv, newline="") as f:
        rows = list(csv.reader(f))
    moved = list(rows[1])
    moved[2] = "PublicTest" if moved[2] != "PublicTest" else "Training"
    relabelled = list(rows[2])
    relabelled[0] = str((int(relabelled[0]) + 3) % 7)
    with open(tmp_path / "rep.csv", "w", newline="") as f:
        csv.writer(f).writerows([*rows, moved, relabelled])
    code, out, err = run_cli("fer2013", "build", tmp_path / "rep.csv", "--out", tmp_path / "o")
    assert code == 0, err
    assert "2 rows repeat an earlier row's face (1 in another split, 1 under another emotion); packed as given" in \
        " ".join(out.split())
    code, out, _ = run_cli("fer2013", "build", fer_csv, "--out", tmp_path / "o2")
    assert code == 0 and "repeat an earlier row" not in out


def test_emotion_refusing_after_its_out_folder_was_made_leaves_none(astronaut_video, fer_run, tmp_path, run_cli,
                                                                    monkeypatch):
    from deepvision.apps.emotion.app import EmotionRecognizer
    from deepvision.errors import UserError

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))  # damaged: refused when read
    out = tmp_path / "new" / "emotions"
    code, _, err = run_cli("emotion", fer_run, "--image", photos, "--out", out, "--detector", "haar")
    assert code == 2 and err.count("\n") == 1 and not (tmp_path / "new").exists()

    def refuse(self, frame, index=0):
        raise UserError("the model's output holds NaN or infinite values")

    monkeypatch.setattr(EmotionRecognizer, "process", refuse)
    video, _ = astronaut_video
    for target in (out, tmp_path / "new" / "emotions.mp4"):  # frames folder (face/, probabilities/), video file
        code, _, err = run_cli("emotion", fer_run, "--video", video, "--headless", "--out", target,
                               "--detector", "haar")
        assert code == 2 and "NaN or infinite" in err and not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    code, _, err = run_cli("emotion", fer_run, "--video", video, "--headless", "--out", tmp_path / "kept",
                           "--detector", "haar")
    assert code == 2 and (tmp_path / "kept").is_dir()  # a folder the user had stays


def test_emotion_images_that_cannot_all_be_written_leave_out_as_it_was(fer_run, tmp_path, run_cli, monkeypatch):
    """A full disk at the second annotated image: one line naming it under --out, and --out holds what it held
    before (here: an earlier report of the same command, whole), never half a report."""
    from deepvision.apps.emotion import app
    from deepvision.errors import UserError

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a", "b", "c"):
        cv2.imwrite(str(photos / f"{name}.png"), np.full((120, 160, 3), 90, np.uint8))
    out = tmp_path / "o"
    code, _, err = run_cli("emotion", fer_run, "--image", photos, "--out", out, "--detector", "haar")
    assert code == 0, err
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real, calls = app.write_image, []

    def full_disk(path, image):
        calls.append(path)
        if len(calls) == 2:
            raise UserError(f"could not write {path}: No space left on device")
        real(path, image)

    monkeypatch.setattr(app, "write_image", full_disk)
    for target in (out, tmp_path / "new"):
        calls.clear()
        code, _, err = run_cli("emotion", fer_run, "--image", photos, "--out", target, "--detector", "haar")
        assert code == 2 and err.count("\n") == 1, err
        assert err.endswith(f"could not write {target / 'b.png'}: No space left on device\n"), err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not (tmp_path / "new").exists()


def test_a_video_whose_report_cannot_be_written_is_not_left(fer_run, tmp_path, run_cli, monkeypatch):
    """A disk that filled after the video was written left e.avi without its report, and the next run refused it
    as "not a video an earlier emotion run wrote"; the video now lands last, with its report."""
    from deepvision.apps.emotion import app
    from deepvision.errors import UserError
    from tests.inference.videotools import damaged_avi

    video = damaged_avi(tmp_path / "clip.avi", damaged=())
    real = app.atomic_write_text

    def full(path, text, *args, **kwargs):
        if str(path).endswith(".csv"):
            raise UserError(f"could not write {path}: No space left on device")
        return real(path, text, *args, **kwargs)

    monkeypatch.setattr(app, "atomic_write_text", full)
    code, out, err = run_cli("emotion", fer_run, "--video", video, "--headless", "--out", tmp_path / "out" / "e.avi",
                             "--detector", "haar")
    assert code == 2 and err.endswith("No space left on device\n") and not (tmp_path / "out").exists(), err
    monkeypatch.setattr(app, "atomic_write_text", real)
    code, out, err = run_cli("emotion", fer_run, "--video", video, "--headless", "--out", tmp_path / "out" / "e.avi",
                             "--detector", "haar")
    assert code == 0 and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["e.avi", "e.csv", "e.json"], err
