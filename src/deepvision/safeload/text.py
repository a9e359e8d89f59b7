"""Text that crosses the boundary as cells and names: control characters escaped for display, CSV rows
read with the csv module's errors as one line, CSV cells a spreadsheet opens kept free of formulas, and
the one class-name rule."""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO, TypeVar

from deepvision.errors import UserError
from deepvision.safeload.files import check_file_size, first_repeat, image_identity, plain_float

T = TypeVar("T")


def is_control(ch: str) -> bool:
    """A control character, a line/paragraph separator or an invisible format character (bidi overrides
    such as U+202E, zero-width spaces and joiners): what moves a terminal's cursor, splits a line, or
    makes a name display as another; also a lone surrogate, which stands for a byte of a file name that is
    not UTF-8 and cannot be written to a UTF-8 file or terminal."""
    import unicodedata

    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs")


def not_utf8(text: str) -> bool:
    """Whether `text` holds a lone surrogate: a byte of a file name that is not UTF-8, as Python decodes
    it (`surrogateescape`), which no UTF-8 file (labels.txt, a .lst) can hold."""
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def printable(text: object) -> str:
    """`text` with its control characters written as Python escapes ('\\x1b', '\\n'), so a name read from
    a file or given on the command line cannot clear the screen, colour the output or split a line."""
    s = str(text)
    if not any(is_control(ch) for ch in s):
        return s
    return "".join(ch.encode("unicode_escape").decode("ascii") if is_control(ch) else ch for ch in s)


def shell_word(text: object) -> str:
    """`text` (a path in a command printed for the user to paste) quoted for a POSIX shell when it needs it
    ('tr2 x/a b' -> "'tr2 x/a b'"), its control characters escaped as `printable` does."""
    import shlex

    return shlex.quote(printable(text))


MAX_LINE_CHARS = 2**20  # a CSV line of deepvision's inputs: a FER2013 row is 9,000 characters


def bounded_lines(f: TextIO, source: str | Path, max_chars: int = MAX_LINE_CHARS) -> Iterator[str]:
    """The lines of the text file `f`, each read at most `max_chars` characters at a time: a longer line
    is a UserError naming the file and the line, raised before the rest of it is read (iterating a file
    reads a whole line, so one 8 GB line would be held in memory). Feed it to `csv.reader`."""
    readline = f.readline
    lineno = 0
    while True:
        line = readline(max_chars + 1)
        if not line:
            return
        lineno += 1
        if len(line) > max_chars:
            raise UserError(f"{source}: line {lineno:,} is longer than {max_chars:,} characters; the file is "
                            f"damaged or not the expected kind")
        yield line


def text_file_lines(path: str | Path, what: str, max_bytes: int, max_line: int = MAX_LINE_CHARS
                    ) -> Iterator[tuple[int, str]]:
    """(line number, line) of the UTF-8 text file at `path`, read a line at a time: UserError naming the
    file when it is missing or not a regular file (a FIFO is named, never opened), larger than `max_bytes`
    (from its size, before anything is read), or holds a line over `max_line` bytes or not UTF-8 (naming
    the line). A leading byte-order mark is dropped."""
    from deepvision.fileio import input_file, open_regular_file

    path = input_file(path, what)
    check_file_size(path, what, max_bytes)
    try:
        with open_regular_file(path) as f:
            for lineno, raw in enumerate(iter(lambda: f.readline(max_line + 1), b""), 1):
                if len(raw) > max_line:
                    raise UserError(f"{path}: line {lineno:,} is longer than {max_line:,} bytes; the file is "
                                    f"damaged or not the expected kind")
                try:
                    line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                except UnicodeDecodeError:
                    raise UserError(f"{what} {path} is not UTF-8 text (line {lineno:,})") from None
                yield lineno, line
    except OSError as exc:
        raise UserError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None


def csv_rows(rows: Iterable[T], source: str | Path) -> Iterator[T]:
    """The rows of a `csv.reader`/`csv.DictReader`, with the csv module's own errors (a field above its
    131,072-character limit, a NUL byte, a bad quote) as one UserError naming the file and the line.
    A field that large is damage in every CSV deepvision reads, so the limit is kept."""
    import csv

    it = iter(rows)
    while True:
        try:
            row = next(it)
        except StopIteration:
            return
        except csv.Error as exc:
            line = getattr(it, "line_num", None) or getattr(getattr(it, "reader", None), "line_num", None)
            where = f" near line {line}" if line else ""  # the csv module's count can lag by one line
            raise UserError(f"{source}: the CSV row{where} is not readable ({exc})") from None
        yield row


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what Excel, LibreOffice and Sheets read as a formula


