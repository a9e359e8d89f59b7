"""Face detectors on a real video clip: which one should the emotion app use by default?

Each detector (`deepvision.inference.faces.create_detector`: haar, dlib, mtcnn) sees every frame the way
`deepvision emotion` gives it one: resized to `--width` (the app's 300), grayscale for Haar, BGR for the
others. Per detector the table gives

- found: frames with at least one face box (the app classifies nothing in the others);
- recall: reference faces found (IoU >= 0.3) on the labelled frames;
- false: boxes on the labelled frames that match no reference face;
- pick ok: labelled frames with a reference face where the box the app classifies (the largest) is a
  real face;
- CPU ms/frame of the detector alone (decoding and resizing excluded; process time, so a busy
  machine does not inflate it), the frames/s that makes on one free core, and the median wall time.

`--tracked mtcnn` (the default when MTCNN is installed) adds a row "mtcnn, tracked": the detector as the
emotion app runs it by default (`deepvision.inference.faces.FaceTracker`: a search every
`--detect-every`-th frame, 8, the faces carried and re-checked by O-Net in between, a first search for
faces 0.7 of the previous size), scored the same way on every frame, carried or searched; the rows of the
plain detectors search every frame in full (the app's `--detect-every 1 --full-size-detection`).

PyTorch runs on `--threads` threads (default 1, the app's default: one small frame at a time gains
nothing from more, and on a busy machine extra threads stall each other).

The reference: `--reference FILE.json` (`{"width": 300, "frames": {"0": [[x, y, w, h], ...], ...}}`, boxes
in the resized frame), hand-checked; without it, the consensus of the detectors on every `--label-every`-th
frame (a box two or more detectors agree on, IoU >= 0.3). `--candidates FILE.json` writes every detector's
boxes on those frames grouped into clusters, and `--crops DIR` a contact sheet per frame batch (one tile
per cluster, named `f<frame>c<cluster>` with the detectors that found it) to check by eye before writing a
reference.

    python benchmarks/face_detectors.py CLIP.mp4 [--width 300] [--detectors haar,dlib,mtcnn]
        [--tracked mtcnn] [--detect-every 8] [--reference FACES.json] [--label-every 7]
        [--candidates FILE.json] [--crops DIR]

The table replaces this script's section of BENCHMARKS.md (`--no-append` only prints it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from deepvision.inference.faces.detect import (  # noqa: E402
    available_detectors,
    create_detector,
    cv2_module,
    largest_face,
    to_gray,
)
from deepvision.inference.faces.draw import resize_to_width  # noqa: E402
from deepvision.inference.faces.track import DETECT_EVERY, FaceTracker  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, write_section  # noqa: E402

TITLE = "Face detectors on a real clip (the emotion app's default)"

Box = tuple[int, int, int, int]
IOU_MATCH = 0.3


def iou(a: Box, b: Box) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def read_frames(path: str, width: int) -> list[np.ndarray]:
    cv2 = cv2_module()
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise SystemExit(f"cannot open {path}")
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(resize_to_width(frame, width)[0])
    cap.release()
    if not frames:
        raise SystemExit(f"{path}: no frames decoded")
    return frames


def run_detector(name: str, frames: list[np.ndarray], detect_every: int | None = None,
                 searched: list[str] | None = None) -> tuple[list[list[Box]], list[float], list[float]]:
    """Boxes per frame, largest first, and CPU and wall seconds per frame. With `detect_every`, the
    detector runs in a FaceTracker as the emotion app runs it; `searched` gets per frame "fast" (the
    fast first search gave the faces), "full" (searched in full) or "" (the faces carried)."""
    det = create_detector(name)
    det.detect(frames[0] if name != "haar" else to_gray(frames[0]))  # warm-up (lazy model loading)
    tracker = FaceTracker(det, detect_every) if detect_every else None
    if tracker is not None and hasattr(det, "refine"):
        det.refine(frames[0], det.detect(frames[0]))
    boxes, cpu, wall = [], [], []
    for frame in frames:
        image = to_gray(frame) if name == "haar" else frame  # what EmotionRecognizer.process passes
        start, start_cpu = time.perf_counter(), time.process_time()
        faces = det.detect(image) if tracker is None else tracker(frame, to_gray(frame) if name == "haar" else None)
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start)
        if tracker is not None and searched is not None:
            searched.append("fast" if tracker.fast else "full" if tracker.searched else "")
        first = largest_face(faces)
        ordered = ([first] if first else []) + [f for f in faces if f is not first]
        boxes.append([tuple(int(v) for v in f.box) for f in ordered])
    return boxes, cpu, wall


def clusters(found: dict[str, list[Box]]) -> list[dict]:
    """Group the detectors' boxes of one frame: a box joins the first cluster whose seed it overlaps."""
    groups: list[dict] = []
    for name, boxes in found.items():
        for box in boxes:
            for g in groups:
                if iou(g["box"], box) >= IOU_MATCH and name not in g["by"]:
                    g["by"][name] = list(box)
                    break
            else:
                groups.append({"box": box, "by": {name: list(box)}})
    for g in groups:
        g["box"] = [int(round(float(np.mean([b[i] for b in g["by"].values()])))) for i in range(4)]
    return groups


