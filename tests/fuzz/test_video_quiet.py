"""A truncated or damaged video given to the video apps: only deepvision's one line is shown; OpenCV's
AVI reader and FFmpeg print nothing of their own, on opening or while reading frames."""

from __future__ import annotations

import os

import numpy as np
import pytest

from deepvision.errors import UserError

cv2 = pytest.importorskip("cv2")


def _avi(path, frames=20):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    return path


def _cut(path, fraction):
    data = path.read_bytes()
    cut = path.with_name(f"cut{int(fraction * 100)}{path.suffix}")
    cut.write_bytes(data[: int(len(data) * fraction)])
    return cut


def test_detect_on_a_truncated_avi_prints_only_its_error(tmp_path, capfd):
    from deepvision.inference.detect import detect_video

    video = _cut(_avi(tmp_path / "clip.avi"), 0.05)  # the headers are cut: OpenCV's AVI reader complained
    before = video.read_bytes()
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UserError, match=r"cannot open .*cut5\.avi as a video \(unsupported or damaged file\)"):
        detect_video(None, video, out)
    os.write(2, b"after\n")  # descriptor 2 is restored
    assert capfd.readouterr().err == "after\n"
    assert list(out.iterdir()) == [] and video.read_bytes() == before


@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.7])
def test_the_emotion_app_reads_what_decodes_without_native_lines(tmp_path, capfd, fraction):
    from deepvision.apps.emotion.app import frames_from, open_capture

    video = _cut(_avi(tmp_path / "clip.avi"), fraction)  # 0.1 and 0.7 end inside a frame: FFmpeg complained
    try:
        cap = open_capture(video)
    except UserError as exc:
        assert fraction == 0.05 and "as a video (unsupported or damaged file)" in str(exc)
    else:
        frames = list(frames_from(cap, False))
        cap.release()
        assert len(frames) < 20 and all(f.shape == (48, 64, 3) for f in frames)
        assert frames or fraction == 0.1  # cut inside the first frame: it opens, nothing decodes
    assert capfd.readouterr().err == ""
