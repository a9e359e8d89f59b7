"""deepvision plot"""

from __future__ import annotations

import argparse

ORDER = 30


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="regenerate a run's loss/accuracy plots from history.csv",
                       description="Regenerate RUN_DIR/plots/loss.png and accuracy.png, the same figures training "
                                   "writes: train vs val, the learning rate in a panel below when it changes, "
                                   "dashed lines at its steps (piecewise boundaries, manual changes on resume).")
    p.add_argument("run_dir", help="run directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import textwrap

    from deepvision.errors import UserError
    from deepvision.runs.plots import plot_run, unplotted_note
    from deepvision.runs.rundir import RunDir

    run_dir = RunDir.open(args.run_dir)
    history = run_dir.read_history()
    if not history:
        raise UserError(f"{run_dir.history_path} holds no completed epoch yet")
    for path in plot_run(run_dir, history):
        print(path)
    note = unplotted_note(history)
    if note:  # a diverged epoch never vanishes without a word
        print(textwrap.fill(note, 80, subsequent_indent="  ", break_on_hyphens=False))
    return 0
