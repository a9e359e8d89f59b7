"""`deepvision detect`: a trained detector on images, folders and videos (docs/detection.md).

Per image or frame: the longer side is capped at 1,000 px (INTER_AREA), the RGB image goes through
the model (which normalises and resizes it itself), detections below `min_confidence` are dropped,
and each box is drawn (thickness 2) in a random colour per class with "<name>: <score:.2f>" 10 px
above its top, or 10 px below the top when that would be within 10 px of the image top (font scale
0.3, thickness 1). JSON results give pixel boxes in the original image's coordinates. Videos are
written back annotated; a window with `q` to quit is shown only when asked (headless by default).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepvision.data.preprocess import open_image
from deepvision.datasets.detection.readers import IMAGE_EXTENSIONS
from deepvision.engine.distributed import resolve_device
from deepvision.errors import UserError
from deepvision.fileio import PendingFile, atomic_write_text, write_image, written_whole
from deepvision.inference.video import (
    FrameSlots,
    VideoFrames,
    check_video_name,
    check_written_video,
    ffmpeg_name,
    frame_rate,
    open_video,
    quiet_native_output,
)
from deepvision.models.detection import detection_family
from deepvision.placement import refuse_output_in_input_folders, replace_only_own
from deepvision.runs.loading import LoadedRun, load_run
from deepvision.safeload import image_files, input_file, read_json

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".ts", ".mts", ".m2ts",
                    ".flv", ".3gp", ".ogv")
MAX_SIDE = 1000


def _cv2() -> Any:
    # FFmpeg's own log lines (e.g. "moov atom not found") would precede deepvision's one-line error
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    try:
        import cv2
    except ImportError:
        raise UserError("detect needs OpenCV: pip install deepvision[detection]") from None
    return cv2


@dataclass
class Detection:
    class_id: int  # from 1
    name: str
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 pixels of the original image

    def to_dict(self) -> dict[str, Any]:
        return {"class": self.name, "class_id": self.class_id, "score": round(self.score, 6),
                "box": [round(v, 2) for v in self.box]}


@dataclass
class ImageDetections:
    source: str
    width: int
    height: int
    detections: list[Detection] = field(default_factory=list)
    output: str | None = None  # the annotated file written, if any

    def to_dict(self) -> dict[str, Any]:
        d = {"image": self.source, "width": self.width, "height": self.height,
             "detections": [x.to_dict() for x in self.detections]}
        if self.output:
            d["output"] = self.output
        return d


def check_min_confidence(value: float) -> float:
    """`value` if it is a score threshold from 0 to 1; UserError otherwise (NaN included)."""
    if not 0 <= value <= 1:
        raise UserError(f"--min-confidence must be in [0, 1], got {value}")
    return value


class Detector:
    """A detector with the pre- and post-processing above; `detect` takes RGB uint8 H x W x 3 arrays."""

    def __init__(self, model: torch.nn.Module, classes: list[str], min_confidence: float = 0.5,
                 max_side: int = MAX_SIDE, seed: int = 42) -> None:
        check_min_confidence(min_confidence)
        self.model = model.eval()
        self.device = next(self.model.parameters()).device
        self.names = list(classes)
        self.min_confidence, self.max_side = min_confidence, max_side
        # one random colour per class (the reference draws np.random.uniform(0, 255) per class)
        self.colours = np.random.default_rng(seed).uniform(0, 255, (len(self.names) + 1, 3))

    @classmethod
    def from_run(cls, loaded: LoadedRun, min_confidence: float = 0.5, max_side: int = MAX_SIDE) -> Detector:
        if detection_family(loaded.cfg.model.name) is None:
            raise UserError(f"{loaded.run.path} trains '{loaded.cfg.model.name}', not a detector; "
                            f"use `deepvision predict` for classifiers")
        return cls(loaded.model, loaded.classes, min_confidence, max_side)

    def name(self, class_id: int) -> str:
        return self.names[class_id - 1] if 0 < class_id <= len(self.names) else str(class_id)

    def cap(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """Step 1: the image with its longer side at most max_side, and the scale applied."""
        h, w = image.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        if scale < 1.0:
            cv2 = _cv2()
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        return image, scale

    @torch.inference_mode()
    def detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """Detections for RGB uint8 arrays already capped, in their own pixel coordinates."""
        x = [torch.from_numpy(np.array(im, copy=not im.flags.writeable, order="C")).permute(2, 0, 1)
             .to(self.device).float().div_(255) for im in images]
        outputs = self.model(x)
        results = []
        for out in outputs:
            keep = out["scores"] >= self.min_confidence
            boxes, scores, labels = (out[k][keep].float().cpu().tolist() for k in ("boxes", "scores", "labels"))
            results.append([Detection(int(k), self.name(int(k)), float(s), tuple(b))
                            for b, s, k in zip(boxes, scores, labels)])
        return results

    def draw(self, bgr: np.ndarray, detections: list[Detection]) -> np.ndarray:
        """Step 5 on a BGR image (in place), boxes in its coordinates."""
        cv2 = _cv2()
        for d in detections:
            x1, y1, x2, y2 = (int(round(v)) for v in d.box)
            colour = tuple(float(c) for c in self.colours[d.class_id % len(self.colours)])
            cv2.rectangle(bgr, (x1, y1), (x2, y2), colour, 2)
            y = y1 - 10 if y1 - 10 > 10 else y1 + 10
            cv2.putText(bgr, f"{d.name}: {d.score:.2f}", (x1, y), cv2.FONT_HERSHEY_SIMPLEX, 0.3, colour, 1)
        return bgr


def _scaled(detections: list[Detection], scale: float) -> list[Detection]:
    if scale == 1.0:
        return detections
    return [Detection(d.class_id, d.name, d.score, tuple(v / scale for v in d.box)) for d in detections]


def expand_sources(sources: list[str | Path]) -> list[tuple[Path, str]]:
    """(path, kind) for every image ("image") and video ("video"); folders give the images and videos under
    them, at every level, sorted (as classify and predict search folders)."""
    out: list[tuple[Path, str]] = []
    for src in sources:
        p = Path(src)
        if not p.is_dir():  # a missing path, a FIFO or a device is refused before anything opens it
            input_file(p, "image or video", "; give an image or video file, or a folder of images")
        if p.is_dir():
            files = image_files(p, (*IMAGE_EXTENSIONS, *VIDEO_EXTENSIONS))
            if not files:
                raise UserError(f"{p} holds no image ({', '.join(IMAGE_EXTENSIONS)}) or video "
                                f"({', '.join(VIDEO_EXTENSIONS)}) at any level")
            out += [(f, "video" if f.suffix.lower() in VIDEO_EXTENSIONS else "image") for f in files]
        elif p.suffix.lower() in VIDEO_EXTENSIONS:
            out.append((p, "video"))
        else:
            out.append((p, "image"))
    for p, kind in out:  # before any image is read or written (open_video checks it again)
        if kind == "video":
            check_video_name(p)
    return out


def output_path(out: Path, source: Path, kind: str) -> Path:
    """Where the annotated copy of an image ("image": .jpg) or a video ("video": .mp4) is written."""
    return out / f"{source.stem}{'.mp4' if kind == 'video' else '.jpg'}"


def detect_images(detector: Detector, paths: list[Path], out: Path | None = None, batch_size: int = 4
                  ) -> Iterator[ImageDetections]:
    """Detect in image files (decoded with EXIF rotation); writes annotated copies to `out` when given."""
    cv2 = _cv2() if out is not None else None
    if out is not None:
        _check_outputs([(p, "image") for p in paths], out)
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        originals = [np.asarray(open_image(p, 3)) for p in chunk]
        capped = [detector.cap(im) for im in originals]
        found = detector.detect([im for im, _ in capped])
        for path, original, (im, scale), dets in zip(chunk, originals, capped, found):
            result = ImageDetections(str(path), original.shape[1], original.shape[0], _scaled(dets, scale))
            if out is not None:
                bgr = detector.draw(cv2.cvtColor(im, cv2.COLOR_RGB2BGR), dets)
                target = output_path(out, path, "image")
                write_image(target, bgr)
                result.output = str(target)
            yield result


@dataclass
class VideoResult:
    source: str
    frames: int
    detections: int
    seconds: float
    output: str | None
    per_frame: list[list[Detection] | None] = field(default_factory=list, repr=False)  # by the video's frame
    # numbers: None where a damaged frame was skipped
    skipped: list[int] = field(default_factory=list)  # damaged frames skipped (from 0, `VideoFrames`)
    note: str | None = None  # the line naming them

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The video's entry in detections.json: `detections` is indexed by the video's frame numbers (from
        0), null for a damaged frame skipped."""
        return {"video": self.source, "frames": self.frames, "skipped_frames": self.skipped, "output": self.output,
                "detections": [None if f is None else [d.to_dict() for d in f] for f in self.per_frame]}


