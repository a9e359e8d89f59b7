"""Bounded reading of JSON and YAML that comes from outside: every reader of such a file goes through here.

Two limits hold for every document, with a one-line UserError naming the source when one is passed:

- nesting depth (`MAX_DEPTH` levels of lists/mappings): deeper input would end in RecursionError in the
  parser or in any code that walks the result;
- for YAML, the size after alias expansion: anchors are fine in configs, but `*alias` reuses a node without
  copying it, so a few hundred bytes can stand for billions of elements once the data is walked (an alias
  bomb). The composed node graph is measured before anything is constructed; its expanded size (elements
  plus scalar characters) may exceed the text's own length by at most `MAX_ALIAS_GROWTH`, and a node may not
  contain itself.

Syntax errors raise `ParseError` (also a ValueError, so callers that map ValueError to their own "damaged
file" message keep doing so); exceeded limits raise `LimitError`, a plain UserError that such callers pass on.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml

from deepvision.errors import UserError
from deepvision.fileio import open_regular_file, read_regular_file, special_kind

T = TypeVar("T")

MAX_DEPTH = 100
MAX_ALIAS_GROWTH = 1_000_000
MAX_IMAGE_SIDE = 16384  # default ceiling for an image side named in metadata; DEEPVISION_MAX_IMAGE_SIDE overrides

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)


class ParseError(UserError, ValueError):
    """The text is not valid JSON/YAML."""


class LimitError(UserError):
    """The document is nested too deeply or expands beyond the budget."""


def _where(source: str | None) -> str:
    return f"{source}: " if source else ""


def _invalid(source: str | None, kind: str, line: str, problem: str) -> ParseError:
    problem = " ".join(str(problem).split())  # one line, whatever the parser's message holds
    return ParseError(f"{source} is not valid {kind}{line}: {problem}" if source
                      else f"not valid {kind}{line}: {problem}")


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


def input_file(path: str | Path, what: str = "file", hint: str = "") -> Path:
    """`path` if it names a regular file; UserError "WHAT not found: PATH" when nothing is there, and
    "WHAT PATH is a FIFO (a directory, ...), not a regular file" otherwise, without opening it."""
    path = Path(path)
    try:
        kind = special_kind(os.stat(path).st_mode)
    except (OSError, ValueError):
        raise UserError(f"{what} not found: {path}{hint}") from None
    if kind is not None:
        raise UserError(f"{what} {path} is {kind}, not a regular file{hint}")
    return path


MAX_JSON_FILE_BYTES = 2 * 10**9  # COCO's instances_train2017.json is 448 MB
MAX_YAML_FILE_BYTES = 64 * 2**20  # configs and dataset descriptions are a few kB


def read_bytes(path: str | Path, what: str = "file", max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file (fileio.read_regular_file: a FIFO or device is refused, never waited on).
    FileNotFoundError when it is absent, so callers can tell "absent" from "damaged"; UserError otherwise.
    `max_bytes`: a larger file is refused from its size, before anything is read (a sparse 8 GB file)."""
    if max_bytes is not None:
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise UserError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
        if size > max_bytes:
            raise UserError(f"{what} {path} holds {format_bytes(size)}, more than the {format_bytes(max_bytes)} "
                            f"such a file may hold")
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
        return read_bytes(path, what, max_bytes).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{what} {path} is not UTF-8 text (byte {exc.start:,})") from None
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None


def max_image_side() -> int:
    """The largest image side (pixels) that metadata may name: DEEPVISION_MAX_IMAGE_SIDE, else 16384."""
    raw = os.environ.get("DEEPVISION_MAX_IMAGE_SIDE", "")
    if not raw:
        return MAX_IMAGE_SIDE
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"DEEPVISION_MAX_IMAGE_SIDE must be a positive whole number of pixels, got {raw!r}")
    return value


