"""File-kind and size checks for inputs from outside: regular files only (a FIFO or device is named,
never opened), whole-file reads bounded by the file's size before anything is read, and the ceilings on
declared sizes (bytes one read may take, pixels an image side may have)."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO, TypeVar

from deepvision.errors import UserError
from deepvision.fileio import (  # re-exported: IMAGE_EXTS, input_file, tree_entries
    IMAGE_EXTS,
    file_id,
    input_file,
    read_regular_file,
    special_kind,
    tree_entries,
)

T = TypeVar("T")

MAX_IMAGE_SIDE = 16384  # default ceiling for an image side named in metadata; DEEPVISION_MAX_IMAGE_SIDE overrides


def regular_file(path: str | Path, what: str = "file") -> Path:
    """`path` if it is a regular file (following symlinks); UserError for a missing path, a folder, a FIFO
    or a device, checked before anything opens it (opening a FIFO blocks until a writer appears)."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise UserError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    kind = special_kind(mode)
    if kind is not None:
        raise UserError(f"{what} {path} is {kind}, not a regular file; give a regular file")
    return path


def bare_name_here(name: str) -> str | None:
    """'file' or 'folder' when `name`, a bare word (no folder part), is also something in the working folder;
    else None. Where a word may name a built-in thing (a shipped recipe, a run's split) or a path, a word that is
    both is refused: which one was meant, the word does not say (./NAME names the path)."""
    if "/" in name or os.sep in name or not os.path.lexists(name):
        return None
    return "folder" if os.path.isdir(name) else "file"


def refuse_name_and_file(arg: str, known: str, fix: str, folders: bool = True) -> None:
    """UserError when `arg`, a bare word that is `known` ("a torchvision weights tag"), also names a file in the
    working directory (or a folder, unless `folders` is False: where a file is wanted, a folder is no rival):
    which one was meant, the word does not say. `fix` ends the message ("or torchvision:TAG for the weights")."""
    kind = bare_name_here(arg)
    if kind and (folders or kind == "file"):
        raise UserError(f"'{arg}' is {known} and a {kind} in this folder; give ./{arg} for the {kind}, {fix}")


def image_files(folder: str | Path, exts: Iterable[str] = IMAGE_EXTS, recursive: bool = True) -> list[Path]:
    """The files under `folder` (every level with `recursive`, linked folders followed: see `tree_entries`)
    whose suffix is in `exts`, sorted, hidden files and folders left out. A FIFO, socket, device or broken link
    named like an image is refused, never opened and never skipped without a word (the user meant it as an
    image)."""
    folder, exts = Path(folder), {e.lower() for e in exts}
    return [f for f in (tree_entries(folder, hidden=False) if recursive else sorted(folder.iterdir()))
            if f.suffix.lower() in exts and not any(p.startswith(".") for p in f.relative_to(folder).parts)
            and is_image_file(f, folder)]


def is_image_file(path: str | Path, folder: str | Path) -> bool:
    """True when `path`, an entry of `folder` named like an image, is a regular file (links followed), False for a
    folder (a folder named like an image is a folder). A FIFO, socket, device or broken link is refused naming it:
    never opened (a FIFO would block) and never left out without a word (the user meant it as an image)."""
    try:
        kind = special_kind(os.stat(path).st_mode)
    except OSError:
        kind = "a broken link"
    if kind not in (None, "a directory"):
        raise UserError(f"{path} is {kind}, not an image file; remove it from {folder} (only regular "
                        f"files are read as images)")
    return kind is None


def first_repeat(entries: Iterable[tuple[object, T]], seen: dict[object, T]) -> tuple[T, T] | None:
    """(the value first met, this value) for the first `(key, value)` entry whose key `seen` already holds
    (it collects keys across calls, such as file identities) with another value (an equal value is the same
    entry met again), None otherwise: the one rule behind "one image, one record", which each caller words
    for its own input."""
    for key, value in entries:
        first = seen.setdefault(key, value)
        if first != value:
            return first, value
    return None


def image_identity(path: str | Path) -> object:
    """What tells one image file from another: (device, inode), links followed, where the file exists, else its
    resolved path (case folded where the system folds it). Two names of one identity are one image."""
    try:
        return file_id(path) or os.path.normcase(os.path.realpath(path))
    except ValueError:  # a NUL in the name (a hand-edited list): no file has it, the name alone tells it apart
        return os.path.normcase(os.path.abspath(path))


