"""`deepvision <command>`: dispatch, one-line errors (exit 2) and clean interruption.

Why one module of ~430 lines: the parser's rules for every option (numbers in ASCII digits, empty values, names
that print as others) and the one path every error and stop takes to its single line are the contract of every
command; split up, a command could be reached by a path that skips part of it.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import os
import pkgutil
import shutil
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

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


HELP_WIDTH = 80  # --help never needs a wider terminal


def out_of_memory(exc: BaseException) -> str | None:
    """The one-line cause when `exc` is the machine or the GPU running out of memory, else None: a
    DataLoader worker re-raises Python's MemoryError, PyTorch's allocators raise RuntimeErrors."""
    torch = sys.modules.get("torch")
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    whole = str(exc)
    if isinstance(exc, RuntimeError) and "</torch_" in whole and "unable to" in whole:  # a worker's batch file
        reason = next((r for r in ("File too large", "No space left on device") if r in whole), "cannot write it")
        return (f"the data loader's worker processes could not hand a batch over ({reason}: PyTorch passes it in a "
                f"shared-memory file, which the file size limit (ulimit -f) or the space of /dev/shm bounds); raise "
                f"them (training: --set data.workers=0 loads in one process)")
    if isinstance(exc, MemoryError):
        where = "this machine's memory"
    elif torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError):
        where = "the GPU's memory"
    elif isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text):
        where = "memory"
    else:
        return None
    detail = f" ({text})" if text else ""
    return f"out of {where}{detail}; use a smaller batch size or input size, or free memory"


def _storage_error_in(exc: BaseException) -> str | None:
    """The one line for an error whose cause is a full disk or a file size limit (a library wraps the OSError:
    joblib's "Could not pickle the task" when its worker hand-over file cannot be written), else None."""
    import errno

    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        # a worker's OSError comes back as the text of its traceback (joblib's _RemoteTraceback)
        found = next((os.strerror(e) for e in (errno.ENOSPC, errno.EFBIG) if f"[Errno {e}] " in str(cause)), None)
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EFBIG):
            found = cause.strerror
        if found:
            return (f"{found} while handing data to worker processes or writing a temporary file (the disk holding "
                    f"the temporary folder is full, or the file size limit, ulimit -f, is below it); free space or "
                    f"raise the limit")
        cause = cause.__cause__ or cause.__context__
    return None


def _writing_under(args: argparse.Namespace, exc: OSError) -> str:
    """Where a full disk or a file size limit struck when the OSError names no file (a write() to an open
    file): the command's output, `--out`, else nothing."""
    import errno

    out = getattr(args, "out", None)
    return f"writing under {out}: " if out and exc.errno in (errno.ENOSPC, errno.EFBIG) else ""


def fit_lines(text: str, width: int = HELP_WIDTH) -> str:
    """`text` with every line wrapped to `width` columns: prose keeps its indentation, an example's
    trailing `# comment` moves to the next line, and long commands continue indented."""
    out: list[str] = []
    for line in text.splitlines():
        if len(line) <= width:
            out.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())]
        code, sep, comment = line.partition("  # ")
        if sep and code.strip() and len(code.rstrip()) <= width:
            out.append(code.rstrip())
            out += textwrap.wrap(f"# {comment.strip()}", width, initial_indent=indent + "  ",
                                 subsequent_indent=indent + "  # ", break_on_hyphens=False)
            continue
        example = line.lstrip().startswith("deepvision ")
        out += textwrap.wrap(line.strip(), width, initial_indent=indent,
                             subsequent_indent=indent + ("    " if example else ""), break_on_hyphens=False,
                             break_long_words=False)
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


