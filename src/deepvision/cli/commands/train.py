"""deepvision train"""

from __future__ import annotations

import argparse

from deepvision.cli.launch import add_nproc_option

ORDER = 10

EXAMPLES = """
examples:
  deepvision train lenet_mnist --set data.root=data/mnist
  deepvision train my.yaml --set optim.lr=0.01 --set train.epochs=20 --name lr2
  deepvision train my.yaml --nproc-per-node 2     (DDP: one process per GPU)
  torchrun --nproc_per_node 2 -m deepvision train my.yaml       (the same)
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train from a YAML experiment config (or a shipped recipe name)",
                       description="Train a model from a YAML experiment config into a new run directory.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    lazy_config_help(p)
    p.add_argument("config", help="YAML config file, or the name of a shipped recipe (see `deepvision recipes`)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (repeatable), e.g. --set optim.lr=0.01")
    p.add_argument("--name", help="run name (default: the config's name, else MODEL-SOURCE)")
    p.add_argument("--out", default="runs", help="folder for run directories (default: runs)")
    p.add_argument("--data-root", help="shortcut for --set data.root=DIR")
    add_nproc_option(p)
    p.set_defaults(func=run)


def lazy_config_help(p: argparse.ArgumentParser) -> None:
    """Prepend the configuration reference (generated from the schema and the registries) to the
    epilog when help is printed; building it imports the registries, which `--help` alone pays for."""
    plain = p.format_help

    def format_help() -> str:
        import deepvision.engine.trainer  # noqa: F401  (registers optimizers, schedules, tasks, sources)
        from deepvision.config.reference import config_reference

        p.epilog = config_reference() + "\n\n" + EXAMPLES
        return plain()

    p.format_help = format_help  # type: ignore[method-assign]


def run(args: argparse.Namespace) -> int:
    from deepvision.cli.launch import launch, should_launch

    if should_launch(args.nproc_per_node):
        return launch(args.nproc_per_node, "train", args.argv)
    from deepvision.api import train
    from deepvision.config.io import refuse_flag_with_override
    from deepvision.recipes import resolve_config_arg
    from deepvision.safeload import shell_word

    overrides = list(args.overrides)
    if args.data_root:
        refuse_flag_with_override(f"--data-root {shell_word(args.data_root)}", "data.root", args.data_root, overrides)
        overrides.insert(0, f"data.root={args.data_root}")
    result = train(resolve_config_arg(args.config), overrides, name=args.name, out=args.out)
    _summary(result)
    return 0


def _summary(result) -> None:
    """What `train` and `resume` print last: the run, its best epoch, the checkpoints and their disk use."""
    from deepvision.runs.journal import checkpoint_note

    last = result.last
    if not last or not result.is_main:
        return
    n = last["epoch"]
    head = f"done: {n} epoch{'s' if n != 1 else ''}"
    if result.best_epoch is not None:
        head += f"; best epoch {result.best_epoch}"
    print(head)
    print(f"  run directory: {result.run_dir}")
    if last.get("val_acc") is not None:
        rank5 = f", rank-5 {last['val_top5']:.4f}" if last.get("val_top5") is not None else ""
        print(f"  last epoch: val rank-1 {last['val_acc']:.4f}{rank5}")
    print(checkpoint_note(result.run_dir, indent="  "))
