"""deepvision emotion"""

from __future__ import annotations

import argparse

ORDER = 40

EPILOG = """examples:
  deepvision emotion runs/emotion_vgg_e4                          # camera 0, windows; q quits
  deepvision emotion runs/emotion_vgg_e4 --video clip.mp4 --headless --out annotated/
  deepvision emotion fer/data/emotion_model.hdf5 --video clip.mp4 --headless --out clip-emotions.mp4
  deepvision emotion runs/emotion_vgg_e4 --image photos/ --out emotions/    # every face of each photo
  deepvision emotion runs/emotion_vgg_e4 --video clip.mp4 --detector haar --headless --out out/
      # the reference's Haar cascade: frontal faces only, faster
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "emotion", help="real-time emotion recognition from a camera or a video",
        description="Per frame: resize to width 300, detect faces (MTCNN when facenet-pytorch is installed, else "
                    "the reference's Haar cascade 1.1, 5, 30x30), classify the largest face, draw the "
                    "probability canvas and the labelled box. Windows 'Face' and "
                    "'Probabilities' (q quits), or --headless: annotated frames (folder) or a video, plus per-frame "
                    "results.csv/json. Prints frames/s at the end. --image PATH: still photos (a file or a "
                    "folder): every face, at up to --width 800, annotated images and results in --out.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="RUN_OR_WEIGHTS", help="run directory, .pt checkpoint or Keras .h5 file")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--video", help="video file (default: the camera)")
    src.add_argument("--camera", type=int, default=0, help="camera index (default 0)")
    src.add_argument("--image", help="a photo or a folder of photos: every face in each (no windows)")
    p.add_argument("--headless", action="store_true", help="no windows: write to --out instead")
    p.add_argument("--out", help="folder (face/NNNNNN.png, probabilities/NNNNNN.png, results.csv/json) or video "
                                 "file .mp4/.avi/.mkv/.mov (frame and canvas side by side, plus .csv/.json beside it)")
    p.add_argument("--detector", choices=["haar", "dlib", "mtcnn"],
                   help="face detector (default: mtcnn when facenet-pytorch is installed, else haar; mtcnn finds "
                        "turned faces and faces in a crowd; haar: frontal faces, fast, the reference's; "
                        "docs/faces.md)")
    p.add_argument("--keras-model", help="architecture of a Keras .h5 (default: the emotion architecture it fits)")
    p.add_argument("--full-size-detection", action="store_true",
                   help="every search in full (by default, after a large face, Haar first searches the frame at "
                        "half size and MTCNN first looks for faces of 0.7 of that size; docs/faces.md)")
    p.add_argument("--detect-every", type=int, metavar="K",
                   help="MTCNN: search for faces every K-th frame (default 8); in between, its last "
                        "stage re-checks and moves the previous frame's faces, and a frame where none is left is "
                        "searched at once; 1: every frame (docs/faces.md)")
    p.add_argument("--width", type=int, help="frame width for detection and display (300; --image: at most 800)")
    p.add_argument("--max-frames", type=int, help="stop after N frames")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--threads", type=int, default=1, help="PyTorch CPU threads (default 1: fastest for one small "
                                                          "face per frame)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from deepvision.apps.emotion.app import detector_note

    note = detector_note(args.detector)
    if note:
        sys.stderr.write(note + "\n")
    if args.image:
        return run_images(args)
    from deepvision.apps.emotion.app import DETECT_EVERY, run_emotion
    from deepvision.cli.output import shown

    width = 300 if args.width is None else args.width  # 0 is refused, not taken as the default
    summary = run_emotion(args.model, video=args.video, camera=args.camera, headless=args.headless, out=args.out,
                          detector=args.detector, keras_model=args.keras_model, width=width,
                          max_frames=args.max_frames, device=args.device, threads=args.threads,
                          fast_detection=not args.full_size_detection,
                          detect_every=DETECT_EVERY if args.detect_every is None else args.detect_every)
    if summary.note:
        print(f"{shown(args.video)}: {summary.note}")
    if summary.no_face:
        print(f"no face found in {summary.no_face} of {summary.frames} frames")
    for kind, path in summary.files.items():
        print(f"  {kind}: {shown(path)}")
    print(f"{summary.frames} frames: {summary.fps:.1f} frames/s (resize, detect, classify, draw), "
          f"{summary.wall_fps:.1f} with video I/O")
    return 0


def run_images(args: argparse.Namespace) -> int:
    import torch

    from deepvision.apps.emotion.app import MAX_THREADS, run_emotion_images
    from deepvision.cli.output import shown
    from deepvision.errors import UserError
    from deepvision.safeload import check_range

    given = {"--max-frames": args.max_frames is not None, "--detect-every": args.detect_every is not None,
             "--full-size-detection": args.full_size_detection}
    unused = next((option for option, on in given.items() if on), None)
    if unused is not None:  # taken and ignored without a word
        raise UserError(f"{unused} applies to videos and the camera, not to --image; leave it out")
    if args.threads is not None:
        check_range("--threads", args.threads, 1, MAX_THREADS)
        torch.set_num_threads(args.threads)  # the CLI restores the count afterwards
    width = 800 if args.width is None else args.width
    summary = run_emotion_images(args.model, args.image, out=args.out, detector=args.detector,
                                 keras_model=args.keras_model, width=width, device=args.device)
    by_image: dict[str, list] = {}
    for face in summary.faces:
        by_image.setdefault(face.image, []).append(face)
    for image, faces in by_image.items():
        print(f"{shown(image)}: {len(faces)} face{'s' if len(faces) != 1 else ''}")
        for f in faces:
            x, y, w, h = f.box
            print(f"  face {f.face + 1} at {x},{y} ({w} x {h}): {shown(f.label)} {f.probabilities[f.label] * 100:.1f}%")
    for image in summary.no_face:
        print(f"{shown(image)}: no face found")
    for kind, path in summary.files.items():
        print(f"  {kind}: {shown(path)}")
    return 0