class _StoreOnce(argparse._StoreAction):
    """argparse's `store`, refusing an option given twice: the last value won, so `--image a.jpg --image
    b.jpg` looked at b.jpg alone without a word."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if (option_string is not None and getattr(self, "_given_in", None) is namespace
                and getattr(namespace, self.dest) != values):
            shown = ", then ".join(repr(str(v)) for v in (getattr(namespace, self.dest), values))
            raise argparse.ArgumentError(self, f"given twice ({shown}); give it once")
        self._given_in = namespace
        super().__call__(parser, namespace, values, option_string)


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (and exit code 2), a did-you-mean for mistyped commands
    and choices, an option given twice refused, and help that fits 80 columns."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", None, _StoreOnce)
        self.register("action", "store", _StoreOnce)

    def error(self, message: str) -> None:  # type: ignore[override]
        from deepvision.safeload import printable  # an argument holding a line break stays on the one line

        sys.stderr.write(f"{self.prog}: error: {printable(message)} (see {self.prog} --help)\n")
        raise SystemExit(2)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        parsed, extras = super().parse_known_args(args, namespace)
        if not hasattr(parsed, "_command_parser"):  # the innermost parser returns first: it names the command
            parsed._command_parser = self
        return parsed, extras

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:  # named by the command that did not know them, with its own help
            parsed._command_parser.error(f"unrecognized arguments: {' '.join(extras)}")
        parsed.command_prog = parsed._command_parser.prog  # "deepvision models show": refusals name it as argparse does
        del parsed._command_parser
        return parsed

    def _get_value(self, action: argparse.Action, arg_string: str) -> Any:
        from deepvision.safeload import is_control, is_plain_number_text, printable

        parser = isinstance(action, argparse._SubParsersAction)  # it is handed every remaining argument
        if not parser and not arg_string.strip():  # `--out ''` read as "not given" wrote the default
            raise argparse.ArgumentError(action, "an empty value; give one" + (", or leave the option out"
                                                                              if action.option_strings else ""))
        name = os.path.basename(arg_string.rstrip("/"))
        if action.dest in ("out", "prefix") and (any(map(is_control, name)) or name != name.strip()):  # a new name
            raise argparse.ArgumentError(action, f"{printable(repr(arg_string))}: a name holding a control character "
                                                 f"or surrounding spaces prints as another; choose a plain name")
        if action.type in (int, float) and not is_plain_number_text(arg_string):
            kind = "a whole number" if action.type is int else "a number"  # int() reads '٣' as 3, '1_0' as 10
            raise argparse.ArgumentError(action, f"must be {kind} in ASCII digits, got {arg_string[:24]!r}")
        return super()._get_value(action, arg_string)

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        choices = action.choices
        if choices is None or value in choices:
            return
        names = [str(c) for c in choices]
        close = difflib.get_close_matches(str(value), names, n=3, cutoff=0.6)
        if isinstance(action, argparse._SubParsersAction):
            hint = f" (did you mean {' or '.join(close)}?)" if close else f"; commands: {', '.join(names)}"
            raise argparse.ArgumentError(None, f"unknown command '{value}'{hint}")
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise argparse.ArgumentError(action, f"invalid choice: '{value}' ({hint}choose from {', '.join(names)})")

    def _get_formatter(self) -> argparse.HelpFormatter:
        columns = min(shutil.get_terminal_size().columns, HELP_WIDTH)
        return self.formatter_class(prog=self.prog, width=columns - 2)

    def format_help(self) -> str:
        return fit_lines(super().format_help())

    def format_usage(self) -> str:
        return fit_lines(super().format_usage())


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


# Commands that compute on the CPU besides training (train, resume and demo fit their threads in the trainer):
# they run on the cores other processes leave free, as training does (engine/threads.py).
COMPUTING = frozenset({"agegender", "cars", "classify", "detect", "emotion", "evaluate", "export", "features",
                       "orientation", "predict", "serve", "stl10"})


class HeldNote:
    """A note for stderr held back until the command writes its first output (through `wrap`ped streams)
    or ends well, and dropped when it ends in a refusal: a refusal stays one line."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.note = stream, ""

    def release(self) -> None:
        note, self.note = self.note, ""
        if note:
            self.stream.write(note + "\n")

    def drop(self) -> None:
        self.note = ""

    def wrap(self, stream: Any) -> Any:
        return _ReleasingStream(stream, self)


