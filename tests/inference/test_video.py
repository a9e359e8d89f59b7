"""The one video opener: a text file (an FFmpeg concat list, an HLS playlist, an SDP description) is
refused before FFmpeg can open the files it names, a FIFO without waiting; real containers open."""

from __future__ import annotations

import os

import numpy as np
import pytest

from deepvision.errors import UserError
from deepvision.inference.video import open_video

cv2 = pytest.importorskip("cv2")


@pytest.mark.parametrize(("text", "kind"), [
    ("ffconcat version 1.0\nfile seg.avi\n", "an FFmpeg concat list"),
    ("\ufeff#EXTM3U\n#EXTINF:1,\nseg.avi\n", "an HLS playlist"),
    ("v=0\no=- 0 0 IN IP4 127.0.0.1\nm=video 5004 RTP/AVP 96\n", "an SDP session description"),
    ("file seg.avi\n", "a text file"),
])
def test_playlists_and_text_are_refused_before_ffmpeg_opens_what_they_name(tmp_path, text, kind):
    os.mkfifo(tmp_path / "seg.avi")  # FFmpeg's concat demuxer would block on it for good
    (tmp_path / "v.avi").write_text(text, encoding="utf-8")
    with pytest.raises(UserError, match=f"v.avi is {kind}, not a video file"):
        open_video(cv2, tmp_path / "v.avi")


def test_a_fifo_is_refused_without_waiting(tmp_path):
    os.mkfifo(tmp_path / "v.avi")
    with pytest.raises(UserError, match=r"cannot read .*v.avi as a video: .*FIFO"):
        open_video(cv2, tmp_path / "v.avi")


@pytest.mark.parametrize(("name", "fourcc"), [("v.avi", "MJPG"), ("v.mp4", "mp4v")])
def test_binary_containers_open_and_read(tmp_path, name, fourcc):
    writer = cv2.VideoWriter(str(tmp_path / name), cv2.VideoWriter_fourcc(*fourcc), 10, (64, 48))
    for _ in range(2):
        writer.write(np.full((48, 64, 3), 90, np.uint8))
    writer.release()
    cap = open_video(cv2, tmp_path / name)
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (48, 64, 3) and abs(int(frame.mean()) - 90) <= 3
