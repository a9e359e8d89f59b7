"""`deepvision <command>`: dispatch, one-line errors (exit 2) and clean interruption."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from deepvision.version import __version__

# optional modules -> (the pip package, the deepvision extra that installs it)
EXTRAS = {"cv2": ("opencv-python-headless", "records"), "simplejpeg": ("simplejpeg", "records"),
          "h5py": ("h5py", "records"), "tensorboard": ("tensorboard", "tensorboard"), "timm": ("timm", "timm")}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The one-line advice for a missing optional dependency, or None when `exc` is about another module."""
    module = (exc.name or "").split(".")[0]
    if module not in EXTRAS:
        return None
    package, extra = EXTRAS[module]
    return f"this needs {package} (module {module}), which is not installed: pip install 'deepvision[{extra}]'"


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (and exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def build_parser() -> Parser:
    from deepvision.cli import commands

    parser = Parser(prog="deepvision", description="Train, evaluate and deploy convolutional networks.",
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"deepvision {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>", parser_class=Parser)
    names = [m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")]  # _x: helpers
    modules = [importlib.import_module(f"{commands.__name__}.{name}") for name in names]
    for module in sorted(modules, key=lambda m: (getattr(m, "ORDER", 50), m.__name__)):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # what a launcher (--nproc-per-node) hands to its workers
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    from deepvision.engine.signals import StopRequested
    from deepvision.errors import UserError

    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        sys.stderr.write(f"deepvision {args.command}: error: {exc}\n")
        return 2
    except StopRequested as stop:
        if os.environ.get("RANK", "0") == "0":  # under DDP every rank stops; rank 0 speaks
            from deepvision.cli.launch import resume_hint

            n = stop.epochs_done
            done = f"after {n} completed epoch{'s' if n != 1 else ''}" if n else "before any epoch completed"
            again = "resume" if stop.epochs_done else "start it again"
            hint = resume_hint(stop.run_dir)
            nodes = "  on every node, with its rendezvous options for ...\n" if " ... " in hint else ""
            sys.stderr.write(f"training stopped {done}; {again} with:\n  {hint}\n{nodes}")
        return stop.exit_code
    except ModuleNotFoundError as exc:
        advice = missing_extra(exc)
        if advice is None:
            raise
        sys.stderr.write(f"deepvision {args.command}: error: {advice}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a file system problem no check anticipated: still one line, exit 2
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        sys.stderr.write(f"deepvision {args.command}: error: {where}{exc.strerror or exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
