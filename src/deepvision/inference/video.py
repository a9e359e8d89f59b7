"""Reading video files with OpenCV without its native log lines.

A damaged or truncated file makes OpenCV's own AVI reader and FFmpeg print to the process's standard
error (for example "Unexpected element. Expected: LIST", "moov atom not found"), straight from C, before
deepvision's one-line error. `open_video` opens a file with that output silenced, and the capture it
returns reads frames the same way: file descriptor 2 points at the null device for the duration of each
native call only, and OpenCV's own logger is set to silent around it.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deepvision.errors import UserError
from deepvision.fileio import open_regular_file, public_names

DEFAULT_FPS = 30.0  # output videos of a source declaring no usable frame rate (a camera, a damaged header)


def frame_rate(capture: Any, cv2: Any) -> float:
    """The frame rate a video declares when it is usable (above 0, at most 1,000 frames/s: a 0.5 frames/s
    time-lapse keeps its rate), else DEFAULT_FPS: the encoder cannot open an output at a header's NaN, 0 or
    4e9 frames/s."""
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    return fps if 0 < fps <= 1000 else DEFAULT_FPS


@contextlib.contextmanager
def quiet_native_output(cv2: Any = None) -> Iterator[None]:
    """Standard error (file descriptor 2) to the null device for the block, and OpenCV's logger silent;
    both restored afterwards, whatever happens. Python's own writes are flushed first."""
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    level = log.getLogLevel() if log is not None else None
    if log is not None:
        log.setLogLevel(log.LOG_LEVEL_SILENT)
    with contextlib.suppress(ValueError, OSError):
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 to save: nothing would be shown anyway
        saved = None
    if saved is not None:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
    try:
        yield
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)
        if log is not None:
            log.setLogLevel(level)


class QuietCapture:
    """A cv2.VideoCapture whose reads run under `quiet_native_output`; everything else is passed on."""

    def __init__(self, cv2: Any, capture: Any) -> None:
        self._cv2, self._capture = cv2, capture

    def read(self) -> tuple[bool, Any]:
        with quiet_native_output(self._cv2):
            return self._capture.read()

    def grab(self) -> bool:
        with quiet_native_output(self._cv2):
            return self._capture.grab()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._capture, name)


MAX_DECLARED_FRAMES = 100_000_000  # a header declaring more is not believed (a damaged count, not a video)
MAX_DAMAGED_RUN = 1_000  # failed reads in a row with no readable frame yet after them: the file's real end
MAX_DAMAGED_FRACTION = 0.5  # more of the declared frames damaged than this: the video is refused


def declared_frames(capture: Any, cv2: Any) -> int | None:
    """The frame count a video's container declares, when known and believable (1 to MAX_DECLARED_FRAMES)."""
    try:
        count = float(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0)
    except (TypeError, ValueError):
        return None
    return int(count) if 1 <= count <= MAX_DECLARED_FRAMES else None


MAX_AVI_INDEX_BYTES = 256 << 20  # 16 bytes a frame: 16 million frames; a larger idx1 is not read


def avi_index_frames(path: str | Path) -> int | None:
    """The video frames an AVI's own index (`idx1`) lists: the most non-empty chunks of one stream holding
    video (`NNdc`, `NNdb`). FFmpeg reads an AVI by this index, while the count OpenCV reports is the header's,
    which a damaged or crafted file may set lower (1 for 10 frames). None when the file has no idx1 (OpenDML
    files index elsewhere) or is no AVI."""
    import struct

    import numpy as np

    try:
        with open_regular_file(path) as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"AVI ":
                return None
            at, end = 12, min(os.fstat(f.fileno()).st_size, 8 + struct.unpack("<I", head[4:8])[0])
            while at + 8 <= end:
                f.seek(at)
                chunk, size = struct.unpack("<4sI", f.read(8))
                if chunk == b"idx1":
                    if size > MAX_AVI_INDEX_BYTES:
                        return None
                    data = f.read(size)
                    entries = np.frombuffer(data[: len(data) // 16 * 16], dtype=[("id", "S4"), ("flags", "<u4"),
                                                                               ("offset", "<u4"), ("size", "<u4")])
                    ids = entries["id"][entries["size"] > 0]
                    video = ids[np.char.endswith(ids, b"dc") | np.char.endswith(ids, b"db")]
                    return int(np.unique(video, return_counts=True)[1].max()) if video.size else None
                at += 8 + size + (size & 1)
    except (OSError, struct.error, ValueError):
        return None
    return None


def _frame_list(numbers: list[int], shown: int = 5) -> str:
    """ "frame 4", "frames 4, 7", "frames 2, 3, 5, 6, 8 and 3 more" (frame numbers from 0)."""
    head = ", ".join(map(str, numbers[:shown]))
    more = f" and {len(numbers) - shown} more" if len(numbers) > shown else ""
    return f"frame{'s' if len(numbers) > 1 else ''} {head}{more}"


