"""deepvision demo"""

from __future__ import annotations

import argparse

ORDER = 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train LeNet on the bundled digits end to end (no download)",
                       description="The embedded default: trains LeNet on scikit-learn's handwritten digits "
                                   "(28x28, stratified train/val/test), evaluates it, writes a run directory, "
                                   "predicts one held-out image and prints the test accuracy last.")
    p.add_argument("--out", default="runs", help="folder for run directories (default: runs)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting of the demo config, e.g. --set train.epochs=5")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from deepvision.apps.demo import run_demo

    run_demo(out=args.out, overrides=args.overrides)
    return 0
