"""Face detectors behind one interface: OpenCV Haar cascade (default), dlib HOG, MTCNN.

Every detector takes an 8-bit image, BGR (OpenCV's order) or grayscale, and returns `Face`s with an
integer (x, y, w, h) box in that image's pixels; MTCNN also returns its five landmarks (eyes, nose,
mouth corners). The Haar cascade ships with OpenCV 4.x wheels (`cv2.data.haarcascades`); OpenCV 5.0
wheels have neither `CascadeClassifier` nor the cascade files, hence the `<5` pin of the extra.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from deepvision.errors import UserError

DETECTORS = ("haar", "dlib", "mtcnn")
CV2_HINT = "pip install 'deepvision[faces]' (OpenCV 4.x: opencv-python-headless>=4.8,<5)"


def cv2_module() -> Any:
    """OpenCV with cascade support, or a one-line UserError naming the extra to install."""
    try:
        import cv2
    except ImportError:
        raise UserError(f"face detection needs OpenCV: {CV2_HINT}") from None
    if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
        raise UserError(f"OpenCV {cv2.__version__} has no Haar cascades (OpenCV 5 wheels dropped them): {CV2_HINT}")
    return cv2


@dataclass
class Face:
    """One detected face: box (x, y, w, h) in pixels, a detector score, optional landmarks (K x 2, x/y)."""

    box: tuple[int, int, int, int]
    score: float | None = None
    landmarks: np.ndarray | None = field(default=None, repr=False)

    @property
    def area(self) -> int:
        return int(self.box[2]) * int(self.box[3])

    def scaled(self, factor: float) -> Face:
        """The same face in an image resized by `factor` (boxes rounded to whole pixels)."""
        box = tuple(int(round(v * factor)) for v in self.box)
        points = None if self.landmarks is None else self.landmarks * factor
        return Face(box, self.score, points)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"box": [int(v) for v in self.box], "score": self.score}
        if self.landmarks is not None:
            d["landmarks"] = np.round(self.landmarks, 2).tolist()
        return d


class FaceDetector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an 8-bit BGR or grayscale image, in the detector's order."""
        ...


def to_gray(image: np.ndarray) -> np.ndarray:
    cv2 = cv2_module()
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def to_rgb(image: np.ndarray) -> np.ndarray:
    cv2 = cv2_module()
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def cascade_path(name: str) -> Path:
    """A cascade file: a path, or a file name inside OpenCV's `cv2.data.haarcascades`."""
    path = Path(name)
    if path.is_file():
        return path
    cv2 = cv2_module()
    bundled = Path(cv2.data.haarcascades) / (name if name.endswith(".xml") else f"{name}.xml")
    if bundled.is_file():
        return bundled
    have = sorted(p.stem for p in Path(cv2.data.haarcascades).glob("*.xml"))
    raise UserError(f"cascade not found: {name} (give a path or one of {', '.join(have[:6])}, ...)")


class HaarDetector:
    """OpenCV's Viola-Jones cascade; defaults are the reference's (scale 1.1, 5 neighbours, 30 x 30)."""

    name = "haar"

    def __init__(self, cascade: str = "haarcascade_frontalface_default", scale_factor: float = 1.1,
                 min_neighbors: int = 5, min_size: tuple[int, int] = (30, 30)) -> None:
        if scale_factor <= 1.0:
            raise UserError(f"the cascade scale factor must be above 1, got {scale_factor}")
        cv2 = cv2_module()
        self.path = cascade_path(cascade)
        self.cascade = cv2.CascadeClassifier(str(self.path))
        if self.cascade.empty():
            raise UserError(f"{self.path} is not an OpenCV cascade file")
        self.scale_factor, self.min_neighbors, self.min_size = scale_factor, int(min_neighbors), tuple(min_size)

    def detect(self, image: np.ndarray) -> list[Face]:
        cv2 = cv2_module()
        rects = self.cascade.detectMultiScale(to_gray(image), scaleFactor=self.scale_factor,
                                              minNeighbors=self.min_neighbors, minSize=self.min_size,
                                              flags=cv2.CASCADE_SCALE_IMAGE)
        return [Face(tuple(int(v) for v in r)) for r in (rects if len(rects) else [])]  # type: ignore[misc]

    def detect_at(self, image: np.ndarray, scale: float) -> list[Face]:
        """Faces searched on `image` resized by `scale` (0 < scale <= 1), boxes in `image`'s pixels.

        The cascade scans about scale^2 as many windows (at 0.5, a third of the time), but its
        24 x 24 window then covers 24 / scale pixels of `image`: the smallest face found grows to
        max(min_size, 24 / scale), so a scale below 1 suits faces that are large in the frame.
        """
        if not 0 < scale <= 1:
            raise UserError(f"the detection scale must be in (0, 1], got {scale}")
        if scale == 1:
            return self.detect(image)
        cv2 = cv2_module()
        gray = to_gray(image)
        h, w = gray.shape[:2]
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        window = self.cascade.getOriginalWindowSize()
        min_size = tuple(max(math.ceil(m * scale), k) for m, k in zip(self.min_size, window))
        rects = self.cascade.detectMultiScale(small, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                              minSize=min_size, flags=cv2.CASCADE_SCALE_IMAGE)
        fx, fy = w / size[0], h / size[1]
        faces = []
        for x, y, bw, bh in rects if len(rects) else []:
            x0, y0 = round(x * fx), round(y * fy)
            x1, y1 = min(w, round((x + bw) * fx)), min(h, round((y + bh) * fy))
            faces.append(Face((x0, y0, x1 - x0, y1 - y0)))
        return faces