def indexed_frame_count(path: str | Path) -> bool:
    """Whether the container at `path` indexes its frames (AVI, MP4/MOV), so the count it declares is the
    frames it holds; for others (MPEG-TS, MPEG-PS, ...) OpenCV estimates the count from the duration, and it
    may overshoot (a 100-frame MPEG-TS file declares 199)."""
    try:
        with open_regular_file(path) as f:
            head = f.read(12)
    except OSError:
        return False
    return head[:4] == b"RIFF" and head[8:12] == b"AVI " or head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide")


class VideoFrames:
    """The frames of an opened video file, in order: the one rule every command reading a video file uses.
    A failed read before the container's declared frame count (`declared_frames`) is a damaged frame (a
    corrupt packet; OpenCV reads the frames after it), wherever it lies: it is skipped and counted (`skipped`,
    `note`), never taken for the end. Failed reads with no readable frame after them are damaged frames too
    when the container indexes its frames (`indexed_frame_count`), else the real end (an estimated count
    overshoots). After MAX_DAMAGED_RUN failed reads in a row the rest of the declared frames are counted as
    unread (`untried`) without trying them. More than MAX_DAMAGED_FRACTION of the declared frames damaged or
    unread: UserError (none decoded at all: no frame, which every reader refuses in its own words). `index`:
    the 0-based position in the video of the frame last given, which results name. Without a declared count
    the first failed read ends the video."""

    def __init__(self, cv2: Any, capture: Any, path: str | Path, max_frames: int | None = None) -> None:
        self.capture, self.path, self.max_frames = capture, path, max_frames
        counts = [n for n in (declared_frames(capture, cv2), avi_index_frames(path)) if n]
        self.declared = min(max(counts), MAX_DECLARED_FRAMES) if counts else None  # the index over a lower header
        self.indexed = indexed_frame_count(path)
        self.skipped: list[int] = []  # numbers of the damaged frames skipped, from 0 as `index` and results
        self.untried = 0  # declared frames after a run of MAX_DAMAGED_RUN failed reads, not read
        self.given = 0
        self.index = -1

    def __iter__(self) -> Iterator[Any]:
        index, run = 0, []  # frames read so far (failed included); the current run of failed reads
        while self.max_frames is None or self.given < self.max_frames:
            ok, frame = self.capture.read()
            index += 1
            if not ok or frame is None:
                if self.declared is None or index > self.declared:
                    break
                run.append(index - 1)
                if len(run) >= MAX_DAMAGED_RUN:
                    self.untried = self.declared - index if self.indexed else 0
                    break
                continue
            if run:  # a readable frame after them: the failed reads were damaged frames, not the end
                self.skipped += run
                run = []
                self._check()
            self.given, self.index = self.given + 1, index - 1
            yield frame
        self.skipped += run if self.indexed else []  # failed reads up to an indexed count: damaged frames at the end
        if self.given:  # none decoded: the reader's own line says so (a damaged video, or a codec OpenCV lacks)
            self._check()

    def _check(self) -> None:
        bad = len(self.skipped) + self.untried
        if self.declared is not None and bad > self.declared * MAX_DAMAGED_FRACTION:
            raise UserError(f"{self.path}: {bad} of its {self.declared} frames could not be decoded "
                            f"({_frame_list(self.skipped)}{self._untried_text}); the video is damaged: re-encode it "
                            f"or give another")

    @property
    def _untried_text(self) -> str:
        return f" and the {self.untried} after them" if self.untried else ""

    @property
    def slots(self) -> int:
        """The input frames covered so far, damaged ones skipped included: the frames of an output that keeps
        the input's timing (`FrameSlots`)."""
        return max([self.index, *self.skipped]) + 1

    @property
    def note(self) -> str | None:
        """One line naming the damaged frames skipped, None when there were none."""
        if not self.skipped:
            return None
        n = len(self.skipped) + self.untried
        return (f"skipped {n} damaged frame{'s' if n > 1 else ''} of {self.declared} ({_frame_list(self.skipped)}"
                f"{self._untried_text})")


# FFmpeg demuxers that read a list of other files or network streams from a text file: a "video" like
# this makes FFmpeg open whatever it names (a FIFO blocks for good, a device reads for ever)
_PLAYLIST_STARTS = {b"ffconcat": "an FFmpeg concat list", b"#EXTM3U": "an HLS playlist",
                    b"<?xml": "an XML document (a DASH manifest?)", b"<MPD": "a DASH manifest",
                    b"v=0": "an SDP session description"}
_SNIFF_BYTES = 4096


def check_video_container(path: str | Path, what: str = "a video") -> None:
    """UserError unless `path` is a regular file whose first bytes can be a binary video container.
    Every container FFmpeg reads a video from is binary; a text file is a playlist, a concat list or a
    session description whose entries FFmpeg would open in turn (outside any check made here), so it is
    refused before OpenCV sees it. A FIFO or device is refused without waiting."""
    try:
        with open_regular_file(path) as f:
            head = f.read(_SNIFF_BYTES)
    except OSError as exc:
        raise UserError(f"cannot read {path} as {what}: {exc.strerror or exc}") from None
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    kind = next((name for sig, name in _PLAYLIST_STARTS.items() if start.startswith(sig)), None)
    if kind is None and head and b"\0" not in head:
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError as exc:
            text = head[: exc.start].decode("utf-8") if len(head) - exc.start < 4 else ""
        if text and all(ch.isprintable() or ch in "\t\r\n" for ch in text):
            kind = "a text file"
    if kind is not None:
        raise UserError(f"{path} is {kind}, not a video file; give the video itself (FFmpeg would open the "
                        f"files it names)")


