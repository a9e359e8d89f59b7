"""read_bgr / write_image: OpenCV-layout images through the project's one decode rule and atomic writes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from deepvision.data.imageio import read_bgr
from deepvision.errors import UserError
from deepvision.fileio import write_image


def test_read_bgr_equals_opencv_and_honours_exif(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    assert np.array_equal(read_bgr(tmp_path / "a.png"), cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_COLOR))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(rgb).save(tmp_path / "r.jpg", exif=exif)
    assert read_bgr(tmp_path / "r.jpg").shape == (9, 6, 3)  # as shown, not as stored
    with pytest.raises(UserError, match="image not found"):
        read_bgr(tmp_path / "missing.png")


def test_write_image_is_whole_or_absent(tmp_path):
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 2] = 255  # red in BGR
    write_image(tmp_path / "o.png", bgr)
    assert np.array_equal(read_bgr(tmp_path / "o.png"), bgr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]  # no temporary left
    with pytest.raises(UserError, match="could not encode"):
        write_image(tmp_path / "o.unknownext", bgr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]
