"""deepvision stl10"""

from __future__ import annotations

import argparse
import textwrap

ORDER = 66

BUILD_EPILOG = """then train the tutorial's recipe and evaluate it (ROC and precision-recall):
  deepvision train stl10_cnn_t1 --data-root OUT
  deepvision evaluate runs/stl10_cnn_t1
  deepvision stl10 report runs/stl10_cnn_t1   (train and test curves, as T1)
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stl10", help="STL-10 airplane/cat subset (tutorial T1): binaries -> lists and records",
                       description="STL-10 preparation for tutorial T1.")
    cmds = p.add_subparsers(dest="stl10_command", metavar="<action>")
    build = cmds.add_parser(
        "build", help="take STL-10's airplanes and cats, split 70/20/10, write lists and 28x28 gray records",
        description=textwrap.fill(
            "Read STL-10's binary files under --root (train_X.bin, train_y.bin, test_X.bin, test_y.bin), take "
            "every airplane and cat image (relabelled 0 = airplane, 1 = cat), split them 70/20/10 per class "
            "(seeded), and write OUT/images/, train.lst, val.lst, test.lst, labels.txt and train/val/test.rec "
            "resized to 28x28 and converted to grayscale at packing time.", 78),
        epilog=BUILD_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    build.add_argument("--root", required=True, help="folder with the STL-10 .bin files (or its parent)")
    build.add_argument("--out", required=True, help="output folder")
    build.add_argument("--seed", type=int, default=42, help="seed of the split and list order (default 42)")
    build.add_argument("--full-size", action="store_true",
                       help="also pack the 96x96 colour images into OUT/rgb96/{train,val,test}.rec")
    build.add_argument("--no-records", action="store_true", help="write images and lists only")
    build.add_argument("--encoding", default=".png", choices=[".png", ".jpg"],
                       help="image encoding inside the records (default .png, lossless; .jpg uses quality 100)")
    build.add_argument("--workers", type=int, help="packing processes (default: all cores)")
    build.set_defaults(func=run_build)
    fake = cmds.add_parser("fake", help="write small STL-10 binary files in the official layout, for testing",
                           description="Write train_X.bin, train_y.bin, test_X.bin, test_y.bin and "
                                       "class_names.txt with all ten classes, in STL-10's exact layout.")
    fake.add_argument("--out", required=True, help="output folder")
    fake.add_argument("--train-per-class", type=int, default=20, help="images per class in train_X.bin")
    fake.add_argument("--test-per-class", type=int, default=32, help="images per class in test_X.bin")
    fake.add_argument("--seed", type=int, default=0)
    fake.set_defaults(func=run_fake)
    dl = cmds.add_parser("download", help="download the official STL-10 binary archive (2.6 GB, MD5 checked)",
                         description="Download stl10_binary.tar.gz into --root and extract the labelled files "
                                     "to ROOT/stl10_binary/.")
    dl.add_argument("--root", required=True, help="destination folder")
    dl.set_defaults(func=run_download)
    rep = cmds.add_parser(
        "report", help="T1's figure: ROC and precision-recall of the train (no augmentation) and test splits",
        description="Evaluate a two-class run on its training split (scored without augmentation) and its test "
                    "split, and write roc_pr.png (train magenta, test cyan) and t1_report.json with the "
                    "per-class correct counts into RUN_DIR/eval/t1-<checkpoint>/.")
    rep.add_argument("run_dir", help="run directory (e.g. runs/stl10_cnn_t1)")
    which = rep.add_mutually_exclusive_group()
    which.add_argument("--epoch", type=int, help="checkpoint epoch (default: best.pt)")
    which.add_argument("--last", action="store_true", help="use last.pt instead of best.pt")
    rep.add_argument("--data", default="test", choices=["val", "test"], help="the split drawn in cyan")
    rep.add_argument("--device", default="auto", help="auto, cpu or cuda")
    rep.add_argument("--out", help="report folder (default: RUN_DIR/eval/t1-<checkpoint>)")
    rep.set_defaults(func=run_report)
    p.set_defaults(func=lambda args: p.print_help() or 0)


def run_build(args: argparse.Namespace) -> int:
    from deepvision.cli.terminate import sigterm_says

    with sigterm_says("unfinished record files were removed"):
        return _build(args)


def _build(args: argparse.Namespace) -> int:
    from deepvision.apps.stl10 import build_stl10
    from deepvision.cli.output import progress_bar
    from deepvision.safeload import check_workers

    if args.workers is not None:
        check_workers("--workers", args.workers)  # packing starts one process per image up to this
    with progress_bar() as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        subset = build_stl10(args.root, args.out, seed=args.seed, pack=not args.no_records, full_size=args.full_size,
                             encoding=args.encoding, workers=args.workers, progress=progress)
    print(subset.summary())
    for split, path in subset.lists.items():
        rec = subset.records.get(split)
        print(f"  {path}" + (f"  {rec.rec} ({rec.nbytes / 1e6:.2f} MB)" if rec else ""))
    for rec in subset.full_size.values():
        print(f"  {rec.rec} ({rec.nbytes / 1e6:.2f} MB, 96x96 colour)")
    print(f"  {subset.labels}")
    return 0


def run_fake(args: argparse.Namespace) -> int:
    from deepvision.apps.stl10 import make_fake_stl10

    out = make_fake_stl10(args.out, args.train_per_class, args.test_per_class, args.seed)
    print(f"fake STL-10 binaries ({args.train_per_class} train and {args.test_per_class} test images per class) "
          f"in {out}")
    return 0


def run_download(args: argparse.Namespace) -> int:
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    from deepvision.apps.stl10 import download
    from deepvision.cli.output import progress_bar

    with progress_bar(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn()) as bar:
        task = bar.add_task("stl10_binary.tar.gz", total=None)
        folder = download(args.root, progress=lambda done, total: bar.update(task, completed=done,
                                                                               total=total or None))
    print(f"STL-10 binary files in {folder}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from deepvision.apps.stl10 import t1_report

    t1_report(args.run_dir, epoch=args.epoch, which="last" if args.last else "best", data=args.data,
              device=args.device, out=args.out)
    return 0
