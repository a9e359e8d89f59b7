"""Face detection, eye location, alignment geometry and the applications' drawing, on real faces
shipped by scikit-image (astronaut.png, lfw_subset.npy) and OpenCV 4.x's cascades."""

from __future__ import annotations

import math
import os

import cv2
import numpy as np
import pytest

from deepvision.errors import UserError
from deepvision.inference.faces import (
    Dlib68Eyes,
    EyeFinder,
    Eyes,
    Face,
    HaarDetector,
    align_face,
    alignment_matrix,
    create_detector,
    largest_face,
    probability_canvas,
)
from deepvision.inference.faces import detect as detect_mod
from tests.faces.facetools import FACE, astronaut_bgr, iou

LEFT_TARGET, RIGHT_TARGET = (89.6, 89.6), (166.4, 89.6)


@pytest.fixture(scope="module")
def astronaut():
    return astronaut_bgr()


def test_haar_finds_the_astronaut_face(astronaut):
    faces = HaarDetector().detect(astronaut)  # the reference's 1.1 / 5 / 30x30
    assert [f.box for f in faces] == [FACE]


@pytest.mark.parametrize("width", [300, 360, 420, 480])
def test_haar_at_half_size_finds_the_full_size_box(astronaut, width):
    gray = cv2.cvtColor(cv2.resize(astronaut, (width, width), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    det = HaarDetector()
    [full] = det.detect(gray)
    [half] = det.detect_at(gray, 0.5)
    # boxes in the full-size image's pixels; at the scale searched (0.5) they agree to 3 pixels
    assert max(abs(a - b) for a, b in zip(full.box, half.box)) * 0.5 <= 3, (full.box, half.box)
    assert iou(full.box, half.box) > 0.85
    assert det.detect_at(gray, 1.0)[0].box == full.box


def test_haar_at_half_size_misses_faces_below_twice_its_window(astronaut):
    gray = cv2.cvtColor(cv2.resize(astronaut, (200, 200), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    det = HaarDetector()
    [full] = det.detect(gray)
    assert full.box[2] < 48  # the 24 x 24 window covers 48 pixels at half size
    assert det.detect_at(gray, 0.5) == []
    with pytest.raises(UserError, match="detection scale"):
        det.detect_at(gray, 1.5)


def test_haar_on_lfw_faces_and_non_faces():
    from skimage import data

    lfw = np.load(os.path.join(os.path.dirname(data.__file__), "lfw_subset.npy"))  # 100 faces then 100 non-faces
    assert lfw.shape == (200, 25, 25)
    det = HaarDetector()
    found = []
    for im in lfw:  # 25x25 crops: enlarge twice and pad so the 30x30 minimum size can fire
        img = cv2.resize((im * 255).round().astype(np.uint8), None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
        img = cv2.copyMakeBorder(img, 20, 20, 20, 20, cv2.BORDER_REPLICATE)
        found.append(bool(det.detect(img)))
    assert sum(found[:100]) >= 90
    assert sum(found[100:]) <= 5


def test_dlib_hog_finds_the_astronaut_face(astronaut):
    pytest.importorskip("dlib")
    faces = create_detector("dlib").detect(astronaut)
    assert len(faces) == 1 and iou(faces[0].box, FACE) > 0.6 and faces[0].score > 0
    assert create_detector("auto").name == "dlib"


def test_mtcnn_faces_and_eye_points(astronaut):
    pytest.importorskip("facenet_pytorch")
    faces = create_detector("mtcnn").detect(astronaut)
    assert len(faces) == 1 and iou(faces[0].box, FACE) > 0.5 and faces[0].score > 0.99
    eyes = EyeFinder("mtcnn")(astronaut, faces[0])
    assert eyes.source == "mtcnn"
    assert math.dist(eyes.left, (205.0, 101.7)) < 3 and math.dist(eyes.right, (246.8, 103.7)) < 3


def test_eye_cascade_inside_the_face_box(astronaut):
    eyes = EyeFinder("cascade")(astronaut, Face(FACE))
    assert eyes.source == "cascade"
    assert math.dist(eyes.left, (203, 101)) < 5 and math.dist(eyes.right, (247, 104)) < 5
    blank = np.full((200, 200, 3), 128, np.uint8)
    fallback = EyeFinder("auto")(blank, Face((50, 50, 100, 100)))
    assert fallback.source == "box" and fallback.left == (80.0, 87.0) and fallback.right == (120.0, 87.0)


def test_dlib68_eye_centres_are_the_means_of_points_36_to_47(tmp_path, monkeypatch):
    pytest.importorskip("dlib")
    with pytest.raises(UserError, match="landmark model not found"):
        Dlib68Eyes(tmp_path / "missing.dat")
    locator = object.__new__(Dlib68Eyes)
    pts = np.zeros((68, 2))
    pts[36:42] = [[10, 20], [12, 18], [14, 18], [16, 20], [14, 22], [12, 22]]  # mean (13, 20)
    pts[42:48] = pts[36:42] + [40, 4]  # mean (53, 24)
    monkeypatch.setattr(Dlib68Eyes, "points", lambda self, image, face: pts)
    eyes = locator.locate(np.zeros((10, 10), np.uint8), Face((0, 0, 5, 5)))
    assert eyes.left == (13.0, 20.0) and eyes.right == (53.0, 24.0) and eyes.source == "dlib68"


def _dots(size: int, left: tuple[float, float], right: tuple[float, float]) -> np.ndarray:
    img = np.full((size, size, 3), 128, np.uint8)
    cv2.circle(img, (round(left[0]), round(left[1])), 4, (0, 0, 255), -1)  # red: the image-left eye
    cv2.circle(img, (round(right[0]), round(right[1])), 4, (255, 0, 0), -1)  # blue
    return img


def _centroid(img: np.ndarray, channel: int) -> tuple[float, float]:
    others = [c for c in range(3) if c != channel]
    mask = (img[:, :, channel] > 200) & (img[:, :, others[0]] < 80) & (img[:, :, others[1]] < 80)
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


@pytest.mark.parametrize(("centre", "distance", "tilt"),
                         [((200, 180), 60, 0), ((150, 220), 44, 17), ((260, 160), 90, -25)])
def test_alignment_puts_the_eyes_at_the_specified_coordinates(centre, distance, tilt):
    a = math.radians(tilt)
    dx, dy = distance / 2 * math.cos(a), distance / 2 * math.sin(a)
    left, right = (centre[0] - dx, centre[1] - dy), (centre[0] + dx, centre[1] + dy)
    eyes = Eyes((int(round(left[0])), int(round(left[1]))), (int(round(right[0])), int(round(right[1]))), "test")
    aligned = align_face(_dots(400, left, right), eyes)
    assert aligned.shape == (256, 256, 3)
    assert math.dist(_centroid(aligned, 2), LEFT_TARGET) < 2
    assert math.dist(_centroid(aligned, 0), RIGHT_TARGET) < 2


def test_alignment_matrix_maps_astronaut_eyes(astronaut):
    eyes = EyeFinder("cascade")(astronaut, Face(FACE))
    m = alignment_matrix(eyes)
    left = m @ [int(eyes.left[0]), int(eyes.left[1]), 1]
    right = m @ [int(eyes.right[0]), int(eyes.right[1]), 1]
    assert math.dist(left, LEFT_TARGET) < 1 and math.dist(right, RIGHT_TARGET) < 1
    with pytest.raises(ValueError, match="same pixel"):
        alignment_matrix(Eyes((5, 5), (5, 5), "x"))


def test_largest_face_is_by_area():
    # (w - x)(h - y), the reference's bug, would pick the first box
    faces = [Face((0, 0, 40, 40)), Face((100, 100, 50, 50))]
    assert largest_face(faces).box == (100, 100, 50, 50)
    assert largest_face([]) is None


def test_probability_canvas_pixels():
    probs = [0.1, 0.05, 0.6, 0.1, 0.1, 0.05]
    canvas = probability_canvas(["angry", "scared", "happy", "sad", "surprised", "neutral"], probs)
    assert canvas.shape == (220, 300, 3)  # 35 * 6 + 10 = 220, not the 200 the reference says
    row = 2 * 35 + 32  # below the text of class 2 (happy)
    assert (canvas[row, 5:179] == (0, 0, 255)).all() and (canvas[row, 181:] == 0).all()
    assert (canvas[35 + 32, 16:] == 0).all()  # scared: bar to floor(300 * 0.05) = 15
    assert (canvas[2 * 35 + 13 : 2 * 35 + 25, 10:60] == 255).any()  # white text


def test_missing_cascades_name_the_extra(monkeypatch):
    monkeypatch.delattr(cv2, "CascadeClassifier")
    with pytest.raises(UserError, match=r"deepvision\[faces\]"):
        detect_mod.cv2_module()


def test_unknown_detector_and_cascade():
    with pytest.raises(UserError, match="unknown face detector"):
        create_detector("yolo")
    with pytest.raises(UserError, match="cascade not found"):
        HaarDetector("no_such_cascade")
