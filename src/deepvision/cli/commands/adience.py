"""deepvision adience"""

from __future__ import annotations

import argparse

ORDER = 67

LISTS_EPILOG = """then pack each list (shorter side 256) and train the age and gender recipes:
  deepvision im2rec OUT/age/train ROOT --resize 256      # likewise val, test, and OUT/gender/*
  deepvision train adience_age --data-root OUT/age
  deepvision train adience_gender --data-root OUT/gender
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("adience", help="Adience fold files -> age and gender lists with means; a fake Adience set",
                       description="Adience (age and gender) preparation.")
    cmds = p.add_subparsers(dest="adience_command", metavar="<action>")
    lists = cmds.add_parser(
        "lists", help="fold files -> OUT/{age,gender}/{train,val,test}.lst, labels.txt, mean.json",
        description="Read fold_frontal_*_data.txt under --root (in any case; other files are ignored), keep rows "
                    "whose age starts with '(' and gender is m/f, map ages to the 8 buckets (a tuple fitting none is "
                    "dropped from the age task), split each task into stratified train/val/test (15%% each for val and "
                    "test, seeded) and compute each task's training mean.",
        epilog=LISTS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    lists.add_argument("--root", required=True, help="Adience folder (fold files and aligned/)")
    lists.add_argument("--out", required=True, help="output folder")
    lists.add_argument("--seed", type=int, default=42, help="seed of the splits (default 42)")
    lists.add_argument("--absolute", action="store_true", help="write absolute image paths")
    lists.add_argument("--no-mean", action="store_true", help="skip the mean computation")
    lists.add_argument("--workers", type=int, help="processes for the means (default: all cores)")
    lists.set_defaults(func=make_lists)
    fake = cmds.add_parser("fake", help="write a miniature Adience folder (fold files + aligned JPEGs) for testing",
                           description="Write fold files in the Adience format (including rows the filter drops) "
                                       "and small aligned-face JPEGs whose colours encode age and gender.")
    fake.add_argument("--out", required=True, help="output folder (the fake Adience root)")
    fake.add_argument("--faces", type=int, default=80)
    fake.add_argument("--seed", type=int, default=0)
    fake.add_argument("--size", type=int, default=64, help="image side in pixels")
    fake.set_defaults(func=make_fake)
    p.set_defaults(func=lambda args: p.print_help() or 0)


def make_lists(args: argparse.Namespace) -> int:
    from pathlib import Path

    from deepvision.apps.agegender.adience import TaskLists, build_adience_lists, write_task_means
    from deepvision.cli.output import progress_bar

    def means(folder: Path, tasks: dict[str, TaskLists]) -> None:  # with the lists: a stop leaves --out as it was
        with progress_bar() as bar:
            ids = {name: bar.add_task(f"{name} mean", total=len(lists.train)) for name, lists in tasks.items()}
            write_task_means(tasks, None if args.absolute else args.root, args.workers,
                             lambda name, done, total: bar.update(ids[name], completed=done), folder)

    tasks = build_adience_lists(args.root, args.out, seed=args.seed, absolute=args.absolute,
                                beside=None if args.no_mean else means)
    for name, lists in tasks.items():
        print(f"{name}: {lists.total:,} faces, {len(lists.classes)} classes; train {len(lists.train):,}, "
              f"val {len(lists.val):,}, test {len(lists.test):,}")
        if lists.left_out:
            print(f"  left out: {lists.left_out}")
    for lists in tasks.values():
        for path in lists.files.values():
            print(f"  {path}")
    return 0


def make_fake(args: argparse.Namespace) -> int:
    from deepvision.apps.agegender.adience import make_fake_adience

    root = make_fake_adience(args.out, args.faces, args.seed, args.size)
    print(f"fake Adience folder with {args.faces} faces at {root}")
    return 0
