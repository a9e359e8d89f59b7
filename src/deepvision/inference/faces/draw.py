"""Drawing of the reference applications (docs/faces.md): probability canvas, face box and label.

Canvas: black, `width` (300) wide and 35 * K + 10 high (220 for the 6 emotions, 290 for the 8 age
buckets). Class i with probability p: a filled red bar from (5, 35i + 5) to (floor(300p), 35i + 35)
and white text "<label>: <100p:.2f>%" at (10, 35i + 23), Hershey simplex, scale 0.45, thickness 2.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deepvision.data.imageio import max_image_pixels
from deepvision.inference.faces.detect import cv2_module

RED = (0, 0, 255)  # BGR
GREEN = (0, 255, 0)
WHITE = (255, 255, 255)
ROW = 35


def canvas_height(classes: int) -> int:
    return ROW * classes + 10


def probability_canvas(labels: Sequence[str], probs: Sequence[float], width: int = 300) -> np.ndarray:
    """The BGR probability canvas of the emotion app (one 35-pixel row per class)."""
    cv2 = cv2_module()
    canvas = np.zeros((canvas_height(len(labels)), width, 3), dtype=np.uint8)
    for i, (label, p) in enumerate(zip(labels, probs)):
        p = float(p)
        cv2.rectangle(canvas, (5, i * ROW + 5), (int(p * width), i * ROW + ROW), RED, -1)
        cv2.putText(canvas, f"{label}: {p * 100:.2f}%", (10, i * ROW + 23), cv2.FONT_HERSHEY_SIMPLEX, 0.45, WHITE, 2)
    return canvas


def draw_face(frame: np.ndarray, box: Sequence[int], label: str | None = None, color: tuple[int, int, int] = RED,
              scale: float = 0.45) -> np.ndarray:
    """A box of thickness 2 around the face and the label at (x, y - 10), drawn in place."""
    cv2 = cv2_module()
    x, y, w, h = (int(v) for v in box)
    if label:
        cv2.putText(frame, label, (x, y - 10), cv2.FONT_HERSHEY_SIMPLEX, scale, color, 2)
    cv2.rectangle(frame, (x, y), (x + w, y + h), color, 2)
    return frame


def resize_to_width(image: np.ndarray, width: int) -> tuple[np.ndarray, float]:
    """Resize keeping the aspect ratio (area interpolation, like imutils.resize); returns (image, factor).
    An enlargement whose result would be above the pixel limit (`imageio.max_image_pixels`; a 4 x 250,000
    photo made 800 wide is 40 gigapixels) is not made: the image comes back as it is, factor 1."""
    cv2 = cv2_module()
    h, w = image.shape[:2]
    if w == width:
        return image, 1.0
    factor = width / float(w)
    height = max(1, int(h * factor))
    if width > w and width * height > max_image_pixels():
        return image, 1.0
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA), factor


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Two BGR images next to each other on a black background (for videos and summary images)."""
    h = max(left.shape[0], right.shape[0])
    out = np.zeros((h, left.shape[1] + right.shape[1], 3), dtype=np.uint8)
    out[: left.shape[0], : left.shape[1]] = left if left.ndim == 3 else left[:, :, None]
    out[: right.shape[0], left.shape[1] :] = right if right.ndim == 3 else right[:, :, None]
    return out
