"""deepvision import FORMAT ...: bring a model trained elsewhere in as a run directory.

Each format is one module in `deepvision.cli.importers` exposing `FORMAT` (the sub-command name),
`HELP` and `register(subparsers)`; adding a format is adding a module there.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil

ORDER = 40


def register(sub: argparse._SubParsersAction) -> None:
    from deepvision.cli import importers

    modules = [importlib.import_module(f"{importers.__name__}.{m.name}")
               for m in pkgutil.iter_modules(importers.__path__)]
    modules.sort(key=lambda m: m.FORMAT)
    p = sub.add_parser("import", help="import a model trained elsewhere as a run "
                                      f"({', '.join(m.FORMAT for m in modules)})",
                       description="Import a checkpoint written by another framework into a deepvision run "
                                   "directory that predict, evaluate, export, serve and fine-tuning accept.")
    formats = p.add_subparsers(dest="format", metavar="<format>", parser_class=type(p))
    for module in modules:
        module.register(formats)
    p.set_defaults(func=lambda args: _missing_format(p))


def _missing_format(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2