def spreadsheet_cell(value: Any) -> Any:
    """`value` fit for a CSV cell a spreadsheet may open: text has its control characters escaped and, when
    it starts like a formula ('=HYPERLINK(...)', '+1', '-2+3', '@SUM'), a leading single quote (the OWASP
    rule: the spreadsheet shows it as text). Numbers and None are kept as they are."""
    if not isinstance(value, str):
        return value
    text = printable(value)
    return "'" + text if value.startswith(FORMULA_STARTS) else text


def spreadsheet_row(cells: Iterable[Any]) -> list[Any]:
    """One CSV row with every cell through `spreadsheet_cell`: for rows holding names, paths or labels that
    came from outside (class names, image file names), written beside numbers."""
    return [spreadsheet_cell(cell) for cell in cells]


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def name_lines(text: str) -> list[str]:
    """The non-empty lines of a class-name file, stripped, split at \\n, \\r\\n and \\r only: a NEL (U+0085)
    or line separator (U+2028) inside a name is kept there for `check_class_names` to name, never taken
    as a line break that shifts every later class by one (`str.splitlines` splits at them)."""
    return [line.strip() for line in _LINE_BREAK.split(text) if line.strip()]


def comma_items(text: str, option: str, what: str = "item") -> list[str]:
    """The stripped items of a comma list given to `option`; UserError for an empty one (two commas in a row,
    or one at an end): a stray comma would shift every later item by one, or drop one unseen."""
    items = [item.strip() for item in text.split(",")]
    if "" in items:
        raise UserError(f"{option}: {what} {items.index('') + 1} of {len(items)} is empty (two commas in a row, "
                        f"or one at an end)")
    return items


def check_class_names(names: list[str], where: str) -> None:
    """UserError naming the first class name that labels.txt (one name a line) could not keep: empty, not a
    string, holding a control character or a line separator (a newline would split it into two classes), with
    surrounding spaces ('a' and 'a ' print alike, and a list of names is read back stripped), or given twice
    (two outputs with one name: a prediction could not say which)."""
    seen: dict[str, str] = {}  # NFC form -> the name as first given
    for name in names:
        if not isinstance(name, str):
            kind = "a number" if isinstance(name, (int, float)) and not isinstance(name, bool) else \
                f"a {type(name).__name__}"
            raise UserError(f"{where}: class name {printable(repr(name))[:60]} is {kind}; class names are text")
        if not_utf8(name):
            raise UserError(f"{where}: class name {printable(repr(name))} is not UTF-8 text (a name in another "
                            f"encoding), which labels.txt cannot hold; rename it")
        if not name.strip() or any(is_control(ch) for ch in name):
            raise UserError(f"{where}: class name {printable(repr(name))} is empty or holds a control character "
                            f"(a newline would split labels.txt; a bidi override or zero-width character "
                            f"would disguise the name); rename it")
        if name != name.strip():
            raise UserError(f"{where}: class name {name!r} has surrounding spaces (it prints as "
                            f"{name.strip()!r}); rename it")
        key = unicodedata.normalize("NFC", name)  # 'café' precomposed and decomposed print alike
        if key in seen:
            spelled = "" if seen[key] == name else " (two Unicode spellings of one name)"
            raise UserError(f"{where}: class name {name!r} is given twice{spelled}; class names must be unique")
        seen[key] = name


MAX_RECORD_INDEX = 2**64 - 1  # the .idx key and the record header's id are unsigned 64-bit


def record_index(text: str) -> int:
    """A .lst index: a whole number from 0 to MAX_RECORD_INDEX (read exactly, not through a float);
    ValueError otherwise."""
    digits = text.strip().removeprefix("+")
    value = plain_float(text)
    index = int(digits) if digits.isdigit() else int(value) if value.is_integer() else -1
    if not 0 <= index <= MAX_RECORD_INDEX:
        raise ValueError(f"not a record index: {text!r}")
    return index


def refuse_listed_twice(lists: Iterable[tuple[object, Iterable[Path | None]]], root: Path, fix: str) -> None:
    """UserError naming an image that two entries of `lists` (each a list's name and the files of its entries, None
    for an entry without one) name, and both places: compared by `image_identity`, so two spellings of one file or a
    link to it count too. One image in train and test would score the training, one listed twice weigh double.
    Names are shown relative to `root`; `fix` ends the line."""
    seen: dict[object, tuple[object, int, Path]] = {}
    for where, files in lists:
        repeat = first_repeat(((image_identity(f), (where, i, f)) for i, f in enumerate(files) if f is not None), seen)
        if repeat is not None:
            (first_where, i, first), (where, j, file) = repeat
            name, other = (printable(os.path.relpath(f, root)) for f in (file, first))
            link = f" (one file with {other}: a link)" if file != first else ""
            raise UserError(f"{name}{link} is listed twice, as image {i + 1} of {first_where} and image {j + 1} of "
                            f"{where}; {fix}")