class DlibHogDetector:
    """dlib's HOG + linear-SVM frontal detector (the reference's age/gender detector), upsampled once."""

    name = "dlib"

    def __init__(self, upsample: int = 1, threshold: float = 0.0) -> None:
        dlib = dlib_module()
        self.detector = dlib.get_frontal_face_detector()
        self.upsample, self.threshold = int(upsample), float(threshold)

    def detect(self, image: np.ndarray) -> list[Face]:
        rects, scores, _ = self.detector.run(to_gray(image), self.upsample, self.threshold)
        h, w = image.shape[:2]
        faces = []
        for r, s in zip(rects, scores):
            x0, y0 = max(0, r.left()), max(0, r.top())
            x1, y1 = min(w, r.right() + 1), min(h, r.bottom() + 1)
            if x1 > x0 and y1 > y0:
                faces.append(Face((x0, y0, x1 - x0, y1 - y0), float(s)))
        return faces


class MtcnnDetector:
    """facenet-pytorch's MTCNN (weights ship in the package); landmarks: image-left eye, image-right eye,
    nose, mouth left, mouth right.

    MTCNN searches an image pyramid whose first level scales `min_face_size` pixels to P-Net's 12 x 12
    window (each next level by `factor`), keeps P-Net's windows above `thresholds[0]`, checks them with
    R-Net (`thresholds[1]`) and O-Net (`thresholds[2]`); faces below `min_score` are dropped. A larger
    `min_face_size` drops the largest (costliest) levels and most of R-Net's and O-Net's candidates.
    `refine` runs only O-Net on given boxes: a cheap check that a face is still there (docs/faces.md).
    """

    name = "mtcnn"

    def __init__(self, min_face_size: int = 20, min_score: float = 0.9,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7), factor: float = 0.709,
                 device: str = "cpu") -> None:
        if min_face_size < 12:
            raise UserError(f"the MTCNN minimum face size must be at least 12 pixels, got {min_face_size}")
        if not 0 < factor < 1:
            raise UserError(f"the MTCNN pyramid factor must be in (0, 1), got {factor}")
        if len(thresholds) != 3 or not all(0 <= t < 1 for t in thresholds):
            raise UserError(f"give three MTCNN thresholds in [0, 1) (P-Net, R-Net, O-Net), got {thresholds}")
        mtcnn = mtcnn_class()
        self.model = mtcnn(keep_all=True, min_face_size=int(min_face_size), thresholds=list(thresholds),
                           factor=float(factor), device=device)
        self.min_face_size = int(min_face_size)
        self.min_score = float(min_score)
        self.device = device

    def detect(self, image: np.ndarray, min_face_size: int | None = None) -> list[Face]:
        """Faces of at least `min_face_size` pixels (default: the detector's; at most the image's smaller
        side), in MTCNN's order."""
        import torch

        side = min(image.shape[:2])
        if side < 12:  # smaller than P-Net's window: MTCNN's pyramid would have no level
            return []
        self.model.min_face_size = max(12, min(side, int(min_face_size or self.min_face_size)))
        try:
            with torch.inference_mode():
                boxes, probs, points = self.model.detect(to_rgb(image), landmarks=True)
        finally:
            self.model.min_face_size = self.min_face_size
        if boxes is None:
            return []
        return self._faces(boxes, probs, points, image.shape[:2])

    def refine(self, image: np.ndarray, faces: list[Face], min_score: float | None = None) -> list[Face]:
        """O-Net, MTCNN's last stage, on each face's box (made square): the faces it still scores at
        `min_score` (default: the detector's) or more, with its moved box and landmarks, in the given
        order. About a millisecond a face on a CPU core against tens for `detect`; it follows a face
        that moved by a fraction of its size (O-Net's box regression) and drops one that left or
        turned away."""
        if not faces:
            return []
        import torch
        from facenet_pytorch.models.utils.detect_face import bbreg, imresample, pad, rerec
        from torchvision.ops import nms

        h, w = image.shape[:2]
        with torch.inference_mode():
            img = torch.as_tensor(to_rgb(image), device=self.device).permute(2, 0, 1).unsqueeze(0).float()
            boxes = torch.tensor([[x, y, x + bw, y + bh, 0.0] for x, y, bw, bh in (f.box for f in faces)],
                                 dtype=torch.float32, device=self.device)
            boxes = rerec(boxes)
            y0, y1, x0, x1 = pad(boxes, w, h)
            crops = [imresample(img[:, :, y0[k] - 1 : y1[k], x0[k] - 1 : x1[k]], (48, 48))
                     for k in range(len(faces))]
            reg, marks, prob = self.model.onet((torch.cat(crops) - 127.5) * 0.0078125)
            score = prob[:, 1]
            keep = score >= (self.min_score if min_score is None else min_score)
            boxes, reg, marks, score = boxes[keep], reg[keep], marks[keep], score[keep]
            bw, bh = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
            points = torch.stack((bw[:, None] * marks[:, :5] + boxes[:, :1] - 1,
                                  bh[:, None] * marks[:, 5:] + boxes[:, 1:2] - 1), dim=2)
            boxes[:, 4] = score
            boxes = bbreg(boxes, reg)
            # two carried boxes that moved onto the same face: the higher score stays
            kept = nms(boxes[:, :4], score, 0.5).sort().values
            boxes, score, points = boxes[kept], score[kept], points[kept]
        return self._faces(boxes[:, :4].numpy(), score.numpy(), points.numpy(), (h, w), 0.0)

    def _faces(self, boxes: Any, probs: Any, points: Any, shape: tuple[int, int],
               min_score: float | None = None) -> list[Face]:
        h, w = shape
        floor = self.min_score if min_score is None else min_score
        faces = []
        for box, p, pts in zip(boxes, probs, points):
            if p is None or p < floor:
                continue
            x0, y0 = max(0, int(round(box[0]))), max(0, int(round(box[1])))
            x1, y1 = min(w, int(round(box[2]))), min(h, int(round(box[3])))
            if x1 > x0 and y1 > y0:
                faces.append(Face((x0, y0, x1 - x0, y1 - y0), float(p), np.asarray(pts, dtype=np.float64)))
        return faces


