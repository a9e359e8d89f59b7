"""deepvision classify"""

from __future__ import annotations

import argparse
import textwrap

ORDER = 22

EPILOG = """examples:
  deepvision classify photo.jpg --model tv:resnet50
  deepvision classify photos/ --model tv:mobilenet_v2 --weights IMAGENET1K_V1 \\
      --top 3 --out preds.csv
  deepvision classify photos/ --run runs/cars_vgg16_c3 --json
weights are read from torch's cache ($TORCH_HOME/hub/checkpoints), downloaded
when missing and online (never with DEEPVISION_OFFLINE=1).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classify", help="top-k ImageNet classes of photos with a pretrained network (or a run)",
                       description="Classify image files and folders with torchvision's ImageNet weights (each "
                                   "model with its own documented preprocessing; classes as ImageNet synsets, "
                                   "e.g. 'n07920052 espresso') or with a deepvision run.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.description = textwrap.fill(p.description, 79)  # the epilog stays as written
    p.add_argument("inputs", nargs="+", metavar="IMAGE|FOLDER", help="image files and folders (searched recursively)")
    p.add_argument("--model", help="tv:NAME, e.g. tv:resnet50 (or give --run)")
    p.add_argument("--weights", help="DEFAULT, a tag such as IMAGENET1K_V1 (or torchvision:IMAGENET1K_V1, as "
                   "model.pretrained takes it), or a weights file (default DEFAULT)")
    p.add_argument("--run", help="classify with a deepvision run directory instead of --model")
    p.add_argument("--epoch", type=int, help="with --run: checkpoint epoch (default best.pt)")
    p.add_argument("--top", type=int, default=5, help="classes per image (default 5)")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch on the device (default 32)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--out", help="also write the results to this .csv or .json file (outside the input folders)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from deepvision.config.schema import MAX_BATCH
    from deepvision.datasets.im2rec import ProgressReporter
    from deepvision.errors import UserError
    from deepvision.inference.backbones import load_model
    from deepvision.inference.batching import expand_images
    from deepvision.inference.classify import classify_images, write_predictions
    from deepvision.safeload import check_range

    check_range("--batch-size", args.batch_size, 1, MAX_BATCH)
    if args.top < 1:
        raise UserError("--top must be at least 1")
    if bool(args.model) == bool(args.run):
        raise UserError("give either --model tv:NAME or --run DIR")
    if args.epoch is not None and not args.run:
        raise UserError("--epoch goes with --run")
    paths = expand_images(args.inputs)  # missing files fail before the model loads
    if args.out:  # .csv or .json, outside the input folders, never a file read (the run's history.csv, ...)
        from pathlib import Path

        from deepvision.inference.classify import check_predictions_out

        check_predictions_out(args.out, args.inputs, [*paths, *(Path(args.run).rglob("*") if args.run else ())])
    loaded = load_model(None if args.run else args.model, args.weights, run=args.run, epoch=args.epoch,
                        device=args.device)
    bar = ProgressReporter("classifying", every=10 * args.batch_size)
    try:
        results = classify_images(loaded, paths, top=args.top, batch_size=args.batch_size, progress=bar)
    finally:
        bar.close()
    if args.out:
        write_predictions(results, args.out)
    from deepvision.cli.output import print_top_k

    print_top_k(results, args.json, name_width=64)  # "  10. NAME: 100.00%" in 80 columns
    return 0
