"""deepvision runs"""

from __future__ import annotations

import argparse

ORDER = 31


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="the experiment journal: one row per run",
                       description="List every run under DIR: model, data, epochs, the learning-rate schedule "
                                   "actually used (by epoch range), best/last val rank-1 and rank-5, seconds "
                                   "per epoch and samples/s. Also writes DIR/journal.csv.")
    p.add_argument("dir", nargs="?", default="runs", help="folder holding run directories (default: runs)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--markdown", action="store_true", help="print the reference-style markdown table")
    fmt.add_argument("--csv", action="store_true", help="print CSV")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import contextlib
    from pathlib import Path

    from deepvision.engine.checkpoint import atomic_write_text
    from deepvision.errors import UserError
    from deepvision.runs.journal import journal, print_table, to_csv, to_markdown

    rows = journal(args.dir)
    with contextlib.suppress(UserError, OSError):  # a read-only folder still gets its table printed
        atomic_write_text(Path(args.dir) / "journal.csv", to_csv(rows))
    if args.markdown:
        print(to_markdown(rows), end="")
    elif args.csv:
        print(to_csv(rows), end="")
    else:
        print_table(rows)
    return 0
