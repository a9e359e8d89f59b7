"""Face detection (Haar, dlib HOG, MTCNN), eye location, alignment (docs/faces.md) and the applications' drawing."""

from deepvision.inference.faces.align import DESIRED_LEFT_EYE, FACE_SIZE, align_face, alignment_matrix
from deepvision.inference.faces.detect import (
    DETECTORS,
    DlibHogDetector,
    Face,
    FaceDetector,
    HaarDetector,
    MtcnnDetector,
    available_detectors,
    create_detector,
    largest_face,
)
from deepvision.inference.faces.draw import draw_face, probability_canvas
from deepvision.inference.faces.landmarks import CascadeEyes, Dlib68Eyes, EyeFinder, Eyes, MtcnnEyes, box_eyes
from deepvision.inference.faces.track import FaceTracker

__all__ = [
    "DESIRED_LEFT_EYE", "DETECTORS", "FACE_SIZE", "CascadeEyes", "Dlib68Eyes", "DlibHogDetector", "EyeFinder", "Eyes",
    "Face", "FaceDetector", "FaceTracker", "HaarDetector", "MtcnnDetector", "MtcnnEyes", "align_face",
    "alignment_matrix", "available_detectors", "box_eyes", "create_detector", "draw_face", "largest_face",
    "probability_canvas",
]
