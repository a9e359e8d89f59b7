"""Tiny generated videos with damaged frames, for the tests of every command that reads a video file."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np


def damaged_avi(path: Path, damaged: tuple[int, ...], frames: int = 10) -> Path:
    """A 64x48 MJPG AVI of `frames` frames whose frames numbered `damaged` (from 0) cannot be decoded: their
    JPEG header claims 640x480 in a 64x48 stream. OpenCV reads every other frame, the ones after them too."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(frames):
        writer.write(np.full((48, 64, 3), i * 20, np.uint8))
    writer.release()
    data, at = bytearray(path.read_bytes()), -1
    for number in range(frames):
        at = data.find(b"\xff\xc0", at + 1)  # the frame's start-of-frame marker
        assert at > 0
        if number in damaged:
            data[at + 5:at + 9] = struct.pack(">HH", 480, 640)
    path.write_bytes(bytes(data))
    return path