def dlib_module() -> Any:
    try:
        import dlib
    except ImportError:
        raise UserError("the dlib detector and 68-point landmarks need dlib: pip install 'deepvision[dlib]'") from None
    return dlib


def mtcnn_class() -> Any:
    try:
        from facenet_pytorch import MTCNN
    except ImportError as exc:
        raise UserError(f"the MTCNN detector needs facenet-pytorch ({exc}): pip install 'deepvision[mtcnn]' && "
                        f"pip install --no-deps facenet-pytorch") from None
    return MTCNN


def available_detectors() -> list[str]:
    """The detector backends importable here (haar needs OpenCV 4.x, dlib needs dlib, mtcnn facenet-pytorch)."""
    found = []
    for name, check in (("haar", cv2_module), ("dlib", dlib_module), ("mtcnn", mtcnn_class)):
        try:
            check()
            found.append(name)
        except UserError:
            pass
    return found


def create_detector(name: str = "haar", **options: Any) -> FaceDetector:
    """A detector by name: haar (default), dlib, mtcnn, or auto (dlib when importable, else haar)."""
    if name == "auto":
        try:
            dlib_module()
            name = "dlib"
        except UserError:
            name = "haar"
    if name == "haar":
        return HaarDetector(**options)
    if name == "dlib":
        return DlibHogDetector(**options)
    if name == "mtcnn":
        return MtcnnDetector(**options)
    raise UserError(f"unknown face detector '{name}'; valid: auto, {', '.join(DETECTORS)}")


def largest_face(faces: list[Face]) -> Face | None:
    """The face with the largest area w * h (not the reference's (w - x)(h - y)); the first on ties."""
    return max(faces, key=lambda f: f.area) if faces else None
