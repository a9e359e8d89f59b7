"""Eye positions for alignment, from any landmark source.

Sources, best first: dlib's 68-point predictor (the reference's; needs the user's
`shape_predictor_68_face_landmarks.dat`), MTCNN's five points (when the face came from MTCNN), and
OpenCV's eye cascade inside the upper part of the face box (built in). When the cascade does not
find one eye on each side, the eyes are placed at fixed fractions of the box (source "box"), so
every detected face can be aligned.

`Eyes.left` is the eye on the image's left (the subject's right eye), `Eyes.right` the other one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from deepvision.errors import UserError
from deepvision.fileio import input_file
from deepvision.inference.faces.detect import Face, cascade_path, cv2_module, dlib_module, to_gray

EYE_SOURCES = ("auto", "dlib68", "mtcnn", "cascade", "box")
BOX_EYES = ((0.30, 0.37), (0.70, 0.37))  # typical eye centres in a frontal-face box (x, y fractions)


@dataclass(frozen=True)
class Eyes:
    left: tuple[float, float]  # image-left eye (x, y)
    right: tuple[float, float]  # image-right eye (x, y)
    source: str

    def to_dict(self) -> dict:
        return {"left": [round(float(v), 2) for v in self.left], "right": [round(float(v), 2) for v in self.right],
                "source": self.source}


class EyeLocator(Protocol):
    source: str

    def locate(self, image: np.ndarray, face: Face) -> Eyes | None: ...


class Dlib68Eyes:
    """dlib's 68-point shape predictor: eye centres are the means of points 36-41 and 42-47."""

    source = "dlib68"

    def __init__(self, predictor_path: str | Path) -> None:
        path = input_file(predictor_path, "landmark model", " (dlib's shape_predictor_68_face_landmarks.dat)")
        dlib = dlib_module()
        try:
            self.predictor = dlib.shape_predictor(str(path))
        except RuntimeError as exc:
            raise UserError(f"{path} is not a dlib shape predictor ({exc})") from None
        self._rect = dlib.rectangle

    def points(self, image: np.ndarray, face: Face) -> np.ndarray:
        x, y, w, h = face.box
        shape = self.predictor(to_gray(image), self._rect(int(x), int(y), int(x + w - 1), int(y + h - 1)))
        return np.array([(shape.part(i).x, shape.part(i).y) for i in range(shape.num_parts)], dtype=np.float64)

    def locate(self, image: np.ndarray, face: Face) -> Eyes | None:
        pts = self.points(image, face)
        if len(pts) != 68:
            raise UserError(f"the shape predictor gives {len(pts)} points; alignment needs the 68-point model")
        first, second = pts[36:42].mean(0), pts[42:48].mean(0)  # the subject's right eye, then left eye
        return Eyes(tuple(first), tuple(second), self.source)  # type: ignore[arg-type]


class MtcnnEyes:
    """MTCNN's landmarks carried by the face (points 0 and 1 are the image-left and image-right eyes)."""

    source = "mtcnn"

    def locate(self, image: np.ndarray, face: Face) -> Eyes | None:
        if face.landmarks is None or len(face.landmarks) < 2:
            return None
        a, b = sorted((tuple(face.landmarks[0]), tuple(face.landmarks[1])))
        return Eyes(a, b, self.source)  # type: ignore[arg-type]


class CascadeEyes:
    """OpenCV's eye cascade in the upper 60% of the face box: the largest eye on each half."""

    source = "cascade"

    def __init__(self, cascade: str = "haarcascade_eye", scale_factor: float = 1.1, min_neighbors: int = 5) -> None:
        cv2 = cv2_module()
        self.cascade = cv2.CascadeClassifier(str(cascade_path(cascade)))
        self.scale_factor, self.min_neighbors = scale_factor, min_neighbors

    def locate(self, image: np.ndarray, face: Face) -> Eyes | None:
        x, y, w, h = face.box
        roi = to_gray(image)[y : y + int(h * 0.6), x : x + w]
        if roi.size == 0:
            return None
        min_side = max(5, w // 8)
        found = self.cascade.detectMultiScale(roi, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                              minSize=(min_side, min_side))
        halves: dict[int, tuple[int, tuple[float, float]]] = {}
        for ex, ey, ew, eh in (found if len(found) else []):
            cx, cy = ex + ew / 2, ey + eh / 2
            side = int(cx >= w / 2)
            if side not in halves or ew * eh > halves[side][0]:
                halves[side] = (ew * eh, (x + cx, y + cy))
        if len(halves) < 2:
            return None
        return Eyes(halves[0][1], halves[1][1], self.source)


def box_eyes(face: Face) -> Eyes:
    """Eyes at fixed fractions of the face box: the last resort."""
    x, y, w, h = face.box
    (lx, ly), (rx, ry) = BOX_EYES
    return Eyes((x + lx * w, y + ly * h), (x + rx * w, y + ry * h), "box")


class EyeFinder:
    """Eyes for a face: the chosen source, then MTCNN points, then the eye cascade, then the box."""

    def __init__(self, source: str = "auto", predictor: str | Path | None = None) -> None:
        if source not in EYE_SOURCES:
            raise UserError(f"unknown eye source '{source}'; valid: {', '.join(EYE_SOURCES)}")
        if source == "dlib68" and predictor is None:
            raise UserError("dlib68 eyes need --landmarks PATH (shape_predictor_68_face_landmarks.dat)")
        chain: list[EyeLocator] = []
        if predictor is not None and source in ("auto", "dlib68"):
            chain.append(Dlib68Eyes(predictor))
        if source in ("auto", "mtcnn"):
            chain.append(MtcnnEyes())
        if source in ("auto", "cascade"):
            chain.append(CascadeEyes())
        self.chain = chain

    def __call__(self, image: np.ndarray, face: Face) -> Eyes:
        for locator in self.chain:
            eyes = locator.locate(image, face)
            if eyes is not None:
                return eyes
        return box_eyes(face)
