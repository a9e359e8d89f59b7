"""deepvision orientation"""

from __future__ import annotations

import argparse
import textwrap

ORDER = 70

EPILOG = """workflow:
  deepvision orientation dataset photos/ rotated/ --max 10000
  deepvision features tv:mobilenet_v2 rotated/ --weights IMAGENET1K_V1 \\
      --layer features.18 --pool 2 --no-crop --out rotated.h5
  deepvision logreg rotated.h5 --out orientation-model/
  deepvision orientation apply orientation-model/ new_photos/ --out corrected/
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("orientation", help="orientation correction: rotated data set; apply a fitted model",
                       description="Detect and undo 90/180/270-degree turns of photos (features + logistic "
                                   "regression).", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.description = textwrap.fill(p.description, 79)  # the epilog stays as written
    cmds = p.add_subparsers(dest="orientation_command", metavar="<action>")
    ds = cmds.add_parser("dataset", help="turn upright photos by random quarter turns into OUT/<angle>/",
                         description="Take up to --max images from SRC (recursively), turn each clockwise by 0, 90, "
                                     "180 or 270 degrees (uniform, exact quarter turns) and write "
                                     "OUT/<angle>/image_NNNNN<ext>. Unreadable images are skipped and listed in "
                                     "OUT/skipped.txt.")
    ds.add_argument("src", metavar="SRC", help="folder of upright photos")
    ds.add_argument("out", metavar="OUT", help="new (or empty) output folder")
    ds.add_argument("--max", type=int, default=10000, help="at most this many images (default 10000)")
    ds.add_argument("--sample", choices=["first", "random"], default="first",
                    help="first N in listing order (the reference) or a random sample")
    ds.add_argument("--seed", type=int, default=42, help="seed of the sample, the shuffle and the angles")
    ds.add_argument("--quality", type=int, default=95, help="JPEG quality of the written images (default 95)")
    ds.set_defaults(func=run_dataset)
    ap = cmds.add_parser("apply", help="predict the turn of photos and write them upright",
                         description="Predict each image's turn with a model from `deepvision logreg` (fitted on "
                                     "orientation features) and write the corrected image to --out, with "
                                     "predictions.csv and a side-by-side sheet.png.")
    ap.add_argument("model", metavar="MODEL", help="logreg output folder or its model.npz")
    ap.add_argument("inputs", nargs="+", metavar="IMAGE|FOLDER", help="image files and folders")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--sample", type=int, help="only this many images, drawn without replacement")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.set_defaults(func=run_apply)
    p.set_defaults(func=lambda args: p.print_help() or 0)


def run_dataset(args: argparse.Namespace) -> int:
    from deepvision.apps.orientation import build_orientation_dataset
    from deepvision.datasets.im2rec import ProgressReporter

    bar = ProgressReporter("rotating", every=1000)
    try:
        result = build_orientation_dataset(args.src, args.out, max_images=args.max, sample=args.sample, seed=args.seed,
                                           quality=args.quality, progress=bar)
    finally:
        bar.close()
    for angle, count in result.counts.items():
        print(f"[INFO] {angle:>3}: {count:,}")
    print(f"[INFO] {result.total:,} images written to {result.out}"
          + (f"; {len(result.skipped)} unreadable skipped (listed in {result.out / 'skipped.txt'})"
             if result.skipped else ""))
    return 0


def run_apply(args: argparse.Namespace) -> int:
    from deepvision.apps.orientation import apply_orientation
    from deepvision.cli.output import shown
    from deepvision.config.schema import MAX_BATCH
    from deepvision.datasets.im2rec import ProgressReporter
    from deepvision.safeload import check_range

    check_range("--batch-size", args.batch_size, 1, MAX_BATCH)
    bar = ProgressReporter("predicting", every=1000)
    try:
        results = apply_orientation(args.model, args.inputs, args.out, sample=args.sample, seed=args.seed,
                                    batch_size=args.batch_size, device=args.device, progress=bar)
    finally:
        bar.close()
    for r in results:
        print(f"{shown(r.image)}: turned {r.angle} ({r.probability * 100:.1f}%) -> {shown(r.corrected)}")
    print(f"[INFO] {len(results)} corrected images, predictions.csv and sheet.png in {args.out}")
    return 0
