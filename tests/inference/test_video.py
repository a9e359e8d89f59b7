"""The one video opener: a text file (an FFmpeg concat list, an HLS playlist, an SDP description) is
refused before FFmpeg can open the files it names, a FIFO without waiting; real containers open."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from deepvision.errors import UserError
from deepvision.inference.video import ffmpeg_name, open_video

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


def _png(value: int) -> bytes:
    return cv2.imencode(".png", np.full((48, 64, 3), value, np.uint8))[1].tobytes()


@pytest.mark.parametrize(("name", "pattern"), [("pat%01d.avi", "%01d"), ("x%d.png", "%d"),
                                               ("run%03d/clip.mp4", "%03d")])
def test_a_frame_number_pattern_in_the_path_is_refused_before_other_files_are_read(tmp_path, name, pattern):
    """OpenCV's image-sequence reader and FFmpeg's image2 demuxer would read pat0.avi, pat1.avi, ... in place
    of the file named (a FIFO among them blocks for good): the path is refused, nothing opened or changed."""
    named = tmp_path / name
    named.parent.mkdir(exist_ok=True)
    named.write_bytes(b"\x00\x01garbage" * 100)
    width = int(pattern[1:-1] or 1)
    numbered = [tmp_path / name.replace(pattern, f"{i:0{width}d}") for i in range(3)]
    for path in numbered:
        path.parent.mkdir(exist_ok=True)
    for path in numbered[:2]:
        path.write_bytes(_png(200))
    os.mkfifo(numbered[2])
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(UserError) as info:
        open_video(cv2, named)
    assert str(info.value) == (f"{named}: '{pattern}' in a video's path is a frame-number pattern (OpenCV and "
                               f"FFmpeg would read other, numbered files in its place); rename it without the '%'")
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("name", ["50%.avi", "100%off.avi", "%x1.avi"])
def test_a_percent_sign_that_is_no_frame_number_opens_the_file_named(tmp_path, name):
    writer = cv2.VideoWriter(str(tmp_path / name), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(3):
        writer.write(np.full((48, 64, 3), 90, np.uint8))
    writer.release()
    cap = open_video(cv2, tmp_path / name)
    frames = 0
    while cap.read()[0]:
        frames += 1
    cap.release()
    assert frames == 3


def test_only_the_ffmpeg_backend_opens_a_video(tmp_path, monkeypatch):
    """OpenCV's image-sequence backend, tried when FFmpeg fails, turns a digit run into a pattern and reads
    other files: the backend is named, never left to OpenCV's choice."""
    seen = []
    real = cv2.VideoCapture

    def spy(*args):
        seen.append(args[1:])
        return real(*args)

    monkeypatch.setattr(cv2, "VideoCapture", spy)
    (tmp_path / "clip1.avi").write_bytes(b"\x00\x01garbage" * 100)
    (tmp_path / "clip2.avi").write_bytes(_png(200))
    with pytest.raises(UserError, match=r"cannot open .*clip1.avi as a video \(unsupported or damaged file\)"):
        open_video(cv2, tmp_path / "clip1.avi")
    assert seen == [(cv2.CAP_FFMPEG,)]


def test_an_opencv_without_ffmpeg_is_named(tmp_path):
    (tmp_path / "v.avi").write_bytes(b"\x00\x01garbage" * 100)

    class Capture:
        def __init__(self, path, api):
            pass

        def isOpened(self):
            return False

        def release(self):
            pass

    fake = SimpleNamespace(CAP_FFMPEG=1900, VideoCapture=Capture,
                           videoio_registry=SimpleNamespace(hasBackend=lambda api: False))
    with pytest.raises(UserError, match=r"v.avi: this OpenCV build has no FFmpeg video reader; install "
                                        r"opencv-python-headless$"):
        open_video(fake, tmp_path / "v.avi")