def score(boxes: list[list[Box]], reference: dict[int, list[Box]]) -> dict[str, float]:
    matched = total = false = pick_ok = with_face = 0
    for index, truth in reference.items():
        found = boxes[index]
        total += len(truth)
        matched += sum(any(iou(t, b) >= IOU_MATCH for b in found) for t in truth)
        false += sum(not any(iou(t, b) >= IOU_MATCH for t in truth) for b in found)
        if truth:
            with_face += 1
            pick_ok += bool(found) and any(iou(t, found[0]) >= IOU_MATCH for t in truth)
    return {"recall": matched / total if total else float("nan"), "false": false,
            "pick_ok": pick_ok / with_face if with_face else float("nan"), "with_face": with_face}


def contact_sheets(frames: list[np.ndarray], candidates: dict[int, list[dict]], folder: Path,
                   letters: dict[str, str]) -> list[Path]:
    """Tiles of 96 x 96 (each cluster's box with a margin), 8 a row, 48 a sheet."""
    cv2 = cv2_module()
    folder.mkdir(parents=True, exist_ok=True)
    tiles = []
    for index, groups in candidates.items():
        frame = frames[index]
        h, w = frame.shape[:2]
        for c, g in enumerate(groups):
            x, y, bw, bh = g["box"]
            m = max(bw, bh) // 4
            crop = frame[max(0, y - m) : min(h, y + bh + m), max(0, x - m) : min(w, x + bw + m)]
            tile = cv2.resize(crop, (96, 96), interpolation=cv2.INTER_CUBIC)
            tile = cv2.copyMakeBorder(tile, 0, 14, 0, 0, cv2.BORDER_CONSTANT, value=(255, 255, 255))
            label = f"f{index}c{c} " + "".join(letters[n] for n in g["by"])
            cv2.putText(tile, label, (2, 107), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 1, cv2.LINE_AA)
            tiles.append(tile)
    written = []
    for s in range(0, len(tiles), 48):
        chunk = tiles[s : s + 48]
        chunk += [np.full_like(chunk[0], 255)] * (-len(chunk) % 8)
        sheet = np.vstack([np.hstack(chunk[r : r + 8]) for r in range(0, len(chunk), 8)])
        path = folder / f"sheet{s // 48:02d}.png"
        cv2.imwrite(str(path), sheet)
        written.append(path)
    return written


