"""Real-time emotion recognition from a camera or a video (docs/faces.md).

Per frame: resize to width 300, face detection (a `FaceTracker`: MTCNN searches every 8th frame and
re-checks the faces in between, the Haar cascade searches a large face at half size first: see
`EmotionRecognizer`), the largest face by area w * h, its ROI resized to the model input
(48 x 48 for EmotionVGGNet), class probabilities; the probability canvas and the red box + label
overlay of the reference app. Windows "Face" and "Probabilities" (`q` quits), or headless: annotated
frames as PNG files in a folder, or one video (frame and canvas side by side), plus per-frame results
as CSV and JSON.

Still images have their own mode (`run_emotion_images`, `deepvision emotion RUN --image PATH`): every
face of each photo, not only the largest, detected at up to 800 pixels wide.

The face detector is MTCNN when facenet-pytorch is installed, else the reference's Haar cascade (scale
1.1, 5 neighbours, 30 x 30): on a real clip MTCNN found 92% of the faces against the cascade's 31%
(turned faces, faces in a crowd); searching every 8th frame, 38 frames/s of one CPU core end to end
there against 13 searching every frame (docs/faces.md).

Why one module of ~590 lines: the live loop, the still-image mode and their outputs share the
recognizer, the detector choice and the drawing; the classifier loading lives in apps/classifier.py.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepvision.apps.classifier import Classifier, load_classifier
from deepvision.data.imageio import read_bgr
from deepvision.errors import UserError, chained_stop
from deepvision.fileio import (
    PendingFile,
    atomic_write_text,
    output_folder,
    output_subfolder,
    write_image,
    written_whole,
)
from deepvision.inference.faces.detect import FaceDetector, create_detector, cv2_module, largest_face, to_gray
from deepvision.inference.faces.draw import draw_face, probability_canvas, resize_to_width, side_by_side
from deepvision.inference.faces.track import DETECT_EVERY, FaceTracker
from deepvision.inference.video import (
    FrameSlots,
    VideoFrames,
    check_video_name,
    check_written_video,
    ffmpeg_name,
    frame_rate,
    open_video,
)
from deepvision.models.memory_format import to_channels_last
from deepvision.placement import (
    begins_with,
    distinct_stems,
    listed_in,
    refuse_output_folder_over_inputs,
    refuse_output_in_input_folders,
    refuse_output_over_inputs,
    replace_only_own,
    require_own_folder,
)
from deepvision.safeload import (
    check_image_side,
    check_range,
    input_file,
    printable,
    shown_value,
    spreadsheet_cell,
    spreadsheet_row,
)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")
PREFERRED_DETECTOR = "mtcnn"  # measured on real faces: benchmarks/face_detectors.py, docs/faces.md
FALLBACK_DETECTOR = "haar"  # the reference's; needs only OpenCV
MAX_FAILED_READS = 50  # consecutive failed camera reads before giving up


@dataclass
class FrameResult:
    frame: int
    box: tuple[int, int, int, int] | None  # in the width-300 frame
    faces: int
    label: str | None
    probs: list[float] | None
    seconds: float  # processing time of this frame (resize, detect, classify, draw)
    searched: bool = True  # False: the previous frame's faces were carried and re-checked

    def to_dict(self, classes: list[str]) -> dict[str, Any]:
        return {"frame": self.frame, "faces": self.faces, "searched": self.searched,
                "box": list(self.box) if self.box else None,
                "label": self.label, "probabilities": dict(zip(classes, self.probs)) if self.probs else None,
                "ms": round(self.seconds * 1000, 3)}


@dataclass
class EmotionSummary:
    frames: int
    no_face: int
    seconds: float  # processing only (excludes decoding and writing)
    wall_seconds: float
    results: list[FrameResult] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    skipped: list[int] = field(default_factory=list)  # damaged frames of a video file skipped (from 0)
    note: str | None = None  # the line naming them

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")

    @property
    def wall_fps(self) -> float:
        return self.frames / self.wall_seconds if self.wall_seconds > 0 else float("nan")


def default_detector() -> str:
    """The detector used when none is named: MTCNN when facenet-pytorch is importable, else Haar."""
    from deepvision.inference.faces.detect import available_detectors

    return PREFERRED_DETECTOR if PREFERRED_DETECTOR in available_detectors() else FALLBACK_DETECTOR


def detector_note(name: str | None) -> str | None:
    """A line for the console when the default fell back to Haar (None otherwise)."""
    if name is None and default_detector() == FALLBACK_DETECTOR:
        return "face detector: haar (for MTCNN: pip install --no-deps facenet-pytorch)"
    return None


class EmotionRecognizer:
    """The per-frame pipeline above around a classifier and a face detector.

    Faces come from a `FaceTracker` (deepvision.inference.faces.track): with the Haar cascade and
    `fast_detection`, a frame after one with a face of at least COARSE_FROM pixels is searched at half
    size first (about a third of the time; the box is the full-size box to within about one step of
    the cascade's scale pyramid and a few pixels); with MTCNN and `fast_detection`, a frame after one
    with a face of at least FAST_FROM pixels is searched first for faces of at least 0.7 of that size;
    either first search falls back to the full one when it finds nothing. With MTCNN only every
    `detect_every`-th frame is searched: in between the previous frame's faces are re-checked by its
    last stage (O-Net), which moves the boxes and drops faces that left; a frame where none is left is
    searched at once. docs/faces.md has the measured speed and agreement. With `channels_last` the
    classifier's model is put into that memory format (in place): the same probabilities to float
    rounding, faster on the CPU (`benchmarks/emotion_fps.py`, BENCHMARKS.md).
    """

    def __init__(self, classifier: Classifier, detector: FaceDetector | None = None, width: int = 300,
                 fast_detection: bool = True, channels_last: bool = True, detect_every: int = DETECT_EVERY) -> None:
        self.classifier = classifier
        self.detector = detector or create_detector(default_detector())
        self.tracker = FaceTracker(self.detector, detect_every, fast_detection)
        self.width = width
        self.classes = classifier.classes
        self.fast_detection = fast_detection
        self.detect_every = self.tracker.detect_every
        if channels_last:
            to_channels_last(classifier.model, classifier.device)

    def reset(self) -> None:
        """Forget the previous frames (a new video): the next frame is searched in full."""
        self.tracker.reset()

    def process(self, frame: np.ndarray, index: int = 0) -> tuple[np.ndarray, np.ndarray, FrameResult]:
        """(annotated frame at width 300, probability canvas, result) for one BGR or grayscale frame."""
        start = time.perf_counter()
        small, _ = resize_to_width(frame, self.width)
        gray = to_gray(small)
        faces = self.tracker(small, gray)
        face = largest_face(faces)
        if small.ndim == 2:
            clone = cv2_module().cvtColor(small, cv2_module().COLOR_GRAY2BGR)
        else:  # the resized frame is already a copy; the caller's frame is never drawn on
            clone = small.copy() if small is frame else small
        probs = label = None
        if face is not None:
            x, y, w, h = face.box
            roi = (gray if self.classifier.pre.channels == 1 else small)[y : y + h, x : x + w]
            probs = self.classifier.probabilities(self.classifier.prepare(roi))[0]
            label = self.classes[int(probs.argmax())]
            draw_face(clone, face.box, label)
            canvas = probability_canvas(self.classes, probs, self.width)
        else:
            canvas = probability_canvas(self.classes, np.zeros(len(self.classes)), self.width)
        result = FrameResult(index, face.box if face else None, len(faces), label,
                             [float(p) for p in probs] if probs is not None else None, time.perf_counter() - start,
                             self.tracker.searched)
        return clone, canvas, result


MAX_THREADS = 1024  # as logreg --jobs and mean --num-thread: more only exhausts the machine


MAX_CAMERA = 9_999  # OpenCV reads index + API preference as one C int (CAP_V4L2 is 200)


def check_camera(camera: object) -> int:
    """`camera` if it is a camera index, a whole number 0 or more; UserError otherwise (OpenCV crashes on a
    negative index in some builds instead of failing to open it, and refuses one beyond a C int)."""
    if isinstance(camera, bool) or not isinstance(camera, int) or not 0 <= camera <= MAX_CAMERA:
        raise UserError(f"--camera must be a whole number from 0 to {MAX_CAMERA:,}, got {shown_value(camera)}")
    return camera


def open_capture(video: str | Path | None = None, camera: int = 0) -> Any:
    """An opened cv2.VideoCapture for a video file or a camera index; UserError when it cannot be opened."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "0")  # FFmpeg's own messages ("moov atom not found"): off
    cv2 = cv2_module()
    if video is not None:
        path = input_file(video, "video")  # a FIFO or a folder is named, never opened
        return open_video(cv2, path)
    check_camera(camera)
    with _quiet_opencv(cv2):  # OpenCV logs its own warnings for a missing camera; ours is the one line
        cap = cv2.VideoCapture(camera)
    if not cap.isOpened():
        raise UserError(f"camera {camera} cannot be opened (no such device, or it is busy); "
                        f"try --camera with another index, or --video FILE")
    return cap


@contextlib.contextmanager
def _quiet_opencv(cv2: Any) -> Iterator[None]:
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    if log is None:
        yield
        return
    level = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        log.setLogLevel(level)


def frames_from(cap: Any, is_camera: bool, max_frames: int | None = None,
                source: str | Path = "the video") -> Iterable[np.ndarray]:
    """Frames until the end of the stream. A video file is read by the rule of `VideoFrames` (damaged frames
    skipped and counted, its `note`); failed camera reads are skipped, up to MAX_FAILED_READS in a row."""
    if not is_camera:
        return VideoFrames(cv2_module(), cap, source, max_frames)
    return _camera_frames(cap, max_frames)


def _camera_frames(cap: Any, max_frames: int | None) -> Iterator[np.ndarray]:
    failed = given = 0
    while max_frames is None or given < max_frames:
        ok, frame = cap.read()
        if not ok or frame is None:
            failed += 1
            if failed >= MAX_FAILED_READS:
                raise UserError(f"the camera returned no frame {MAX_FAILED_READS} times in a row; stopping")
            continue
        failed = 0
        given += 1
        yield frame


class _Sink:
    """Where annotated frames go: windows, a folder of PNG files, or a video file (temp file, renamed at the end)."""

    def __init__(self, out: Path | None, headless: bool, fps: float) -> None:
        self.cv2 = cv2_module()
        self.out, self.headless, self.fps = out, headless, fps
        self.writer = None
        self.slots: FrameSlots | None = None  # frames in the input's slots: the finished video must hold them all
        self.pending: PendingFile | None = None
        self.is_video = out is not None and out.suffix.lower() in VIDEO_SUFFIXES
        if out is not None and not self.is_video:
            for sub in ("face", "probabilities"):  # a link planted there is refused, never followed
                output_subfolder(out, sub)
        elif self.is_video:
            out.parent.mkdir(parents=True, exist_ok=True)
            self.pending = PendingFile(out, suffix=f".partial{out.suffix}")  # the suffix picks the container
        if not headless:
            try:
                self.cv2.namedWindow("Face")
                self.cv2.namedWindow("Probabilities")
            except self.cv2.error:
                raise UserError("this OpenCV build cannot open windows (opencv-python-headless); run with "
                                "--headless --out DIR|video.mp4, or install opencv-python") from None

    def put(self, index: int, frame: np.ndarray, canvas: np.ndarray) -> bool:
        """Show or write one frame; False when the user pressed q."""
        cv2 = self.cv2
        if self.is_video:
            composite = side_by_side(frame, canvas)
            h, w = composite.shape[:2]
            if h % 2 or w % 2:  # most codecs (mp4v, H.264) need even sizes
                composite = np.pad(composite, ((0, h % 2), (0, w % 2), (0, 0)))
            if self.writer is None:
                h, w = composite.shape[:2]
                self.writer = cv2.VideoWriter(ffmpeg_name(self.pending.tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps,
                                              (w, h))
                if not self.writer.isOpened():
                    raise UserError(f"cannot write the video {self.out} (no encoder for {self.out.suffix})")
                self.slots = FrameSlots(cv2, self.writer)
            self.slots.put(composite, index)
        elif self.out is not None:
            for sub, image in (("face", frame), ("probabilities", canvas)):
                write_image(self.out / sub / f"{index:06d}.png", image)  # atomic: a planted link is replaced
        if not self.headless:
            cv2.imshow("Face", frame)
            cv2.imshow("Probabilities", canvas)
            return (cv2.waitKey(1) & 0xFF) != ord("q")
        return True

    def close(self, ok: bool, slots: int = 0) -> None:
        """Release the writer and check the video it wrote; it lands with its report (`commit`). `slots`: the
        input frames read, damaged ones at the end included (black in the video, as those before)."""
        if self.writer is not None:
            if ok:
                self.slots.fill(slots)
            self.writer.release()
        if self.pending is not None:
            if ok and self.writer is not None:
                try:
                    check_written_video(self.cv2, self.pending.tmp, self.slots.written, self.out)
                except UserError:
                    self.discard()
                    raise
            else:
                self.discard()
        if not self.headless:
            self.cv2.destroyAllWindows()

    def commit(self) -> None:
        if self.pending is not None:
            self.pending.commit()
            self.pending = None

    def discard(self) -> None:
        if self.pending is not None:
            self.pending.discard()
            self.pending = None


VIDEO_HEADER = "frame,faces,x,y,w,h,label"  # how the results table of a video begins


def _require_own_video(out: Path) -> None:
    """Refuse, before any work, a video file output that would replace a file no earlier run wrote, or the
    report of another video: the video and STEM.csv and STEM.json, written with it, must be new or that
    run's, whose STEM.json lists this very video among its outputs. Videos of one stem share the names of
    their reports: e.avi's report is not e.mp4's to replace (nor is a user's recording or spreadsheet)."""
    table, report = out.with_suffix(".csv"), out.with_suffix(".json")
    companions = {table: VIDEO_HEADER, report: '{"model":'}
    for path, start in companions.items():
        if os.path.lexists(path) and not (path.is_file() and begins_with(path, start)):
            raise UserError(f"--out {out} would also write {path}, which already exists and is not from an earlier "
                            f"run; choose another name")
    listed = listed_in(report, "outputs")
    if os.path.lexists(out) and not (out.is_file() and out.name in listed):
        raise UserError(f"--out {out} already exists and is not a video an earlier emotion run wrote (no "
                        f"{report.name} of that run beside it lists it); choose a new file name")
    held = [p.name for p in companions if os.path.lexists(p)]
    if held and out.name not in listed:
        whose = (f"written with {printable(listed[0])} by an earlier emotion run" if listed else
                 f"of an earlier emotion run that does not name {out.name} as its video")
        raise UserError(f"--out {out} would replace {' and '.join(held)}, the report {whose}; choose another name, "
                        f"or move {'them' if len(held) > 1 else 'it'}")


def results_csv(results: list[FrameResult], classes: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(spreadsheet_row(["frame", "faces", "x", "y", "w", "h", "label", *classes, "ms"]))
    for r in results:
        box = list(r.box) if r.box else [""] * 4
        probs = [f"{p:.6f}" for p in r.probs] if r.probs else [""] * len(classes)
        w.writerow([r.frame, r.faces, *box, spreadsheet_cell(r.label or ""), *probs, f"{r.seconds * 1000:.3f}"])
    return buf.getvalue()


def _check_width(width: int) -> None:
    """The detection width: a face needs some pixels, and the resized frame must fit in memory."""
    if width < 32:
        raise UserError(f"--width must be at least 32, got {width}")
    check_image_side("--width", width)


def run_emotion(
    model: str | Path | Classifier,
    *,
    video: str | Path | None = None,
    camera: int = 0,
    headless: bool = False,
    out: str | Path | None = None,
    detector: str | None = None,
    keras_model: str | None = None,
    width: int = 300,
    max_frames: int | None = None,
    device: str = "cpu",
    threads: int | None = None,
    on_frame: Callable[[FrameResult], None] | None = None,
    fast_detection: bool = True,
    detect_every: int = DETECT_EVERY,
) -> EmotionSummary:
    """Run the emotion loop; returns the per-frame results and the speed. See the module doc for outputs.
    `detector`: haar, dlib or mtcnn; None: `default_detector()`.

    `threads` sets PyTorch's CPU threads (process-wide); one frame's work is tiny, so 1 is fastest on
    a busy CPU (idle threads spin while waiting for each other). `fast_detection=False` searches every
    frame at full size; `detect_every`: search every k-th frame, the faces in between carried and
    re-checked (MTCNN; 1: every frame; see `EmotionRecognizer`).
    """
    if headless and out is None:
        raise UserError("--headless needs --out DIR (annotated frames) or --out FILE.mp4 (a video)")
    if max_frames is not None and max_frames <= 0:
        raise UserError(f"--max-frames must be positive, got {max_frames}")
    if threads is not None:
        check_range("--threads", threads, 1, MAX_THREADS)
    if video is None:
        check_camera(camera)
    else:
        check_video_name(video)  # before the model loads (open_capture checks it again)
    _check_width(width)
    if video is not None and out is not None:
        refuse_output_over_inputs(out, [video])
    if detect_every < 1:
        raise UserError(f"--detect-every must be at least 1, got {detect_every}")
    import torch

    previous_threads = torch.get_num_threads()  # restored at the end: the caller's process keeps its setting
    out_path = Path(out) if out is not None else None
    if out_path is not None and out_path.suffix and out_path.suffix.lower() not in VIDEO_SUFFIXES:
        raise UserError(f"--out {out_path}: give a folder or a video file ({', '.join(VIDEO_SUFFIXES)})")
    if out_path is not None and not out_path.suffix:
        require_own_folder(out_path, "results.csv", VIDEO_HEADER, "emotion")
    if out_path is not None and out_path.suffix:
        _require_own_video(out_path)
    # a Keras file is mapped onto the emotion architecture it fits (FER class names and input transform)
    clf = model if isinstance(model, Classifier) else load_classifier(model, keras_model=keras_model or "auto",
                                                                       device=device)
    detector = detector or default_detector()
    recognizer = EmotionRecognizer(clf, create_detector(detector), width, fast_detection,
                                   detect_every=detect_every)
    cap = open_capture(video, camera)
    fps_in = frame_rate(cap, cv2_module())
    frames = frames_from(cap, video is None, max_frames, video if video is not None else "the video")
    stream = iter(frames)
    first = next(stream, None)  # before any output exists: a video without a frame writes nothing
    if first is None:
        cap.release()
        raise UserError(f"{video}: no frame could be decoded (a damaged video, or a codec this OpenCV lacks); "
                        f"nothing was written")
    with contextlib.ExitStack() as made:
        if out_path is not None:  # a refusal from here on leaves no empty folder it made
            made.enter_context(output_folder(out_path.parent if out_path.suffix else out_path))
        sink = _Sink(out_path, headless or out_path is not None, fps_in)
        results: list[FrameResult] = []
        started, ok = time.perf_counter(), False
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            for n, frame in enumerate(itertools.chain([first], stream)):
                i = frames.index if isinstance(frames, VideoFrames) else n  # the video's own frame numbers
                annotated, canvas, result = recognizer.process(frame, i)
                more = sink.put(i, annotated, canvas)  # written before it counts: a stop keeps both in step
                results.append(result)
                if on_frame:
                    on_frame(result)
                if not more:
                    break
            ok = True
        except BaseException as exc:  # Ctrl+C or SIGTERM (`timeout 60 deepvision emotion ...` records a minute)
            if chained_stop(exc) is None:  # a stop, even one a library raised as its own error
                raise
            ok = True  # keep what was processed
        finally:
            cap.release()
            sink.close(ok, frames.slots if isinstance(frames, VideoFrames) else 0)
            torch.set_num_threads(previous_threads)
        summary = EmotionSummary(len(results), sum(r.box is None for r in results), sum(r.seconds for r in results),
                                 time.perf_counter() - started, results,
                                 skipped=list(getattr(frames, "skipped", [])), note=getattr(frames, "note", None))
        if out_path is not None:
            base = out_path.with_suffix("") if sink.is_video else out_path / "results"
            summary.files = {"csv": f"{base}.csv", "json": f"{base}.json"}
            if sink.is_video:
                summary.files["video"] = str(out_path)
            made.callback(sink.discard)  # a report that cannot be written (a full disk) takes the video with it
            atomic_write_text(summary.files["csv"], results_csv(results, clf.classes))
            payload = {"model": clf.source, "input": str(video) if video is not None else f"camera {camera}",
                       "classes": clf.classes, "detector": detector, "width": width,
                       "fast_detection": fast_detection, "detect_every": detect_every, "frames": summary.frames,
                       "skipped_frames": summary.skipped,
                       "no_face": summary.no_face,
                       "fps": summary.fps,
                       "results": [r.to_dict(clf.classes) for r in results]}
            if sink.is_video:  # what the next run to this --out may replace (_require_own_video)
                payload["outputs"] = [Path(summary.files[k]).name for k in ("video", "csv", "json")]
            atomic_write_text(summary.files["json"], json.dumps(payload, indent=1) + "\n")
        sink.commit()  # the video last: a report without its video is refused by no later run
        return summary


@dataclass
class FaceEmotion:
    """One face of a still image: its box in the image's own pixels and the class probabilities."""

    image: str
    face: int
    box: tuple[int, int, int, int]
    label: str
    probabilities: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "face": self.face, "box": list(self.box), "label": self.label,
                "probabilities": self.probabilities}


@dataclass
class ImagesSummary:
    faces: list[FaceEmotion] = field(default_factory=list)
    no_face: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)


def run_emotion_images(model: str | Path | Classifier, image: str | Path, *, out: str | Path | None = None,
                       detector: str | None = None, keras_model: str | None = None, width: int = 800,
                       device: str = "cpu") -> ImagesSummary:
    """Still images (a file, or every image of a folder, sorted): every face found, not only the largest,
    with its emotion. `out`: a folder for the annotated images (`<name>.png`, each face boxed and
    labelled) and `results.csv`/`results.json`. Detection runs on the image resized to `width` (never
    enlarged); boxes are reported in the image's own pixels."""
    from deepvision.apps.agegender.app import list_images

    _check_width(width)
    paths = list_images(image)
    out_path = Path(out) if out is not None else None
    names = distinct_stems(paths)
    if out_path is not None:  # refused before the model loads
        if out_path.suffix.lower() in VIDEO_SUFFIXES:
            raise UserError(f"--out {out_path}: with --image give a folder for the annotated images")
        refuse_output_in_input_folders(out_path, [image])  # the annotated copies would be read back next time
        targets = [out_path / f"{n}.png" for n in names]
        refuse_output_folder_over_inputs(out_path, paths, targets)
        replace_only_own(out_path, targets, listed_in(out_path / "results.json", "outputs"),
                         "results.csv", "image,face,x,y,w,h,label", "emotion --image", list_marker="results.json")
    # a Keras file is mapped onto the emotion architecture it fits (FER class names and input transform)
    clf = model if isinstance(model, Classifier) else load_classifier(model, keras_model=keras_model or "auto",
                                                                       device=device)
    detector = detector or default_detector()
    det = create_detector(detector)
    # everything lands together at the end: a refusal (an unreadable image, a model answering NaN), a full
    # disk or a stop leaves --out as it was
    with written_whole(out_path, last="results.json") if out_path is not None else contextlib.nullcontext() as tmp:
        summary = ImagesSummary()
        for path, name in zip(paths, names):
            frame = read_bgr(path)
            small, factor = resize_to_width(frame, min(width, frame.shape[1]))
            gray = to_gray(small)
            faces = sorted(det.detect(gray if det.name == "haar" else small), key=lambda f: (f.box[0], f.box[1]))
            shown = small.copy()
            if not faces:
                summary.no_face.append(str(path))
            for k, face in enumerate(faces):
                x, y, w, h = face.box
                roi = (gray if clf.pre.channels == 1 else small)[y : y + h, x : x + w]
                probs = clf.probabilities(clf.prepare(roi))[0]
                label = clf.classes[int(probs.argmax())]
                draw_face(shown, face.box, label)
                box = tuple(int(round(v / factor)) for v in face.box)
                summary.faces.append(FaceEmotion(str(path), k, box, label,  # type: ignore[arg-type]
                                                 {c: float(p) for c, p in zip(clf.classes, probs)}))
            if tmp is not None:
                write_image(tmp / f"{name}.png", shown)
        if out_path is not None:
            summary.files = {"csv": str(out_path / "results.csv"), "json": str(out_path / "results.json")}
            atomic_write_text(tmp / "results.csv", _faces_csv(summary.faces, clf.classes))
            payload = {"model": clf.source, "classes": clf.classes, "detector": detector, "width": width,
                       "images": len(paths), "no_face": summary.no_face, "faces": [f.to_dict() for f in summary.faces],
                       "outputs": [f"{n}.png" for n in names]}
            atomic_write_text(tmp / "results.json", json.dumps(payload, indent=1) + "\n")
        return summary


def _faces_csv(faces: list[FaceEmotion], classes: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(spreadsheet_row(["image", "face", "x", "y", "w", "h", "label", *classes]))
    for f in faces:
        w.writerow([spreadsheet_cell(f.image), f.face, *f.box, spreadsheet_cell(f.label),
                    *(f"{f.probabilities[c]:.6f}" for c in classes)])
    return buf.getvalue()
