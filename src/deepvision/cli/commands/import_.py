"""deepvision import: weights from other frameworks (`import keras`)."""

from __future__ import annotations

import argparse

ORDER = 26


def register(sub: argparse._SubParsersAction) -> None:
    from deepvision.cli.commands._import_keras import register_keras

    p = sub.add_parser("import", help="turn another framework's trained weights into a deepvision run",
                       description="Import trained weights from another framework into a deepvision run directory "
                                   "that predict, evaluate and the applications accept.")
    cmds = p.add_subparsers(dest="import_command", metavar="<framework>")
    register_keras(cmds)
    p.set_defaults(func=lambda args: p.print_help() or 0)
