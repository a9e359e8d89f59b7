"""deepvision imagenet"""

from __future__ import annotations

import argparse

ORDER = 65

LISTS_EPILOG = """then pack each list (shorter side 256) and train a recipe:
  deepvision im2rec OUT/train ROOT/Data/CLS-LOC --resize 256
  deepvision im2rec OUT/val   ROOT/Data/CLS-LOC --resize 256
  deepvision im2rec OUT/test  ROOT/Data/CLS-LOC --resize 256
  deepvision train imagenet_alexnet_a3 --data-root OUT
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("imagenet", help="ILSVRC devkit -> list files and mean; a fake ILSVRC tree for testing",
                       description="ImageNet (ILSVRC CLS-LOC) preparation.")
    cmds = p.add_subparsers(dest="imagenet_command", metavar="<action>")
    lists = cmds.add_parser(
        "lists", help="read the devkit and write train/val/test.lst, labels.txt and mean.json",
        description="Read the ILSVRC devkit under --root: labels = map_clsloc id - 1 in map order, blacklisted "
                    "validation images dropped, a stratified seeded test split carved from train; each image is "
                    "listed as spelled on disk (.JPEG in any case), a missing one stops the command. Writes "
                    "train.lst, val.lst, test.lst (paths relative to ROOT/Data/CLS-LOC), labels.txt (wnid and "
                    "name), mean.json (mean R, G, B of the training split's original images) and lists.json (the mark "
                    "that lets a later run replace this folder's lists; any other folder must be new or empty).",
        epilog=LISTS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    lists.add_argument("--root", required=True, help="ILSVRC root (holding Data/, ImageSets/, devkit/)")
    lists.add_argument("--out", required=True, help="output folder")
    lists.add_argument("--test-size", type=int, help="test images carved from train (default: 50 per class)")
    lists.add_argument("--seed", type=int, default=42, help="seed of the test split (default 42)")
    lists.add_argument("--absolute", action="store_true", help="write absolute paths (the reference's choice)")
    lists.add_argument("--no-mean", action="store_true", help="skip the mean computation")
    lists.add_argument("--no-blacklist", action="store_true",
                       help="keep every validation image (when the devkit has no blacklist file)")
    lists.add_argument("--workers", type=int, help="processes for the mean (default: all cores)")
    lists.set_defaults(func=make_lists)
    fake = cmds.add_parser("fake", help="write a miniature ILSVRC tree (devkit files + JPEGs) for testing",
                           description="Write a miniature ILSVRC tree with the same devkit files and JPEGs of "
                                       "varied sizes, so the whole workflow runs without ImageNet.")
    fake.add_argument("--out", required=True, help="output folder (the fake ILSVRC root)")
    fake.add_argument("--classes", type=int, default=10)
    fake.add_argument("--per-class", type=int, default=20, help="training images per class")
    fake.add_argument("--val-per-class", type=int, default=5)
    fake.add_argument("--seed", type=int, default=0)
    fake.add_argument("--min-side", type=int, default=64)
    fake.add_argument("--max-side", type=int, default=160)
    fake.set_defaults(func=make_fake)
    p.set_defaults(func=lambda args: p.print_help() or 0)


def make_lists(args: argparse.Namespace) -> int:
    from pathlib import Path

    from deepvision.apps.imagenet.devkit import DevkitPaths, build_lists

    if not args.no_mean:  # needs the records extra (OpenCV): fail before writing anything
        import deepvision.datasets.mean  # noqa: F401
        from deepvision.safeload import check_workers

        if args.workers is not None:
            check_workers("--workers", args.workers)
    means = []

    def mean(tmp: Path) -> dict[str, str]:  # beside the lists, in the same step: a stop leaves --out as it was
        from deepvision.cli.output import progress_bar
        from deepvision.datasets.mean import compute_mean, write_mean_json

        with progress_bar() as bar:
            task = bar.add_task("mean of the training images", total=None)
            means.append(compute_mean(tmp / "train.lst", root=None if args.absolute else DevkitPaths(
                Path(args.root)).images, workers=args.workers, progress=lambda done, total: bar.update(
                    task, completed=done, total=total)))
        write_mean_json(tmp / "mean.json", means[0])
        return {"mean": "mean.json"}

    lists = build_lists(args.root, args.out, test_size=args.test_size, seed=args.seed, absolute=args.absolute,
                        blacklist=not args.no_blacklist, beside=None if args.no_mean else mean)
    print(f"{len(lists.classes)} classes; train {len(lists.train):,}, val {len(lists.val):,} "
          f"({lists.blacklisted:,} blacklisted dropped), test {len(lists.test):,}")
    for key, path in lists.files.items():
        if key != "mean":
            print(f"  {path}")
    for result in means:
        print(f"  {lists.files['mean']}: R {result.r:.3f}, G {result.g:.3f}, B {result.b:.3f} over "
              f"{result.count:,} images" + (f" ({len(result.skipped)} unreadable skipped)" if result.skipped else ""))
    return 0


def make_fake(args: argparse.Namespace) -> int:
    from deepvision.apps.imagenet.fake import make_fake_imagenet

    paths = make_fake_imagenet(args.out, args.classes, args.per_class, args.val_per_class, args.seed,
                               args.min_side, args.max_side)
    print(f"fake ILSVRC tree with {args.classes} classes at {paths.root}")
    return 0
