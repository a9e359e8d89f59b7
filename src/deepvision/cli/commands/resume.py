"""deepvision resume"""

from __future__ import annotations

import argparse

from deepvision.cli.launch import add_nproc_option

ORDER = 11


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "resume", help="continue a run from a checkpoint, optionally with a new learning rate",
        description="Continue RUN_DIR from the checkpoint of epoch N (default: the latest). "
                    "--set optim.lr=X fixes the learning rate at X from there on (the reference's "
                    "'stop, lower the rate, restart from epoch N'); --set train.epochs=M trains further.",
        epilog="example: deepvision resume runs/alexnet --epoch 50 --set optim.lr=0.001 --set train.epochs=65",
    )
    p.add_argument("run_dir", help="run directory made by `deepvision train`")
    p.add_argument("--epoch", type=int, help="checkpoint epoch to continue from (default: latest)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (repeatable)")
    p.add_argument("--reset-optimizer", action="store_true",
                   help="keep only the weights, restarting momentum/Adam moments (as the reference did)")
    add_nproc_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from deepvision.cli.launch import launch, should_launch

    if should_launch(args.nproc_per_node):
        return launch(args.nproc_per_node, "resume", args.argv)
    from deepvision.api import resume
    from deepvision.cli.commands.train import _summary

    _summary(resume(args.run_dir, epoch=args.epoch, overrides=args.overrides, reset_optimizer=args.reset_optimizer))
    return 0