def section(rows: dict[str, dict], clip: str, frames: int, width: int, labelled: int, faces: int, how: str,
            machine: str) -> str:
    """The BENCHMARKS.md section from each detector's `found`, `score` and CPU/wall seconds per frame."""
    lines = [f"Machine: {machine}. Clip: {Path(clip).name}, {frames} frames resized to width {width} as the "
             f"emotion app does; reference: {faces} faces in {labelled} frames ({how}). CPU ms is process time "
             "per frame (the detector alone, decoding and resizing excluded), frames/s = 1000 / CPU ms; wall ms "
             "is the median.", "",
             "| detector | found | recall | false | pick ok | CPU ms/frame | frames/s (1 core) | wall ms |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['found']}/{frames} ({r['found'] / frames:.0%}) | {r['recall']:.0%} | "
                     f"{r['false']} | {r['pick_ok']:.0%} | {r['cpu_ms']:.1f} | {1000 / r['cpu_ms']:.0f} | "
                     f"{r['wall_ms']:.1f} |")
    lines += ["", "found: frames with any box; recall: reference faces found (IoU >= 0.3); false: boxes matching "
                  "no reference face; pick ok: frames with a face where the largest box (the one the app "
                  "classifies) is a face."]
    for name, r in rows.items():
        if "searched" in r:
            lines += ["", f"{name}: as the emotion app runs it by default, a search every {r['detect_every']}th "
                          f"frame, the faces carried and re-checked by O-Net in between; {r['searched']} of "
                          f"{frames} frames searched, {r['fast']} of them by the first search for faces 0.7 of the "
                          "previous size alone. The other rows search every frame in full."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clip")
    ap.add_argument("--width", type=int, default=300, help="detection width (the emotion app's: 300)")
    ap.add_argument("--detectors", default=",".join(available_detectors()))
    ap.add_argument("--reference", help="hand-checked faces JSON (see the module docstring)")
    ap.add_argument("--label-every", type=int, default=7, help="without --reference: consensus every N frames")
    ap.add_argument("--candidates", help="write the clustered boxes of the labelled frames to this JSON")
    ap.add_argument("--crops", help="write contact sheets of the clusters to this folder")
    ap.add_argument("--tracked", default=None,
                    help="detectors also run as the emotion app runs them (default: mtcnn when installed)")
    ap.add_argument("--detect-every", type=int, default=DETECT_EVERY, help="the tracked rows' search interval")
    ap.add_argument("--threads", type=int, default=1, help="PyTorch CPU threads (the app's default: 1)")
    ap.add_argument("--no-append", action="store_true", help="print only; do not write BENCHMARKS.md")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.detectors.split(",") if n.strip()]
    frames = read_frames(args.clip, args.width)
    results = {name: run_detector(name, frames) for name in names}
    tracked = [n.strip() for n in (args.tracked if args.tracked is not None else
                                   ("mtcnn" if "mtcnn" in available_detectors() else "")).split(",") if n.strip()]
    searched: dict[str, list[str]] = {}
    for name in tracked:
        searched[f"{name}, tracked"] = []
        results[f"{name}, tracked"] = run_detector(name, frames, args.detect_every, searched[f"{name}, tracked"])

    if args.reference:
        ref = json.loads(Path(args.reference).read_text())
        if ref.get("width") != args.width:
            raise SystemExit(f"{args.reference} was labelled at width {ref.get('width')}: use that --width")
        reference = {int(k): [tuple(b) for b in v] for k, v in ref["frames"].items()}
        how = f"hand-checked reference ({args.reference})"
    else:
        reference = {}
        for index in range(0, len(frames), args.label_every):
            groups = clusters({n: results[n][0][index] for n in names})
            reference[index] = [tuple(g["box"]) for g in groups if len(g["by"]) >= 2]
        how = f"consensus of >= 2 detectors, every {args.label_every}th frame"
    labelled = sorted(reference)
    if args.candidates or args.crops:
        cand = {i: clusters({n: results[n][0][i] for n in names}) for i in labelled}
        if args.candidates:
            Path(args.candidates).write_text(json.dumps({"width": args.width, "frames": cand}, indent=1))
        if args.crops:
            letters = {n: n[0].upper() for n in names}
            for p in contact_sheets(frames, cand, Path(args.crops), letters):
                print(f"wrote {p}")

    faces = sum(len(v) for v in reference.values())
    rows = {}
    for name in results:
        boxes, cpu, wall = results[name]
        rows[name] = {"found": sum(bool(b) for b in boxes), **score(boxes, reference),
                      "cpu_ms": 1000 * float(np.mean(cpu)), "wall_ms": 1000 * float(np.median(wall))}
        if name in searched:
            rows[name].update(searched=sum(map(bool, searched[name])), fast=searched[name].count("fast"),
                              detect_every=args.detect_every)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    machine = f"{describe()}; load average {load:.1f}"
    text = section(rows, args.clip, len(frames), args.width, len(labelled), faces, how, machine)
    print(text)
    if not args.no_append:
        print(f"written to {write_section(TITLE, text)}")

if __name__ == "__main__":
    main()