def by_name_any_case(paths: Iterable[Path], key: Callable[[Path], str | None], what: str) -> dict[str, Path]:
    """`paths` by `key(path)`, the name with the case that does not tell entries apart folded away (Train.txt
    and train.TXT as 'train'; a path whose key is None is left out): the rule for files and folders a dataset
    names by their spelling (Labels/, Fold_0_data.txt). Two spellings of one key, told apart on case-sensitive
    systems, are refused naming both: reading one would leave the other out without a word. `what` names the
    kind of entry."""
    found: dict[str, Path] = {}
    for path in sorted(paths):
        name = key(path)
        if name is None:
            continue
        first = found.setdefault(name, path)
        if first != path:
            raise UserError(f"{first.parent} holds both {first.name} and {path.name}, two spellings of one {what}; "
                            f"keep one of them")
    return found


def any_case(folder: str | Path, name: str, what: str) -> Path:
    """`folder/name` spelled in any case (`Labels` for `labels`), as found in `folder`; `folder/name` itself
    when no entry has that name (or `folder` is no folder). Two spellings are refused (see `by_name_any_case`)."""
    folder = Path(folder)
    try:
        entries = [p for p in folder.iterdir() if p.name.casefold() == name.casefold()]
    except OSError:
        entries = []
    return by_name_any_case(entries, lambda p: p.name.casefold(), what).get(name.casefold(), folder / name)


def refuse_linked_files(paths: Iterable[str | Path], seen: dict[object, Path], what: str) -> None:
    """UserError naming both paths when one of `paths` is a file already met (in `seen`, which collects
    them across calls): a symbolic or hard link to it, compared by file identity (device, inode), would put
    one image under two names, in two classes or two splits. `what` says where the paths come from."""
    repeat = first_repeat(((file_id(p) or object(), Path(p)) for p in paths), seen)
    if repeat is not None:
        first, path = repeat
        raise UserError(f"{path} and {first} are one file (a link): {what} would hold one image twice; "
                        f"remove the link or copy the image")


MAX_JSON_FILE_BYTES = 2 * 10**9  # COCO's instances_train2017.json is 448 MB
MAX_YAML_FILE_BYTES = 64 * 2**20  # configs and dataset descriptions are a few kB


