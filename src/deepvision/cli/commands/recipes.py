"""deepvision recipes"""

from __future__ import annotations

import argparse

ORDER = 12


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recipes", help="list the shipped experiment recipes with their reference results",
                       description="List the shipped recipes (the reference experiments) with model, epochs, "
                                   "learning-rate schedule and published results; `recipes show NAME` prints one. "
                                   "Run one with `deepvision train NAME --data-root DIR`.")
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("name", nargs="?", help="recipe to show")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from deepvision.errors import UserError
    from deepvision.recipes import recipe_names, recipe_path, show_recipe_path

    if args.action == "show":
        if not args.name:
            raise UserError("recipes show needs a recipe name; see `deepvision recipes`")
        print(show_recipe_path(args.name).read_text(), end="")
        return 0
    import shutil
    import textwrap

    from deepvision.config.io import load_config
    from deepvision.engine.schedules import Schedule
    from deepvision.runs.history import describe_lrs

    width = min(shutil.get_terminal_size().columns, 80)
    lines = ["deepvision recipes  (deepvision train NAME --data-root DIR; recipes show NAME)", ""]
    for name in recipe_names():
        cfg = load_config(recipe_path(name))
        sched = Schedule(cfg.schedule, cfg.optim.lr, cfg.train.epochs)
        epochs = range(cfg.train.epochs)
        lrs = cfg.schedule.name if sched.per_iteration else describe_lrs([sched(e) for e in epochs])
        ref = cfg.reference
        val, test = _published(ref, "val"), _published(ref, "test")
        batch = cfg.train.global_batch or cfg.data.batch_size
        # lines break only between facts (and schedule ranges), never inside "1-120: 0.0001" or "val 82.48 / 96.38"
        ranges = f"lr {lrs}".split("; ")
        atoms = [f"{cfg.model.name} on {cfg.data.source},", f"{cfg.train.epochs} epochs,", f"batch {batch},",
                 *[r + ";" for r in ranges[:-1]], ranges[-1]]
        if (val, test) != ("-", "-"):
            atoms[-1] += ";"
            atoms += ["reference", f"val {val},", f"test {test}"]
        text = " ".join(a.replace(" ", "\0") for a in atoms)
        lines.append(name)
        lines += [line.replace("\0", " ") for line in textwrap.wrap(text, width, initial_indent="  ",
                                                                     subsequent_indent="    ", break_long_words=False)]
    print("\n".join(lines))
    return 0


def _published(ref: dict, split: str) -> str:
    """'r1 / r5', 'r1' alone, with the one-off accuracy when published (Adience age), or the plain accuracy."""
    r1, r5, one_off = ref.get(f"{split}_rank1"), ref.get(f"{split}_rank5"), ref.get(f"{split}_one_off")
    if r1 is None:
        return str(ref.get(f"{split}_acc", "-"))
    text = f"{r1} / {r5}" if r5 is not None else str(r1)
    return f"{text} (one-off {one_off})" if one_off is not None else text
