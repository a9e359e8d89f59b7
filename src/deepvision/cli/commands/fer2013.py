"""deepvision fer2013"""

from __future__ import annotations

import argparse

ORDER = 66

BUILD_EPILOG = """sources:
  fer2013.csv   the Kaggle CSV (emotion,pixels,Usage)
  DIR           the image-folder release: DIR/train/<emotion>/Training_N.jpg,
                DIR/test/<emotion>/PublicTest_N.jpg and PrivateTest_N.jpg; the
                name prefix gives the split (other names are left out)
then train an emotion recipe on it:
  deepvision train emotion_vgg_e4 --data-root OUT    # 6 classes (final model)
  deepvision train emotion_vgg_e1 --data-root OUT7   # built with --classes 7
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fer2013", help="FER2013 CSV or image folders -> HDF5 train/val/test; a fake FER CSV",
                       description="FER2013 (facial expressions) preparation.")
    cmds = p.add_subparsers(dest="fer2013_command", metavar="<action>")
    build = cmds.add_parser(
        "build", help="fer2013.csv or the image-folder release -> OUT/train.hdf5, val.hdf5, test.hdf5",
        description="Read fer2013.csv (emotion,pixels,Usage) or the image-folder release (train/ and\n"
                    "test/ with one folder per emotion) and write Training to train.hdf5, PrivateTest\n"
                    "to val.hdf5 and PublicTest to test.hdf5 (images N x 48 x 48, labels,\n"
                    "label_names). In 6-class mode (default) disgust is merged into angry:\n"
                    "angry, scared, happy, sad, surprised, neutral.",
        epilog=BUILD_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    build.add_argument("csv", metavar="SOURCE", help="fer2013.csv, or the folder holding train/ and test/")
    build.add_argument("--out", required=True, help="output folder (existing .hdf5 files are never overwritten)")
    build.add_argument("--classes", type=int, default=6, choices=[6, 7], help="6 (disgust merged, default) or 7")
    build.add_argument("--dtype", default="float64", choices=["float64", "uint8"],
                       help="pixel storage: float64 like the reference (default) or compact uint8")
    build.set_defaults(func=run_build)
    fake = cmds.add_parser("fake", help="write a FER2013-format CSV of synthetic faces (for tests)",
                           description="Write a small CSV in the FER2013 format whose classes are learnable "
                                       "patterns; every emotion occurs in every split.")
    fake.add_argument("--out", required=True, help="CSV file to write")
    fake.add_argument("--rows", type=int, default=140)
    fake.add_argument("--seed", type=int, default=0)
    fake.set_defaults(func=run_fake)
    p.set_defaults(func=lambda args: p.print_help() or 0)


def run_build(args: argparse.Namespace) -> int:
    import textwrap

    from deepvision.apps.emotion.fer2013 import build_fer2013
    from deepvision.cli.output import progress_bar

    with progress_bar() as bar:
        task = bar.add_task("FER2013 faces", total=None)
        result = build_fer2013(args.csv, args.out, classes=args.classes, dtype=args.dtype,
                               progress=lambda done, total: bar.update(task, completed=done, total=total))
    for note in result.notes:
        print(textwrap.fill(note, 80, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False))
    width = max(len(c) for c in result.classes)
    print(f"{'split':<6} {'samples':>8}  " + " ".join(f"{c:>{width}}" for c in result.classes))
    for split in result.files:
        counts = result.counts[split]
        print(f"{split:<6} {sum(counts):>8,}  " + " ".join(f"{n:>{width},}" for n in counts))
    for path in result.files.values():
        print(f"  {path}")
    return 0


def run_fake(args: argparse.Namespace) -> int:
    from deepvision.apps.emotion.fer2013 import make_fake_fer_csv

    path = make_fake_fer_csv(args.out, args.rows, args.seed)
    print(f"fake FER2013 CSV with {args.rows} rows at {path}")
    return 0