class _ReleasingStream:
    """`stream`, releasing a HeldNote before the first text written through it."""

    def __init__(self, stream: Any, held: HeldNote) -> None:
        self._stream, self._held = stream, held

    def write(self, text: str) -> int:
        if text and self._held.note:
            self._held.release()
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def fit_threads(args: argparse.Namespace, held: HeldNote) -> int | None:
    """Apply the training thread policy to a computing command on the CPU; returns the thread count to
    restore afterwards (None when nothing was changed). The note, when threads were lowered, is held in
    `held` for stderr, so that stdout (JSON, tables) stays clean and a refusal stays one line."""
    if args.command not in COMPUTING:
        return None
    import torch

    from deepvision.engine.threads import fit_threads_to_load

    device = str(getattr(args, "device", None) or "auto")
    on_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    previous, note = fit_threads_to_load(torch.device("cpu" if on_cpu else "cuda"), what=f"running {args.command}")
    held.note = note or ""
    return previous


# Every command runs with SIGTERM raised as an exception, so that atomic writers remove their temporary files as
# on Ctrl+C (training installs its graceful stop over it while epochs run; serve's server its own while it serves).
NO_FILES = frozenset({"train", "resume", "demo", "serve"})  # no unfinished files to speak of


def terminated_line(args: argparse.Namespace, exc: BaseException) -> str:
    """The one line a command stopped by SIGTERM prints (what was cleaned up: the exception's own words)."""
    what = str(exc) or ("" if args.command in NO_FILES else "unfinished files were removed")
    return f"{args.command_prog}: terminated (SIGTERM){'; ' + what if what else ''}\n"


MAX_SEED = 2**32 - 1  # what every generator a seed reaches takes (NumPy, scikit-learn, PyTorch)


def check_seed(args: argparse.Namespace) -> None:
    """Every command's --seed is checked here, once: NumPy refuses a negative seed with a traceback."""
    from deepvision.errors import UserError

    seed = getattr(args, "seed", None)
    if isinstance(seed, int) and not 0 <= seed <= MAX_SEED:
        raise UserError(f"--seed must be a whole number from 0 to {MAX_SEED:,}, got {seed}")


def check_environment() -> None:
    """Refuse a bad ceiling or yes/no word set in the environment before any work: read later, deep in a reader, its
    error would seem to be about the file being read."""
    from deepvision.safeload import env_flag, max_image_side, max_read_bytes
    from deepvision.safeload.images import max_image_pixels

    max_image_side(), max_read_bytes(), max_image_pixels(), env_flag("DEEPVISION_OFFLINE")


@contextlib.contextmanager
def stops_unchained() -> Iterator[None]:
    """An error raised from a stop (Ctrl+C, SIGTERM) raised as that stop: a compiled extension imported when the
    signal lands turns it into "ImportError: initialization failed", which would end in a traceback."""
    from deepvision.engine.signals import StopRequested
    from deepvision.errors import chained_stop

    try:
        yield
    except Exception as exc:
        stop = None if isinstance(exc, StopRequested) else chained_stop(exc)  # training's stop speaks for itself
        if stop is None:
            raise
        raise stop from None


