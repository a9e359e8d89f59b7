"""deepvision agegender"""

from __future__ import annotations

import argparse

ORDER = 41

EPILOG = """examples:
  deepvision agegender runs/adience_age runs/adience_gender --image photos/ --out agegender/
  deepvision agegender runs/adience_age runs/adience_gender --image me.jpg \\
      --landmarks shape_predictor_68_face_landmarks.dat
  deepvision agegender runs/adience_age runs/adience_gender --sample-size 10 --root adience --out samples/

Apparent gender is not gender identity. Use the predictions for aggregate statistics only, never to
decide how an individual is treated.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "agegender", help="age and gender of every face in images, with face alignment",
        description="--image: resize to width 800, detect every face, align it (eyes at 0.35 of a 256x256 face), "
                    "10-crop with each run's mean and average the probabilities. --sample-size: rows of the age "
                    "test list, resized to the input size, with the actual age. Writes the input with face boxes, "
                    "the aligned faces and one probability canvas per task (PNG) and results.csv/json to --out, "
                    "or shows windows.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_age", metavar="RUN_AGE", help="age run directory (or .pt / .h5)")
    p.add_argument("run_gender", metavar="RUN_GENDER", help="gender run directory (or .pt / .h5)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--image", help="an image file, or a folder of images (processed in sorted order)")
    what.add_argument("--sample-size", type=int, help="number of samples drawn from the age test list")
    p.add_argument("--out", help="folder for the images and results (headless); without it: windows")
    p.add_argument("--headless", action="store_true", help="no windows (needs --out)")
    p.add_argument("--detector", default="auto", choices=["auto", "haar", "dlib", "mtcnn"],
                   help="face detector (auto: dlib HOG when dlib is installed, else haar)")
    p.add_argument("--landmarks", help="dlib shape_predictor_68_face_landmarks.dat for the eye positions")
    p.add_argument("--eyes", default="auto", choices=["auto", "dlib68", "mtcnn", "cascade", "box"],
                   help="eye source for alignment (auto: landmarks, MTCNN points, eye cascade, then the box)")
    p.add_argument("--list", dest="test_list", help="age test list for --sample-size (default: beside the age "
                                                    "run's test data)")
    p.add_argument("--root", help="folder the list's image paths are relative to (the Adience folder)")
    p.add_argument("--seed", type=int, help="seed of the sampling (default: random)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from deepvision.apps.agegender.app import predict_agegender, sample_agegender
    from deepvision.errors import UserError

    if args.headless and not args.out:
        raise UserError("--headless needs --out DIR")
    mode_options = ({"--list": args.test_list, "--root": args.root, "--seed": args.seed} if args.image else
                    {"--landmarks": args.landmarks, "--detector": args.detector != "auto" or None,
                     "--eyes": args.eyes != "auto" or None})
    unused = next((option for option, value in mode_options.items() if value is not None), None)
    if unused is not None:  # taken and ignored without a word
        raise UserError(f"{unused} applies to {'--sample-size' if args.image else '--image'} only; leave it out")
    if args.image:
        report = predict_agegender(args.run_age, args.run_gender, args.image, out=args.out, detector=args.detector,
                                   landmarks=args.landmarks, eyes=args.eyes, device=args.device)
    else:
        report = sample_agegender(args.run_age, args.run_gender, sample_size=args.sample_size,
                                  test_list=args.test_list, root=args.root, out=args.out, seed=args.seed,
                                  device=args.device)
    from deepvision.apps.agegender.adience import display_label
    from deepvision.cli.output import shown

    for f in report.faces:
        x, y, w, h = f.box
        print(f"{shown(f.image)} face {f.face} [{x}, {y}, {w}, {h}]: age {display_label(f.age_label)} "
              f"({f.age[f.age_label] * 100:.1f}%), gender {display_label(f.gender_label)} "
              f"({f.gender[f.gender_label] * 100:.1f}%)")
    for kind, path in report.files.items():
        print(f"  {kind}: {shown(path)}")
    return 0