def detect_video(detector: Detector, path: Path, out: Path | None = None, show: bool = False,
                 progress: Callable[[int, int], None] | None = None, max_frames: int | None = None) -> VideoResult:
    """Every frame of a video: detect, draw, write `out/<stem>.mp4`; `show` opens a window (`q` quits)."""
    cv2 = _cv2()
    cap = open_video(cv2, path)
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    fps_in = frame_rate(cap, cv2)
    writer = slots = None
    target = output_path(out, path, "video") if out is not None else None
    if out is not None:
        _check_outputs([(path, "video")], out)
    pending = PendingFile(target, ".partial.mp4") if target is not None else None
    partial = pending.tmp if pending is not None else None
    frames = count = 0
    per_frame: list[list[Detection]] = []
    start = time.perf_counter()
    reader = VideoFrames(cv2, cap, path, max_frames)
    try:
        for frame in reader:
            frame, scale = detector.cap(frame)
            dets = detector.detect([cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)])[0]
            detector.draw(frame, dets)
            per_frame += [None] * (reader.index - len(per_frame))  # damaged frames skipped before this one
            per_frame.append(_scaled(dets, scale))
            count += len(dets)
            frames += 1
            if target is not None:
                if writer is None:
                    if min(frame.shape[:2]) < 2:  # the mp4v encoder refuses a side of 1 pixel
                        raise UserError(f"{path}: its frames are {frame.shape[1]}x{frame.shape[0]} pixels, too small "
                                        f"to write as an annotated video (2x2 at least); leave out --out to detect "
                                        f"without writing one")
                    with quiet_native_output(cv2):  # the encoder's own complaints: ours is the one line
                        writer = cv2.VideoWriter(ffmpeg_name(partial), cv2.VideoWriter_fourcc(*"mp4v"), fps_in,
                                                 (frame.shape[1], frame.shape[0]))
                    if not writer.isOpened():
                        raise UserError(f"could not open {target} for writing")
                    slots = FrameSlots(cv2, writer)
                slots.put(frame, reader.index)
            if show:
                try:
                    cv2.imshow("deepvision detect", frame)
                    key = cv2.waitKey(1) & 0xFF
                except cv2.error:
                    raise UserError("--show needs OpenCV with GUI support (pip install opencv-python); "
                                    "leave it out to run headless") from None
                if key == ord("q"):
                    break
            if progress is not None:
                progress(frames, total)
        per_frame += [None] * (reader.slots - len(per_frame))  # damaged frames at the end
        if frames == 0 and max_frames != 0:
            raise UserError(f"{path}: no frame could be decoded (a damaged video, or a codec this OpenCV lacks); "
                            f"nothing was written")
        if writer is not None:
            slots.fill(len(per_frame))
            writer.release()
            writer = None
            check_written_video(cv2, partial, slots.written, target)
            pending.commit()  # a stopped or failed run never leaves half a video under the final name
            pending = None
    finally:
        cap.release()
        if writer is not None:
            writer.release()
        if pending is not None:
            pending.discard()
        if show:
            import contextlib

            with contextlib.suppress(Exception):
                cv2.destroyAllWindows()
    return VideoResult(str(path), frames, count, time.perf_counter() - start, str(target) if target else None,
                       per_frame, reader.skipped, reader.note)