def check_file_size(path: str | Path, what: str, max_bytes: int) -> int:
    """The size of the file at `path` (from stat, nothing is read); UserError naming the size and
    `max_bytes` when it is larger (a sparse 8 GB file where a small one belongs). FileNotFoundError
    when it is absent, so callers can tell "absent" from "damaged"."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise UserError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    if size > max_bytes:
        raise UserError(f"{what} {path} holds {format_bytes(size)}, more than the {format_bytes(max_bytes)} "
                        f"such a file may hold")
    return size


def read_bytes(path: str | Path, what: str = "file", max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file (fileio.read_regular_file: a FIFO or device is refused, never waited on).
    FileNotFoundError when it is absent, so callers can tell "absent" from "damaged"; UserError otherwise.
    `max_bytes`: a larger file is refused from its size, before anything is read (`check_file_size`)."""
    if max_bytes is not None:
        check_file_size(path, what, max_bytes)
    try:
        return read_regular_file(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise UserError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None


MAX_TEXT_BYTES = 64 * 2**20  # a list of class names: 1,048,576 names of 64 characters


def read_text_file(path: str | Path, what: str = "file", max_bytes: int = MAX_TEXT_BYTES) -> str:
    """A small UTF-8 text file given by the user (a labels list): UserError when it is missing, not a
    regular file, larger than `max_bytes` (checked from its size before reading: a sparse 8 GB file
    never reaches memory) or not UTF-8."""
    path = input_file(path, what)
    try:
        return read_bytes(path, what, max_bytes).decode("utf-8-sig")  # a byte-order mark is dropped
    except UnicodeDecodeError as exc:
        raise UserError(f"{what} {path} is not UTF-8 text (byte {exc.start:,})") from None
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None


def read_declared(f: BinaryIO, declared: int, where: str | Path) -> bytes:
    """Exactly the `declared` bytes a header announced (already checked against the ceiling) from the open
    stream `f`, and nothing after them: UserError naming `where` when the stream ends sooner (truncated) or
    goes on (data no header describes). A compressed stream is inflated no further than one byte past."""
    data = f.read(declared)
    if len(data) < declared:
        raise UserError(f"{where} is truncated: header promises {declared} bytes of data, file holds {len(data)}")
    if f.read(1):
        raise UserError(f"{where} holds more data than its header declares ({declared:,} bytes); the file is "
                        f"damaged or crafted")
    return data


def is_plain_number_text(text: str) -> bool:
    """Whether `text` could be a number as written in ASCII: int() and float() also read digit separators
    ('1_0' is 10) and other scripts' digits (a full-width '１' is 1, '٣' is 3)."""
    return text.isascii() and "_" not in text


def plain_float(text: str) -> float:
    """float(text) for a number read from a text file, refusing what float() reads beyond ASCII numbers
    (`is_plain_number_text`); ValueError otherwise."""
    if not is_plain_number_text(text):
        raise ValueError(f"not a plain number: {text!r}")
    return float(text)


def env_number(name: str, what: str, least: float, most: float, whole: bool = False) -> float | None:
    """The number from `least` to `most` an environment variable sets (None when unset or empty), written as
    a plain ASCII number (not `1_0`, not another script's digits) and, with `whole`, with no fraction."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = plain_float(raw)
    except ValueError:
        value = math.nan
    if not least <= value <= most or (whole and not value.is_integer()):  # NaN fails the range
        shown = [f"{int(v):,}" if float(v).is_integer() else f"{v:g}" for v in (least, most)]
        raise UserError(f"the environment variable {name} must be a {what} from {shown[0]} to {shown[1]}, got "
                        f"{raw[:24]!r}")
    return value


ENV_YES = ("1", "true", "yes", "on")
ENV_NO = ("0", "false", "no", "off", "")


def env_flag(name: str) -> bool:
    """The yes/no an environment variable sets (False when unset): 1/true/yes/on or 0/false/no/off/empty, in
    any case; any other word is refused rather than guessed."""
    raw = os.environ.get(name, "").strip()
    if raw.lower() in ENV_YES + ENV_NO:
        return raw.lower() in ENV_YES
    raise UserError(f"the environment variable {name} must be one of {'/'.join(ENV_YES)} (on) or "
                    f"{'/'.join(ENV_NO[:-1])} or empty (off), in any case, got {raw[:24]!r}")


def max_image_side() -> int:
    """The largest image side (pixels) that metadata may name: DEEPVISION_MAX_IMAGE_SIDE, else 16384."""
    value = env_number("DEEPVISION_MAX_IMAGE_SIDE", "whole number of pixels", 1, 2**31 - 1, whole=True)
    return MAX_IMAGE_SIDE if value is None else int(value)


def check_image_side(field: str, *sides: int) -> None:
    """UserError naming `field` unless every side is between 1 and the `max_image_side()` ceiling."""
    ceiling = max_image_side()
    shown = "x".join(str(s) for s in sides)
    if any(s < 1 for s in sides):
        raise UserError(f"{field} {shown} must be positive")
    if any(s > ceiling for s in sides):
        raise UserError(f"{field} {shown} exceeds the ceiling of {ceiling} pixels a side "
                        f"(DEEPVISION_MAX_IMAGE_SIDE raises it)")


MAX_FAKE_SIDE = 2048  # fake-data generators: real ImageNet/Cars/Adience photos are mostly under 500 px
MAX_FAKE_IMAGES = 20_000  # images one fake data set may hold: tests and demos, never a real data set's size


def check_range(option: str, value: object, low: int, high: int | None = None) -> int:
    """`value` if it is a whole number (an int, not a bool) from `low` to `high` (None: no upper bound);
    UserError naming `option` otherwise. The one rule for whole-number arguments, sizes and counts, on
    the command line and in the Python API alike (a string or a float is refused, never formatted or
    compared), checked before anything is allocated or written."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"from {low:,} to {high:,}" if high is not None else f"at least {low:,}"
        raise UserError(f"{option} must be a whole number{',' if high is None else ''} {bound}, "
                        f"got {shown_value(value)}")
    return value


MAX_WORKERS = 1024  # worker processes one command may start (one per image at most): more only exhausts the machine


def check_workers(option: str, value: object) -> int:
    """`value` if it is a worker-process count from 1 to MAX_WORKERS; UserError naming `option` otherwise,
    before any process starts."""
    check_range(option, value, 1)
    if value > MAX_WORKERS:
        raise UserError(f"{option} must be at most {MAX_WORKERS:,} (one process each), got {value:,}")
    return value


def check_choice(option: str, value: object, choices: Iterable[int]) -> int:
    """`value` if it is one of the whole numbers `choices` (an int, not a bool); UserError naming
    `option`, the choices and what was given (with its type when it is not an int) otherwise."""
    choices = list(choices)
    if isinstance(value, bool) or not isinstance(value, int) or value not in choices:
        listed = ", ".join(map(str, choices[:-1])) + f" or {choices[-1]}" if len(choices) > 1 else str(choices[0])
        raise UserError(f"{option} must be {listed}, got {shown_value(value)}")
    return value


def shown_value(value: object) -> str:
    """A wrong argument as a message shows it: its repr, with its type where an int was expected and
    something else came ('10' (a str), 4.0 (a float), True (a bool)), so a string never looks valid."""
    if isinstance(value, int) and not isinstance(value, bool):
        return repr(value) if value.bit_length() <= 200 else f"a {value.bit_length():,}-bit number"
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    name = type(value).__name__
    return f"{text} ({'an' if name[:1] in 'aeiouAEIOU' else 'a'} {name})"


def check_numbers(field: str, values: Iterable[object]) -> None:
    """UserError naming `field` unless every value is a number (a string such as "0.5" is not, nor is true)."""
    import numbers

    for v in values:
        if isinstance(v, bool) or type(v).__name__ == "bool_" or not isinstance(v, numbers.Real):
            raise UserError(f"{field} must be numbers, got {shown_value(v)}")


def first_not_whole(values: object, allowed: tuple[int, ...] | None = None) -> object:
    """The first item of the list `values` that is not a whole number (one of `allowed`, when given: then
    JSON's true and false count as 1 and 0), else None; `values` itself when it is not a list."""
    if not isinstance(values, list):
        return values
    for v in values:
        number = isinstance(v, int) and (allowed is not None or not isinstance(v, bool))
        if not number or allowed is not None and v not in allowed:
            return v
    return None


def check_fake_images(total: int, options: str) -> None:
    """UserError unless a fake data set of `total` images (as `options` ask) stays within MAX_FAKE_IMAGES."""
    if total > MAX_FAKE_IMAGES:
        raise UserError(f"{options} ask for {total:,} images; a fake data set holds at most {MAX_FAKE_IMAGES:,}")


def max_read_bytes() -> int:
    """The most bytes one declared array may ask for: DEEPVISION_MAX_READ_GB (decimal GB), else the memory
    this process may use: the machine's physical memory, or less where an address-space limit
    (`ulimit -v`, prlimit) or the container's memory limit (cgroup v2 memory.max) says so."""
    value = env_number("DEEPVISION_MAX_READ_GB", "number of gigabytes", 1e-9, 1e9)  # a byte to an exabyte
    if value is not None:
        return int(value * 1e9)
    try:
        limits = [os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")]
    except (ValueError, OSError, AttributeError):  # not on this platform
        limits = [16 * 10**9]
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY and soft > 0:
            limits.append(soft)
    with contextlib.suppress(ValueError, OSError):
        cgroup = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if cgroup.isdigit():
            limits.append(int(cgroup))
    return min(limits)


def format_bytes(n: float) -> str:
    """1234567 -> '1.2 MB' (decimal units)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def check_declared_bytes(field: str, declared: int, stored: int | None = None, max_ratio: float = 1.0,
                         ceiling: bool = True) -> None:
    """UserError naming `field` when an array's declared size exceeds what its file stores (`stored` bytes,
    times `max_ratio` for compressed storage) or, with `ceiling` (an array read whole), the `max_read_bytes()`
    ceiling; checked before reading."""
    if stored is not None and declared > stored * max_ratio:
        more = f" (compressed more than {max_ratio:g}:1)" if max_ratio > 1 else ""
        raise UserError(f"{field} declares {format_bytes(declared)} but the file stores "
                        f"{format_bytes(stored)} for it{more}; the file is damaged or crafted")
    most = max_read_bytes() if ceiling else declared
    if declared > most:
        raise UserError(f"{field} declares {format_bytes(declared)}, above the {format_bytes(most)} one read "
                        f"may take (DEEPVISION_MAX_READ_GB raises it)")
