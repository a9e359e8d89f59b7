"""A video with no decodable frame is a one-line error, and nothing is written."""

from __future__ import annotations

import numpy as np
import pytest

from deepvision.errors import UserError

cv2 = pytest.importorskip("cv2")


def _undecodable_clip(tmp_path):
    writer = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for _ in range(3):
        writer.write(np.full((48, 64, 3), 90, np.uint8))
    writer.release()
    data = bytearray((tmp_path / "clip.mp4").read_bytes())
    start, end = data.find(b"mdat") + 4, data.find(b"moov") - 4
    assert 0 < start < end
    data[start:end] = bytes(end - start)  # the container opens, no frame decodes
    (tmp_path / "clip.mp4").write_bytes(bytes(data))
    return tmp_path / "clip.mp4"


def test_video_without_a_decodable_frame_is_an_error(tmp_path):
    from deepvision.inference.detect import detect_video

    _undecodable_clip(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UserError, match=r"clip.mp4: no frame could be decoded .*; nothing was written$"):
        detect_video(None, tmp_path / "clip.mp4", out)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("existing", [False, True])
def test_a_failed_video_leaves_no_out_folder_it_created(tmp_path, monkeypatch, existing):
    from deepvision.inference import detect

    monkeypatch.setattr(detect, "load_run", lambda *args, **kwargs: None)
    monkeypatch.setattr(detect.Detector, "from_run", classmethod(lambda cls, loaded, confidence: None))
    clip = _undecodable_clip(tmp_path)
    if existing:
        (tmp_path / "keep").mkdir()
    out = tmp_path / "keep" / "a" / "b"
    with pytest.raises(UserError, match="no frame could be decoded"):
        detect.run_detect(tmp_path / "run", [clip], out=out)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["clip.mp4", "keep"] if existing else ["clip.mp4"])
    if existing:
        assert list((tmp_path / "keep").iterdir()) == []