def _clip(path, frames: int, value: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(frames):
        writer.write(np.full((48, 64, 3), value, np.uint8))
    writer.release()


def test_a_name_starting_with_an_ffmpeg_protocol_opens_the_file_of_that_name(tmp_path, monkeypatch):
    """FFmpeg reads a name's leading "word:" as a protocol: "concat:g.avi|long.avi" would read g.avi and then
    long.avi, "concat:f.avi" beside a FIFO f.avi would block for good. FFmpeg is handed the absolute path, so
    the file named (and checked) is the file read; the other files are left as they were."""
    monkeypatch.chdir(tmp_path)
    _clip(tmp_path / "long.avi", 9, 200)
    (tmp_path / "g.avi").write_bytes(b"\x00\x01garbage" * 90)
    os.mkfifo(tmp_path / "f.avi")
    seen = []
    real = cv2.VideoCapture
    monkeypatch.setattr(cv2, "VideoCapture", lambda name, api: seen.append(name) or real(name, api))
    names = ["concat:g.avi|long.avi", "concat:f.avi", "pipe:0.avi"]
    for name in names:
        _clip(tmp_path / name, 3, 90)
    before = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    for name in names:
        cap = open_video(cv2, name)
        means = []
        while (frame := cap.read())[0]:
            means.append(int(frame[1].mean()))
        cap.release()
        assert len(means) == 3 and all(abs(m - 90) <= 3 for m in means), (name, means)
    assert seen == [str(tmp_path / name) for name in names]
    assert {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_ffmpeg_is_handed_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert ffmpeg_name("concat:a.avi|b.avi") == str(tmp_path / "concat:a.avi|b.avi")
    assert ffmpeg_name(Path("x/../tcp:host.mp4")) == str(tmp_path / "tcp:host.mp4")
    assert ffmpeg_name(tmp_path / "v.avi") == str(tmp_path / "v.avi")


def test_a_video_that_does_not_hold_the_frames_written_is_refused(tmp_path):
    """OpenCV's writer says nothing when a frame cannot be written: past a file size limit detect reported an
    unreadable 10 kB video as written."""
    import cv2

    from deepvision.errors import UserError
    from deepvision.inference.video import check_written_video, write_frame

    path = tmp_path / ".partial-x1y2z3_4" / "v.mp4"
    path.parent.mkdir()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (32, 32))
    for i in range(12):
        write_frame(cv2, writer, np.full((32, 32, 3), i * 20, np.uint8))
    writer.release()
    check_written_video(cv2, path, 12, path)
    with pytest.raises(UserError, match=r"^could not write .*/v.mp4: it holds 12 of the 13 frames written"):
        check_written_video(cv2, path, 13, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # cut short: no index, nothing readable
    with pytest.raises(UserError) as info:
        check_written_video(cv2, path, 12, path)
    assert str(info.value).startswith(f"could not write {tmp_path / 'v.mp4'}: it holds 0 of the 12 frames"), info.value


class _Capture:
    """A capture declaring `declared` frames whose reads follow `pattern`: "1" a frame, "0" a failed read."""

    def __init__(self, pattern: str, declared: float) -> None:
        self.pattern, self.declared, self.reads = list(pattern), declared, 0

    def get(self, prop):
        return self.declared if prop == cv2.CAP_PROP_FRAME_COUNT else 0.0

    def read(self):
        self.reads += 1
        ok = bool(self.pattern) and self.pattern.pop(0) == "1"
        return ok, (np.zeros((4, 4, 3), np.uint8) if ok else None)


@pytest.mark.parametrize(("pattern", "declared", "given", "skipped"), [
    ("1101111", 7, 6, [2]),  # a damaged frame before the declared count: skipped, the rest read
    ("1100111", 7, 5, [2, 3]),
    ("11111000", 8, 5, [5, 6, 7]),  # failed reads up to an indexed count at the end: damaged frames too
    ("111110000", 8, 5, [5, 6, 7]),  # a failed read after the declared count: the end
    ("11111000", "8 estimated", 5, []),  # a count estimated from the duration (MPEG-TS) overshoots: the end
    ("1101111", 0, 2, []),  # no declared count: the first failed read ends the video
    ("1101111", float("nan"), 2, []),
    ("1101111", 4e9, 2, []),  # an unbelievable count is no count
])
def test_video_frames_skip_damaged_frames_before_the_declared_count(tmp_path, pattern, declared, given, skipped):
    from deepvision.inference.video import VideoFrames

    indexed = not (isinstance(declared, str) and declared.endswith(" estimated"))
    (tmp_path / "v").write_bytes(b"RIFF\0\0\0\0AVI LIST" if indexed else b"\x47\x40\x00\x10" * 3)  # AVI, MPEG-TS
    declared = declared if indexed else float(declared.split()[0])
    frames = VideoFrames(cv2, _Capture(pattern, declared), tmp_path / "v")
    assert len(list(frames)) == given and frames.skipped == skipped
    assert (frames.note is None) == (not skipped)


def test_video_frames_stop_at_max_frames_and_after_a_long_run_of_failed_reads(monkeypatch):
    from deepvision.inference import video
    from deepvision.inference.video import VideoFrames

    monkeypatch.setattr(video, "indexed_frame_count", lambda path: True)

    assert len(list(VideoFrames(cv2, _Capture("1011111", 7), "v.avi", max_frames=3))) == 3
    monkeypatch.setattr(video, "MAX_DAMAGED_RUN", 3)
    capture, given = _Capture("1" + "0" * 50, 1000), []
    with pytest.raises(UserError, match=r"^v\.avi: 999 of its 1000 frames could not be decoded \(frames 1, 2, 3 and "
                                        r"the 996 after them\)"):
        given += VideoFrames(cv2, capture, "v.avi")
    assert len(given) == 1 and capture.reads == 4  # not 1,000 reads
    frames = VideoFrames(cv2, _Capture("1" * 8 + "0" * 5, 10), "v.avi")
    assert len(list(frames)) == 8 and frames.note == "skipped 2 damaged frames of 10 (frames 8, 9)"


def test_a_damaged_frame_of_a_real_video_is_skipped_and_named(tmp_path):
    from deepvision.inference.video import VideoFrames
    from tests.inference.videotools import damaged_avi

    path = damaged_avi(tmp_path / "v.avi", damaged=(4,))
    before = path.read_bytes()
    cap = open_video(cv2, path)
    frames = VideoFrames(cv2, cap, path)
    means = [int(f.mean()) for f in frames]
    cap.release()
    assert len(means) == 9 and frames.skipped == [4] and means[4] > means[3] + 30  # frame 5 follows frame 3
    assert frames.note == "skipped 1 damaged frame of 10 (frame 4)"
    assert path.read_bytes() == before


def test_damaged_frames_at_the_end_of_a_real_video_are_named_and_counted(tmp_path):
    """The last frames damaged were taken for the end: 1 of 10 frames processed, exit 0, no word."""
    from deepvision.inference.video import VideoFrames
    from tests.inference.videotools import damaged_avi

    path = damaged_avi(tmp_path / "v.avi", damaged=(9,))
    cap = open_video(cv2, path)
    frames = VideoFrames(cv2, cap, path)
    assert len(list(frames)) == 9 and frames.index == 8 and frames.note == "skipped 1 damaged frame of 10 (frame 9)"
    cap.release()
    path = damaged_avi(tmp_path / "w.avi", damaged=tuple(range(1, 10)))
    cap = open_video(cv2, path)
    with pytest.raises(UserError, match=r"w\.avi: 9 of its 10 frames could not be decoded \(frames 1, 2, 3, 4, 5 "
                                        r"and 4 more\)"):
        list(VideoFrames(cv2, cap, path))
    cap.release()


def test_a_video_with_most_frames_damaged_is_refused_in_one_line(tmp_path):
    from deepvision.inference.video import VideoFrames
    from tests.inference.videotools import damaged_avi

    path = damaged_avi(tmp_path / "v.avi", damaged=(1, 2, 3, 4, 5, 6, 7))
    cap = open_video(cv2, path)
    with pytest.raises(UserError, match=r"v\.avi: 7 of its 10 frames could not be decoded \(frames 1, 2, 3, 4, 5 "
                                        r"and 2 more\); the video is damaged: re-encode it or give another$"):
        list(VideoFrames(cv2, cap, path))
    cap.release()


def _lower_declared_count(path, count: int):
    """`path` (an AVI) with the frame count of its header (avih and strh) set to `count`; its index unchanged."""
    import struct

    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, data.find(b"avih") + 24, count)
    struct.pack_into("<I", data, data.find(b"strh") + 40, count)
    path.write_bytes(bytes(data))
    return path


def test_an_avi_header_declaring_fewer_frames_than_its_index_is_read_by_its_index(tmp_path):
    """A header count lowered to 1 (the idx1 index listing 10 frames, 9 damaged) was read as a 1-frame video,
    exit 0; the index is the count, so the damaged frames are named and the video refused."""
    from deepvision.inference.video import VideoFrames, avi_index_frames
    from tests.inference.videotools import damaged_avi

    path = _lower_declared_count(damaged_avi(tmp_path / "v.avi", damaged=tuple(range(1, 10))), 1)
    assert avi_index_frames(path) == 10
    cap = open_video(cv2, path)
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 1
    with pytest.raises(UserError, match=r"v\.avi: 9 of its 10 frames could not be decoded"):
        list(VideoFrames(cv2, cap, path))
    cap.release()
    clean = _lower_declared_count(damaged_avi(tmp_path / "c.avi", damaged=()), 5)
    cap = open_video(cv2, clean)
    frames = VideoFrames(cv2, cap, clean)
    assert len(list(frames)) == 10 and frames.note is None
    cap.release()
    (tmp_path / "n.avi").write_bytes(b"RIFF\x04\x00\x00\x00AVI ")
    assert avi_index_frames(tmp_path / "n.avi") is None and avi_index_frames(tmp_path / "x.mp4") is None
