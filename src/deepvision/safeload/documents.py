"""Bounded reading of JSON and YAML that comes from outside: every reader of such a file goes through here.

Two limits hold for every document, with a one-line UserError naming the source when one is passed:

- nesting depth (`MAX_DEPTH` levels of lists/mappings): deeper input would end in RecursionError in the
  parser or in any code that walks the result;
- for YAML, the size after alias expansion: anchors are fine in configs, but `*alias` reuses a node without
  copying it, so a few hundred bytes can stand for billions of elements once the data is walked (an alias
  bomb). The composed node graph is measured before anything is constructed; its expanded size (elements
  plus scalar characters) may exceed the text's own length by at most `MAX_ALIAS_GROWTH`, and a node may not
  contain itself.

A JSON object that names a key twice is refused (the json module would keep the last value silently).

Syntax errors raise `ParseError` (also a ValueError, so callers that map ValueError to their own "damaged
file" message keep doing so); exceeded limits raise `LimitError`, a plain UserError that such callers pass on.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from deepvision.errors import UserError
from deepvision.safeload.files import MAX_JSON_FILE_BYTES, MAX_YAML_FILE_BYTES, read_bytes

MAX_DEPTH = 100
MAX_ALIAS_GROWTH = 1_000_000

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


class _DuplicateKey(Exception):
    """Raised inside the parser for a key given twice in one object (not a ValueError: passed on as is)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """The object of `pairs`; _DuplicateKey when a key comes twice (a count comparison: cheap per object)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


def load_json(data: str | bytes, source: str | None = None, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON text with the nesting limit; ParseError for invalid JSON or an object naming a key twice,
    LimitError when too deep."""
    depth = json_depth(data)
    if depth > max_depth:
        raise LimitError(f"{_where(source)}JSON nested deeper than {max_depth} levels ({depth})")
    try:
        return json.loads(data, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise ParseError(f"{_where(source)}a JSON object names {exc.args[0][:80]!r} twice; keep one "
                         f"of them") from None
    except RecursionError:  # not reachable within the depth limit; kept as a last guard
        raise LimitError(f"{_where(source)}JSON nested too deeply") from None
    except (ValueError, TypeError) as exc:
        if isinstance(exc, json.JSONDecodeError):
            line, msg = f" (line {exc.lineno})", exc.msg
        else:  # bytes that are not UTF-8, an integer of too many digits
            line, msg = "", _int_digits_problem(str(exc)) or str(exc).splitlines()[0]
        raise _invalid(source, "JSON", line, msg) from None


def _int_digits_problem(message: str) -> str | None:
    """Python's refusal of an integer of too many digits ("Exceeds the limit (4300 digits) ...: value has
    5000 digits; use sys.set_int_max_str_digits() ..."), said as what is wrong with the data; else None."""
    found = re.search(r"limit \((\d+) digits\).*value has (\d+) digits", message)
    if found is None:
        return None
    return (f"an integer of {int(found[2]):,} digits, more than the {int(found[1]):,} a number may have; no "
            f"count, size or coordinate needs that many")


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


def _refuse_octal(node: yaml.ScalarNode) -> None:
    """YAML 1.1 reads `010` as the octal number 8: a zero-padded epoch count, seed or size would change without
    a word (`0x10` and `0b10` say their base and are read as written)."""
    digits = node.value.lstrip("+-").replace("_", "")
    if len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
        raise LimitError(f"the value {node.value[:40]} on line {node.start_mark.line + 1} is a YAML octal number "
                         f"(a leading 0); quote it (\"{node.value[:40]}\") or write the decimal number")


def _refuse_separators(node: yaml.ScalarNode) -> None:
    """YAML 1.1 reads `1_0` as the number 10: numbers are read as written everywhere else in deepvision
    (options, ceilings, tables), so a digit separator is refused rather than dropped."""
    if "_" in node.value:
        raise LimitError(f"the value {node.value[:40]} on line {node.start_mark.line + 1} is a number with a digit "
                         f"separator (YAML 1.1 drops the _); write the digits alone, or quote it "
                         f"(\"{node.value[:40]}\") for text")


def _construct_number(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float:
    _refuse_base_60(node)
    _refuse_separators(node)
    return yaml.SafeLoader.construct_yaml_float(loader, node)


def _construct_bounded_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    """YAML's int constructor, refusing an integer beyond +-2**MAX_INT_BITS in one line (such a value
    cannot even be printed in decimal past 4,300 digits), a base-60 one, one with a digit separator and an
    octal one."""
    _refuse_base_60(node)
    _refuse_separators(node)
    _refuse_octal(node)
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