def main(argv: list[str] | None = None) -> int:
    # The SIGTERM rule comes first, before the command modules and torch are imported: a SIGTERM while they load
    # ends in the one line too.
    from deepvision.cli.terminate import sigterm_raises
    from deepvision.errors import Terminated

    ends_process = argv is None  # the console script: once stopped, further signals stay ignored to the end
    argv = list(sys.argv[1:] if argv is None else argv)
    args = None
    try:
        with sigterm_raises(keep_ignored=ends_process):
            parser = build_parser()
            args = parser.parse_args(argv)
            args.argv = argv  # what a launcher (--nproc-per-node) hands to its workers
            if not getattr(args, "func", None):
                parser.print_help()
                return 0 if args.command is None else 2
            return run_command(args)
    except Terminated as exc:  # before the command started, or while its own ending was written
        if os.environ.get("RANK", "0") == "0":
            words = argv[:1] if argv and not argv[0].startswith("-") else []
            prog = getattr(args, "command_prog", None) or " ".join(["deepvision", *words])
            sys.stderr.write(f"{prog}: terminated (SIGTERM){'; ' + str(exc) if str(exc) else ''}\n")
        return Terminated.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command: its errors and stops end in one line and their exit code."""
    from deepvision.cli.output import clip_message
    from deepvision.engine.signals import StopRequested
    from deepvision.errors import Terminated, UserError

    threads = None
    held = HeldNote(sys.stderr)
    streams = sys.stdout, sys.stderr
    try:
        with stops_unchained():
            check_seed(args)
            check_environment()
            threads = fit_threads(args, held)
            if held.note:
                sys.stdout, sys.stderr = held.wrap(sys.stdout), held.wrap(sys.stderr)
            return int(args.func(args) or 0)
    except UserError as exc:
        from deepvision.fileio import public_names  # a file in a hidden work folder named where it lands
        from deepvision.safeload import printable  # a name from a file or the command line, escaped

        held.drop()
        sys.stderr.write(f"{args.command_prog}: error: {clip_message(public_names(printable(exc)))}\n")
        return 2
    except StopRequested as stop:
        if os.environ.get("RANK", "0") == "0":  # under DDP every rank stops; rank 0 speaks
            from deepvision.cli.launch import resume_hint

            n = stop.epochs_done
            done = f"after {n} completed epoch{'s' if n != 1 else ''}" if n else "before any epoch completed"
            if stop.complete:
                sys.stderr.write(f"training stopped as it ended, {done}: the run is complete ({stop.run_dir})\n")
                return stop.exit_code
            if stop.unscored:  # nothing is left to train: a resume would be refused
                sys.stderr.write(f"training stopped {done}, before the test split was scored; score it with:\n"
                                 f"  deepvision evaluate {stop.run_dir}\n")
                return stop.exit_code
            again = "resume" if stop.epochs_done else "start it again"
            hint = resume_hint(stop.run_dir)
            nodes = "  on every node, with its rendezvous options for ...\n" if " ... " in hint else ""
            sys.stderr.write(f"training stopped {done}; {again} with:\n  {hint}\n{nodes}")
        return stop.exit_code
    except (ModuleNotFoundError, MemoryError, RuntimeError) as exc:  # a missing extra, or memory run out
        advice = missing_extra(exc) if isinstance(exc, ModuleNotFoundError) else \
            out_of_memory(exc) or _storage_error_in(exc)
        if advice is None:
            raise
        held.drop()
        sys.stderr.write(f"{args.command_prog}: error: {clip_message(advice)}\n")
        return 2
    except Terminated as exc:
        if os.environ.get("RANK", "0") == "0":
            sys.stderr.write(terminated_line(args, exc))
        return Terminated.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a file system problem no check anticipated: still one line, exit 2
        from deepvision.fileio import public_names

        held.drop()
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else _writing_under(args, exc)
        sys.stderr.write(f"{args.command_prog}: error: {clip_message(public_names(f'{where}{exc.strerror or exc}'))}\n")
        return 2
    except Exception as exc:  # a library's error caused by a full disk or a file size limit (joblib's hand-over)
        full = _storage_error_in(exc)
        if full is None:
            raise
        held.drop()
        sys.stderr.write(f"{args.command_prog}: error: {clip_message(full)}\n")
        return 2
    finally:
        held.release()  # a crash or an interruption still tells how many threads it ran on
        sys.stdout, sys.stderr = streams
        if threads is not None:  # a caller in the same process (a test, a notebook) keeps its own setting
            import torch

            torch.set_num_threads(threads)


if __name__ == "__main__":
    sys.exit(main())
