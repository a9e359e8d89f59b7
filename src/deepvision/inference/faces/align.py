"""Face alignment exactly as the reference deployment (docs/faces.md).

1. Eye centres are cast to int.
2. angle = atan2(dY, dX) in degrees - 180, with d = (subject's right eye) - (subject's left eye);
   the subject's left eye is the one on the image's right.
3. scale = (1 - 2 * 0.35) * 256 / eye distance.
4. Rotate and scale about the eyes' integer midpoint, then translate the midpoint to
   (0.5 * 256, 0.35 * 256) = (128, 89.6).
5. Bicubic warp to 256 x 256.

The image-left eye lands at (0.35 * 256, 0.35 * 256) = (89.6, 89.6), the other at (166.4, 89.6).
"""

from __future__ import annotations

import math

import numpy as np

from deepvision.inference.faces.detect import cv2_module
from deepvision.inference.faces.landmarks import Eyes

DESIRED_LEFT_EYE = (0.35, 0.35)
FACE_SIZE = 256


def alignment_matrix(eyes: Eyes, size: int = FACE_SIZE, desired_left_eye: tuple[float, float] = DESIRED_LEFT_EYE,
                     height: int | None = None) -> np.ndarray:
    """The 2 x 3 affine matrix of the alignment (OpenCV convention: dst = M @ [x, y, 1])."""
    cv2 = cv2_module()
    height = height or size
    left = (int(eyes.right[0]), int(eyes.right[1]))  # the subject's left eye
    right = (int(eyes.left[0]), int(eyes.left[1]))  # the subject's right eye
    d_y, d_x = right[1] - left[1], right[0] - left[0]
    dist = math.hypot(d_x, d_y)
    if dist == 0:
        raise ValueError("both eyes are at the same pixel; the face cannot be aligned")
    angle = math.degrees(math.atan2(d_y, d_x)) - 180
    scale = (1.0 - 2 * desired_left_eye[0]) * size / dist
    center = ((left[0] + right[0]) // 2, (left[1] + right[1]) // 2)
    m = cv2.getRotationMatrix2D((float(center[0]), float(center[1])), angle, scale)
    m[0, 2] += size * 0.5 - center[0]
    m[1, 2] += height * desired_left_eye[1] - center[1]
    return m


def align_face(image: np.ndarray, eyes: Eyes, size: int = FACE_SIZE,
               desired_left_eye: tuple[float, float] = DESIRED_LEFT_EYE, height: int | None = None) -> np.ndarray:
    """The aligned `size` x `size` face (bicubic), the image-left eye at `desired_left_eye` of the output."""
    cv2 = cv2_module()
    m = alignment_matrix(eyes, size, desired_left_eye, height)
    return cv2.warpAffine(image, m, (size, height or size), flags=cv2.INTER_CUBIC)
