"""deepvision cars"""

from __future__ import annotations

import argparse
import textwrap

ORDER = 71

LISTS_EPILOG = """then pack each list (shorter side 256) and fine-tune VGG16 (recipe C3):
  deepvision im2rec OUT/train ROOT --resize 256
  deepvision im2rec OUT/val   ROOT --resize 256
  deepvision im2rec OUT/test  ROOT --resize 256
  deepvision train cars_vgg16_c3 --data-root OUT
  deepvision cars show runs/cars_vgg16_c3 --sample-size 10
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cars", help="Stanford Cars: make/model lists, a fake tree, the prediction visualiser",
                       description="Vehicle make/model identification (Stanford Cars, VGG16 fine-tuning).")
    cmds = p.add_subparsers(dest="cars_command", metavar="<action>")
    lists = cmds.add_parser("lists", help="read the .mat annotations and write train/val/test.lst, labels, mean",
                            description="Read cars_annos.mat (or devkit/cars_meta.mat + the train/test annotation "
                                        "files) under --root, label each image '<make>:<model>' (year and body type "
                                        "dropped; or from --csv), split 70/15/15 stratified, and write train.lst, "
                                        "val.lst, test.lst (paths relative to ROOT), labels.txt, mean.json "
                                        "(the ImageNet constants) and lists.json (the mark that lets a later run "
                                        "replace this folder's lists; any other folder must be new or empty).",
                            epilog=LISTS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    lists.description = textwrap.fill(lists.description, 79)  # the epilog stays as written
    lists.add_argument("--root", required=True, help="Stanford Cars folder (cars_annos.mat + car_ims/)")
    lists.add_argument("--out", required=True, help="output folder")
    lists.add_argument("--csv", help="the reference's label CSV (filename, make, model, type, year; header row)")
    lists.add_argument("--images", default="car_ims", help="image folder under ROOT for --csv (default car_ims)")
    lists.add_argument("--seed", type=int, default=42, help="seed of the splits (default 42)")
    lists.add_argument("--absolute", action="store_true", help="write absolute paths (the reference's choice)")
    lists.set_defaults(func=run_lists)
    fake = cmds.add_parser("fake", help="write a miniature Stanford-Cars-shaped tree for testing",
                           description="Write cars_annos.mat (the real layout) and car_ims/*.jpg with 9 real class "
                                       "names (7 make:model labels) so the workflow runs without the data set.")
    fake.add_argument("--out", required=True, help="output folder (the fake root)")
    fake.add_argument("--per-class", type=int, default=12, help="images per class name (default 12)")
    fake.add_argument("--seed", type=int, default=0)
    fake.set_defaults(func=run_fake)
    show = cmds.add_parser("show", help="predict sampled test images of a run and draw the top-1 label",
                           description="Sample test images of a cars run, print the actual label and the top 5 "
                                       "predictions, and write each image with its top-1 label drawn to --out.")
    show.add_argument("run_dir", metavar="RUN", help="run directory")
    show.add_argument("--sample-size", type=int, default=10, help="number of samples (default 10)")
    show.add_argument("--out", help="output folder (default RUN/eval/cars-show)")
    show.add_argument("--seed", type=int, help="seed of the sample (default: random)")
    show.add_argument("--with-replacement", action="store_true", help="sample with replacement (the reference)")
    show.add_argument("--epoch", type=int, help="checkpoint epoch (default best.pt)")
    show.add_argument("--device", default="auto", help="auto, cpu or cuda")
    show.set_defaults(func=run_show)
    p.set_defaults(func=lambda args: p.print_help() or 0)


def run_lists(args: argparse.Namespace) -> int:
    from deepvision.apps.cars import build_cars_lists

    lists = build_cars_lists(args.root, args.out, csv_path=args.csv, images=args.images, seed=args.seed,
                             absolute=args.absolute)
    print(f"{len(lists.classes)} make:model classes; train {len(lists.train):,}, val {len(lists.val):,}, "
          f"test {len(lists.test):,}")
    for path in lists.files.values():
        print(f"  {path}")
    return 0


def run_fake(args: argparse.Namespace) -> int:
    from deepvision.apps.cars import make_fake_cars

    root = make_fake_cars(args.out, args.per_class, args.seed)
    print(f"fake Stanford Cars tree at {root}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from deepvision.apps.cars import show_cars

    show_cars(args.run_dir, sample_size=args.sample_size, out=args.out, seed=args.seed,
              replace=args.with_replacement, epoch=args.epoch, device=args.device)
    return 0