# a printf frame number ("%d", "%03d"): OpenCV's image-sequence reader and FFmpeg's image2 demuxer (a name
# ending in an image extension) read "x%01d.avi" as x0.avi, x1.avi, ... in place of the file named
_FRAME_NUMBER = re.compile(r"%\d*d")


def check_video_name(path: str | Path) -> None:
    """UserError when `path` holds a frame-number pattern, which a video reader would expand into the names
    of other files (a FIFO among them blocks for good); the file is not opened."""
    found = _FRAME_NUMBER.search(str(path))
    if found:
        raise UserError(f"{path}: {found.group()!r} in a video's path is a frame-number pattern (OpenCV and FFmpeg "
                        f"would read other, numbered files in its place); rename it without the '%'")


def ffmpeg_name(path: str | Path) -> str:
    """The name to hand FFmpeg (through OpenCV) for the local file `path`, read or written: its absolute path.
    FFmpeg takes a name's leading "word:" for a protocol ("concat:a.avi|b.avi" reads other files, "pipe:1" a
    descriptor, "tcp:" the network); an absolute path starts with "/" (or a drive letter, which FFmpeg knows),
    so the file named is the file opened."""
    return os.path.abspath(os.fspath(path))


def open_video(cv2: Any, path: str | Path, what: str = "a video") -> QuietCapture:
    """The opened capture of video file `path` (natively silent, see the module docstring); UserError
    when OpenCV cannot open it, when its path holds a frame-number pattern (`check_video_name`) or when the
    file is not a binary container (`check_video_container`). Only the FFmpeg backend opens it, by its
    `ffmpeg_name`: OpenCV's image-sequence backend, tried after FFmpeg fails, reads numbered files other than
    the one named, and FFmpeg reads a "protocol:" prefix as one."""
    check_video_name(path)
    check_video_container(path, what)
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg quiet, where the backend reads it late
    with quiet_native_output(cv2):
        capture = cv2.VideoCapture(ffmpeg_name(path), cv2.CAP_FFMPEG)
        opened = capture.isOpened()
    if not opened:
        capture.release()
        registry = getattr(cv2, "videoio_registry", None)
        if registry is not None and not registry.hasBackend(cv2.CAP_FFMPEG):
            raise UserError(f"cannot open {path}: this OpenCV build has no FFmpeg video reader; install "
                            f"opencv-python-headless")
        raise UserError(f"cannot open {path} as {what} (unsupported or damaged file)")
    return QuietCapture(cv2, capture)


def write_frame(cv2: Any, writer: Any, frame: Any) -> None:
    """One frame to `writer`, OpenCV's complaints silenced: a frame it cannot write (a full disk, a file size
    limit) is found by `check_written_video`, said in one line, not one warning a frame."""
    with quiet_native_output(cv2):
        writer.write(frame)


class FrameSlots:
    """Frames written to an output video in the slots of the input's frames: a black frame stands in the slot of
    each damaged frame skipped (`VideoFrames.skipped`), so the output keeps the input's timing and numbering.
    `written`: the frames the output holds, which `check_written_video` expects."""

    def __init__(self, cv2: Any, writer: Any) -> None:
        self.cv2, self.writer, self.written, self.blank = cv2, writer, 0, None

    def put(self, frame: Any, index: int) -> None:
        """`frame` as output frame `index` (0-based), black frames in the slots before it."""
        if self.blank is None:
            self.blank = frame * 0
        self.fill(index)
        write_frame(self.cv2, self.writer, frame)
        self.written += 1

    def fill(self, slots: int) -> None:
        """Black frames until the output holds `slots` frames (damaged frames at the end of the input)."""
        while self.blank is not None and self.written < slots:
            write_frame(self.cv2, self.writer, self.blank)
            self.written += 1


def check_written_video(cv2: Any, path: str | Path, frames: int, shown: str | Path) -> None:
    """Refuse a released video at `path` that does not hold the `frames` written to it (OpenCV's writer says
    nothing when a frame cannot be written: a full disk or a file size limit left a short, or unreadable,
    file reported as written); `shown`: the name to give. Reads the container's header only."""
    with quiet_native_output(cv2):
        capture = cv2.VideoCapture(ffmpeg_name(path), cv2.CAP_FFMPEG)
        held = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
        capture.release()
    if held < frames:
        raise UserError(f"could not write {public_names(str(shown))}: it holds {held} of the {frames} frames "
                        f"written (the disk is full, or a file size limit was reached); free some space or "
                        f"choose another --out")