def check_image_side(field: str, *sides: int) -> None:
    """UserError naming `field` unless every side is between 1 and the `max_image_side()` ceiling."""
    ceiling = max_image_side()
    shown = "x".join(str(s) for s in sides)
    if any(s < 1 for s in sides):
        raise UserError(f"{field} {shown} must be positive")
    if any(s > ceiling for s in sides):
        raise UserError(f"{field} {shown} exceeds the ceiling of {ceiling} pixels a side "
                        f"(DEEPVISION_MAX_IMAGE_SIDE raises it)")


def json_depth(data: str | bytes) -> int:
    """The deepest nesting of [ and { in JSON text, strings excluded (a linear scan, no parsing)."""
    import numpy as np

    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if b"[" not in raw and b"{" not in raw:
        return 0
    if b'"' in raw:
        raw = _JSON_STRING.sub(b"", raw)
    step = np.zeros(256, dtype=np.int8)
    step[[ord("["), ord("{")]] = 1
    step[[ord("]"), ord("}")]] = -1
    moves = step[np.frombuffer(raw, dtype=np.uint8)]
    moves = moves[moves != 0]
    return int(np.cumsum(moves, dtype=np.int64).max(initial=0))


def load_json(data: str | bytes, source: str | None = None, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON text with the nesting limit; ParseError for invalid JSON, LimitError when too deep."""
    depth = json_depth(data)
    if depth > max_depth:
        raise LimitError(f"{_where(source)}JSON nested deeper than {max_depth} levels ({depth})")
    try:
        return json.loads(data)
    except RecursionError:  # not reachable within the depth limit; kept as a last guard
        raise LimitError(f"{_where(source)}JSON nested too deeply") from None
    except (ValueError, TypeError) as exc:
        if isinstance(exc, json.JSONDecodeError):
            line, msg = f" (line {exc.lineno})", exc.msg
        else:  # bytes that are not UTF-8, an integer of too many digits
            line, msg = "", str(exc).splitlines()[0]
        raise _invalid(source, "JSON", line, msg) from None


def read_json(path: str | Path, what: str = "JSON file", max_depth: int = MAX_DEPTH) -> Any:
    """Read and parse a JSON file (regular files only) with `load_json`'s limits. A missing file raises
    FileNotFoundError, so callers can tell "absent" from "damaged"; other failures are UserErrors."""
    return load_json(read_bytes(path, what, MAX_JSON_FILE_BYTES), str(path), max_depth)


class SafeLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader (plain data only) whose composer refuses nesting deeper than `max_depth`."""

    max_depth = MAX_DEPTH

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > self.max_depth:
                mark = self.peek_event().start_mark
                raise LimitError(f"YAML nested deeper than {self.max_depth} levels (line {mark.line + 1})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


MAX_INT_BITS = 128  # no count, size or seed deepvision reads comes near this; 0xfff... with 4,000 digits does


def _refuse_base_60(node: yaml.ScalarNode) -> None:
    """YAML 1.1 reads `1:30` as the base-60 number 90: a typo or a time, never a value deepvision means."""
    if ":" in node.value:
        raise LimitError(f"the value {node.value[:40]} on line {node.start_mark.line + 1} is a YAML base-60 "
                         f"number; quote it (\"{node.value[:40]}\") or write the number itself")


def _construct_number(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float:
    _refuse_base_60(node)
    return yaml.SafeLoader.construct_yaml_float(loader, node)


def _construct_bounded_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    """YAML's int constructor, refusing an integer beyond +-2**MAX_INT_BITS in one line (such a value
    cannot even be printed in decimal past 4,300 digits) and a base-60 one."""
    _refuse_base_60(node)
    try:
        value = yaml.SafeLoader.construct_yaml_int(loader, node)
    except ValueError:  # a decimal of more than 4,300 digits
        value = 1 << (MAX_INT_BITS + 1)
    if abs(value).bit_length() > MAX_INT_BITS:
        raise LimitError(f"the integer on line {node.start_mark.line + 1} ({len(node.value):,} characters) is "
                         f"out of range (beyond +-2**{MAX_INT_BITS})")
    return value


SafeLoader.add_constructor("tag:yaml.org,2002:int", _construct_bounded_int)
SafeLoader.add_constructor("tag:yaml.org,2002:float", _construct_number)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def expanded_size(root: yaml.Node, budget: int, max_depth: int = MAX_DEPTH) -> int:
    """The size of a composed YAML node graph once every alias is written out (elements plus scalar
    characters), computed without expanding it; LimitError past `budget`, past `max_depth` levels (aliases
    can stack depth) or for a node that contains itself."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    pending: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            pending.discard(key)
            kids = _children(node)
            own = 1 + (len(node.value) if isinstance(node, yaml.ScalarNode) else 0)
            size[key] = own + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            line = node.start_mark.line + 1 if node.start_mark else 0
            if size[key] > budget:
                raise LimitError(f"YAML aliases expand the node on line {line} beyond {budget:,} elements "
                                 f"(an anchor reused too often); write the values out instead")
            if depth[key] > max_depth:
                raise LimitError(f"YAML aliases nest the node on line {line} deeper than {max_depth} levels")
            continue
        if key in size:
            continue
        if key in pending:
            line = node.start_mark.line + 1 if node.start_mark else 0
            raise LimitError(f"YAML anchor on line {line} contains an alias to itself (a recursive document)")
        pending.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in _children(node) if id(k) not in size)
    return size[id(root)]


def load_yaml(text: str | bytes, source: str | None = None, loader: type[SafeLoader] = SafeLoader,
              max_alias_growth: int = MAX_ALIAS_GROWTH) -> Any:
    """Parse one YAML document with `loader` (a SafeLoader subclass) within the depth and alias-expansion
    limits; ParseError for invalid YAML (naming the line), LimitError past a limit."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise _invalid(source, "YAML", "", "not UTF-8 text") from None
    ldr = None
    try:
        try:
            ldr = loader(text)  # the reader already refuses control characters
            node = ldr.get_single_node()
            if node is None:
                return None
            expanded_size(node, len(text) + max_alias_growth, ldr.max_depth)
            try:
                return ldr.construct_document(node)
            except (AttributeError, TypeError, IndexError, KeyError) as exc:
                # a tagged scalar its constructor cannot parse (`!!timestamp xx` fails inside PyYAML)
                raise _invalid(source, "YAML", "", f"a tagged value could not be read ({type(exc).__name__})"
                               f"; write plain text, numbers, lists and mappings") from None
        except LimitError as exc:
            raise LimitError(f"{_where(source)}{exc}") from None
        except ParseError:
            raise
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise _invalid(source, "YAML", where, problem) from None
        except RecursionError:  # a guard: the depth limit keeps the composer and constructor shallow
            raise LimitError(f"{_where(source)}YAML nested too deeply") from None
        except ValueError as exc:  # a scalar the constructor cannot convert (an int of > 4,300 digits)
            raise _invalid(source, "YAML", "", str(exc).splitlines()[0][:120]) from None
    finally:
        if ldr is not None:
            ldr.dispose()


def read_yaml(path: str | Path, what: str = "YAML file", loader: type[SafeLoader] = SafeLoader) -> Any:
    """Read and parse a YAML file (regular files only) with `load_yaml`'s limits; FileNotFoundError when
    absent, UserError otherwise."""
    return load_yaml(read_bytes(path, what, MAX_YAML_FILE_BYTES), str(path), loader)


def max_read_bytes() -> int:
    """The most bytes one declared array may ask for: DEEPVISION_MAX_READ_GB (decimal GB), else this
    machine's physical memory."""
    raw = os.environ.get("DEEPVISION_MAX_READ_GB", "")
    if raw:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value <= 0:
            raise UserError(f"DEEPVISION_MAX_READ_GB must be a positive number of gigabytes, got {raw!r}")
        return int(value * 1e9)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on this platform
        return 16 * 10**9


def format_bytes(n: float) -> str:
    """1234567 -> '1.2 MB' (decimal units)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def check_declared_bytes(field: str, declared: int, stored: int | None = None, max_ratio: float = 1.0) -> None:
    """UserError naming `field` when an array's declared size exceeds what its file stores (`stored` bytes,
    times `max_ratio` for compressed storage) or the `max_read_bytes()` ceiling; checked before reading."""
    if stored is not None and declared > stored * max_ratio:
        more = f" (compressed more than {max_ratio:g}:1)" if max_ratio > 1 else ""
        raise UserError(f"{field} declares {format_bytes(declared)} but the file stores "
                        f"{format_bytes(stored)} for it{more}; the file is damaged or crafted")
    ceiling = max_read_bytes()
    if declared > ceiling:
        raise UserError(f"{field} declares {format_bytes(declared)}, above the {format_bytes(ceiling)} one read "
                        f"may take (DEEPVISION_MAX_READ_GB raises it)")


ZIP_MAX_RATIO = 100.0  # deflate rarely beats 10:1 on weights; a zip bomb reaches 1000:1


def check_zip_member(path: str | Path, info: Any, length: int, max_ratio: float = ZIP_MAX_RATIO) -> None:
    """Check one zip member (a `zipfile.ZipInfo`) from the zip directory alone, before it is inflated:
    its stored size within the file's `length` from its offset, its uncompressed size within the read
    ceiling and `max_ratio` times its stored size (a zip bomb inflates 1000:1). UserError otherwise."""
    import zipfile

    field = f"{path} member {info.filename}"
    room = max(length - info.header_offset, 0)  # a member's bytes lie between its offset and the end
    if info.compress_size > room:
        raise UserError(f"{field} claims {format_bytes(info.compress_size)} stored but the file holds "
                        f"{format_bytes(room)} from its start; the file is truncated or crafted")
    ratio = max_ratio if info.compress_type != zipfile.ZIP_STORED else 1.0
    check_declared_bytes(field, info.file_size, info.compress_size, ratio)


def check_zip_directory(path: str | Path, zf: Any, max_ratio: float = ZIP_MAX_RATIO) -> None:
    """`check_zip_member` for every member of the open `zipfile.ZipFile` `zf` read from `path`."""
    length = Path(path).stat().st_size
    for info in zf.infolist():
        check_zip_member(path, info, length, max_ratio)


_MAT_COMPRESSED, _MAT_MATRIX = 15, 14  # MAT v5 element types miCOMPRESSED and miMATRIX


def check_mat_file(path: str | Path, max_ratio: float = ZIP_MAX_RATIO, what: str = "MATLAB file") -> Path:
    """Check a MAT file before `scipy.io.loadmat` reads it: a regular file within the read ceiling, and
    for version 5 every compressed variable's declared size (the miMATRIX tag inside the zlib stream)
    within the ceiling and `max_ratio` times its stored size, the stream inflating to no more than that
    (counted in blocks, never held). loadmat inflates a variable whole, so a 13 MB file could ask for
    3 GB. Returns the path; UserError otherwise. Version 4 (never compressed) and 7.3 (HDF5, which
    loadmat refuses) pass unchanged."""
    import struct

    path = regular_file(path, what)
    length = path.stat().st_size
    check_declared_bytes(str(path), length)
    with open_regular_file(path) as f:
        header = f.read(128)
        if len(header) < 128 or header[124:126] not in (b"\x00\x01", b"\x01\x00") or header[126:128] not in (
                b"IM", b"MI"):
            return path  # not version 5: loadmat decides
        order = "<" if header[126:128] == b"IM" else ">"
        offset = 128
        while offset + 8 <= length:
            f.seek(offset)
            kind, nbytes = struct.unpack(order + "II", f.read(8))
            if kind >> 16:  # a small data element: type and size in 4 bytes, data in the next 4
                offset += 8
                continue
            if nbytes > length - offset - 8:
                raise UserError(f"{path}: an element at offset {offset:,} claims {format_bytes(nbytes)} but the "
                                f"file holds {format_bytes(length - offset - 8)} after it; it is truncated "
                                f"or crafted")
            if kind == _MAT_COMPRESSED:
                _check_mat_stream(path, f, offset, nbytes, order, max_ratio)
            offset += 8 + nbytes + (-nbytes % 8 if kind != _MAT_COMPRESSED else 0)
    return path


def _check_mat_stream(path: Path, f: Any, offset: int, nbytes: int, order: str, max_ratio: float) -> None:
    import struct
    import zlib

    field = f"{path} variable at offset {offset:,}"
    inflate = zlib.decompressobj()
    left, produced, declared, head = nbytes, 0, None, b""
    block = 1 << 20
    while left or inflate.unconsumed_tail:
        data = inflate.unconsumed_tail
        if not data:
            data = f.read(min(left, block))
            left -= len(data)
            if not data:
                break
        try:
            out = inflate.decompress(data, block)
        except zlib.error as exc:
            raise UserError(f"{field} is not a valid zlib stream ({exc}); the file is damaged") from None
        produced += len(out)
        if declared is None:
            head += out[:8 - len(head)]
            if len(head) == 8:
                kind, size = struct.unpack(order + "II", head)
                if kind != _MAT_MATRIX:
                    return  # not a variable: loadmat decides
                declared = size + 8
                check_declared_bytes(field, declared, nbytes, max_ratio)
        if declared is not None and produced > declared:
            raise UserError(f"{field} inflates to more than the {format_bytes(declared)} it declares; "
                            f"the file is damaged or crafted")
        if inflate.eof:
            break


def open_npz(path: str | Path, max_ratio: float = ZIP_MAX_RATIO, what: str = ".npz file") -> Any:
    """`np.load(path, allow_pickle=False)` after checking the zip directory: every member's stored size
    within the file's own length, its uncompressed size within the read ceiling and `max_ratio` times its
    compressed size, and every .npy header's shape within its member's size (numpy allocates the
    declared shape before reading). UserError otherwise."""
    import zipfile

    import numpy as np

    path = regular_file(path, what)
    try:
        length = path.stat().st_size
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                field = f"{path} member {info.filename}"
                check_zip_member(path, info, length, max_ratio)
                if not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                    elif version == (2, 0):
                        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                    else:
                        raise ValueError(f"npy format version {version}")
                if dtype.hasobject:
                    raise UserError(f"{field} holds Python objects; only plain arrays are read")
                check_declared_bytes(f"{field} shape {shape}", math.prod(shape) * dtype.itemsize,
                                     info.file_size)
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, NotImplementedError) as exc:
        raise UserError(f"{path} is not a readable {what} ({' '.join(str(exc).split())[:120]})") from None
    return np.load(path, allow_pickle=False)


def is_control(ch: str) -> bool:
    """A control character, a line/paragraph separator or an invisible format character (bidi overrides
    such as U+202E, zero-width spaces and joiners): what moves a terminal's cursor, splits a line, or
    makes a name display as another."""
    import unicodedata

    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")


def printable(text: object) -> str:
    """`text` with its control characters written as Python escapes ('\\x1b', '\\n'), so a name read from
    a file or given on the command line cannot clear the screen, colour the output or split a line."""
    s = str(text)
    if not any(is_control(ch) for ch in s):
        return s
    return "".join(ch.encode("unicode_escape").decode("ascii") if is_control(ch) else ch for ch in s)


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


def check_class_names(names: list[str], where: str) -> None:
    """UserError naming the first class name that labels.txt (one name a line) could not keep: empty, not a
    string, holding a control character or a line separator (a newline would split it into two classes), or
    given twice (two outputs with one name: a prediction could not say which)."""
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str) or not name or any(is_control(ch) for ch in name):
            raise UserError(f"{where}: class name {printable(repr(name))} is empty or holds a control character "
                            f"(a newline would split labels.txt; a bidi override or zero-width character "
                            f"would disguise the name); rename it")
        if name in seen:
            raise UserError(f"{where}: class name {name!r} is given twice; class names must be unique")
        seen.add(name)