def _check_outputs(items: list[tuple[Path, str]], out_dir: Path) -> None:
    """Refuse, before anything is written, outputs that would overwrite an input or each other."""
    inputs = {p.resolve(): p for p, _ in items}
    written: dict[Path, Path] = {}
    for path, kind in items:
        target = output_path(out_dir, path, kind).resolve()
        if target in inputs:
            raise UserError(f"--out {out_dir} would overwrite the input {inputs[target]} with its annotated copy; "
                            "choose another folder")
        if target in written:
            raise UserError(f"{written[target]} and {path} would both be written to {target}; "
                            "detect them into separate --out folders")
        written[target] = path


def _earlier_outputs(out_dir: Path) -> list[str]:
    """The names of the annotated files an earlier detect's detections.json in `out_dir` lists."""
    try:
        doc = read_json(out_dir / "detections.json", "an earlier detect's detections.json")
    except (FileNotFoundError, UserError):
        return []
    lists = [doc.get(key) for key in ("images", "videos")] if isinstance(doc, dict) else []
    entries = [e for entries in lists if isinstance(entries, list) for e in entries]
    return [Path(e["output"]).name for e in entries if isinstance(e, dict) and isinstance(e.get("output"), str)]


def run_detect(run_dir: str | Path, sources: list[str | Path], *, min_confidence: float = 0.5,
               out: str | Path | None = None, show: bool = False, epoch: int | None = None, which: str = "best",
               device: str = "auto", batch_size: int | None = None,
               on_video_frame: Callable[[int, int], None] | None = None
               ) -> tuple[list[ImageDetections], list[VideoResult]]:
    """Detect in every source; with `out`, annotated images/videos and detections.json are written there.
    `show` applies to videos and `batch_size` (default 4) to images: given where they would be ignored, refused."""
    check_min_confidence(min_confidence)  # the arguments are refused before the model loads
    items = expand_sources(sources)
    kinds = {kind for _, kind in items}
    if show and "video" not in kinds:
        raise UserError("--show applies to videos, and no video was given; leave --show out")
    if batch_size is not None and "image" not in kinds:
        raise UserError("--batch-size applies to images (a video is read frame by frame), and only videos were "
                        "given; leave --batch-size out")
    batch_size = 4 if batch_size is None else batch_size
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        refuse_output_in_input_folders(out_dir, sources)  # the annotated copies would be read back next time
        _check_outputs(items, out_dir)
        replace_only_own(out_dir, [output_path(out_dir, p, kind) for p, kind in items], _earlier_outputs(out_dir),
                         "detections.json", '{"run":', "detect")
    detector = Detector.from_run(load_run(run_dir, epoch, which, resolve_device(device)), min_confidence)
    with contextlib.ExitStack() as stack:
        # the drawings land with detections.json, all at the end: a stop or a failure leaves --out as it was
        tmp = stack.enter_context(written_whole(out_dir, last="detections.json")) if out_dir is not None else None
        images = [p for p, kind in items if kind == "image"]
        image_results = list(detect_images(detector, images, tmp, batch_size)) if images else []
        videos = [detect_video(detector, p, tmp, show, on_video_frame) for p, kind in items if kind == "video"]
        if out_dir is not None:
            for r in [*image_results, *videos]:  # named where they land
                r.output = str(out_dir / Path(r.output).name) if r.output else r.output
            doc = {"run": str(Path(run_dir)), "min_confidence": min_confidence,
                   "images": [r.to_dict() for r in image_results],
                   "videos": [v.to_dict() for v in videos]}
            atomic_write_text(tmp / "detections.json", json.dumps(doc, indent=1) + "\n")
    return image_results, videos
