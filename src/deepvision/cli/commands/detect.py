"""deepvision detect"""

from __future__ import annotations

import argparse
import json

ORDER = 22


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="run a trained detector on images, folders or videos",
                       description="Detect objects with a trained detection run: the longer side is "
                                   "capped at 1000 px, boxes below --min-confidence are dropped, the rest are drawn "
                                   "with '<class>: <score>' labels. With --out, annotated images (.jpg), videos "
                                   "(.mp4) and detections.json (pixel boxes of the original images) are written.")
    p.add_argument("run_dir", help="detection run directory")
    p.add_argument("sources", nargs="+", metavar="IMAGE|FOLDER|VIDEO",
                   help="image files, videos, folders (their images and videos at every level)")
    p.add_argument("--min-confidence", type=float, default=0.5, help="score threshold (default 0.5)")
    p.add_argument("--out", help="folder for annotated images/videos and detections.json")
    p.add_argument("--json", action="store_true", help="print the detections as JSON")
    p.add_argument("--show", action="store_true", help="show videos in a window (q quits); headless by default")
    p.add_argument("--epoch", type=int, help="checkpoint epoch (default: best.pt)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--batch-size", type=int, help="images per forward pass (default 4)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from deepvision.cli.output import shown
    from deepvision.config.schema import MAX_BATCH
    from deepvision.inference.detect import check_min_confidence, run_detect
    from deepvision.safeload import check_range

    if args.batch_size is not None:
        check_range("--batch-size", args.batch_size, 1, MAX_BATCH)
    check_min_confidence(args.min_confidence)
    # the bar starts with the first video frame: a refusal before it stays one line on stderr
    bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TimeRemainingColumn(), transient=True, disable=args.json)
    task = bar.add_task("video frames", total=None)

    def frame(done: int, total: int) -> None:
        if not bar.live.is_started:
            bar.start()
        bar.update(task, completed=done, total=total or None)

    try:
        images, videos = run_detect(args.run_dir, args.sources, min_confidence=args.min_confidence, out=args.out,
                                    show=args.show, epoch=args.epoch, device=args.device,
                                    batch_size=args.batch_size, on_video_frame=frame)
    finally:
        if bar.live.is_started:  # stopping a bar never started would still print an empty line
            bar.stop()
    if args.json:
        print(json.dumps({"images": [r.to_dict() for r in images],
                          "videos": [v.to_dict() for v in videos]}, indent=1))
        return 0
    for r in images:
        written = f" -> {shown(r.output)}" if r.output else ""
        print(f"{shown(r.source)}: {len(r.detections)} detection(s){written}")
        for d in r.detections:
            x1, y1, x2, y2 = d.box
            print(f"  {shown(d.name)}: {d.score:.2f} at [{x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}]")
    for v in videos:
        if v.note:
            print(f"{shown(v.source)}: {v.note}")
        print(f"{shown(v.source)}: {v.frames} frames, {v.detections} detection(s), {v.fps:.1f} frames/s"
              + (f" -> {shown(v.output)}" if v.output else ""))
    return 0
