"""Class lists in and out of a built dataset: a comma list, classes.txt or a TFOD label_map.pbtxt."""

from __future__ import annotations

import difflib
import itertools
import os
import re
from pathlib import Path
from typing import Any

from deepvision.errors import UserError
from deepvision.safeload import comma_items, input_file, name_lines, read_text_file

_STRING = r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\""  # a protobuf text-format string literal
# text-format tokens: a comment, a string, an open quote that never closes on its line, punctuation, a bare word
_TOKEN = re.compile(rf"\s+|#[^\n]*|(?P<str>{_STRING})|(?P<open>['\"])|(?P<punct>[{{}}<>:;,\[\]])"
                    rf"|(?P<word>[^\s'\"{{}}<>:;,\[\]#]+)")
_WHOLE = r"0|[1-9][0-9]*"  # protobuf: 1.9 and 1e0 are not integers (03 and 0x3 are refused: a refusal is safe)
# the fields of TFOD's string_int_label_map.proto: scalars by kind, messages by their own field table
_KEYPOINT = {"id": "int", "label": "str"}
_ITEM_FIELDS: dict[str, Any] = {"name": "str", "id": "int", "display_name": "str", "keypoints": _KEYPOINT,
                                "ancestor_ids": "int*", "descendant_ids": "int*", "frequency": "freq",
                                "instance_count": "int"}
_MAP_FIELDS: dict[str, Any] = {"item": _ITEM_FIELDS}
_FREQUENCY = ("UNSPECIFIED", "FREQUENT", "COMMON", "RARE", "0", "1", "2", "3")  # enum LVISFrequency
_FILE_SUFFIXES = (".txt", ".pb", ".yaml", ".yml", ".json", ".csv", ".names")  # .pbtxt, .pbtx too
_ESCAPE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|(.))", re.S)
_SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b", "f": "\f", "v": "\v", "\\": "\\",
           "'": "'", '"': '"', "?": "?"}


def quote_name(name: str) -> str:
    """`name` as a protobuf text-format string: single quotes, backslashes and quotes escaped."""
    return "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


def unquote_name(literal: str, source: str | Path = "label map") -> str:
    """The text of a protobuf text-format string literal (quotes included), its escapes undone: octal and
    hex escapes are UTF-8 bytes, as protobuf reads them."""
    out = bytearray()
    body, pos = literal[1:-1], 0
    for m in _ESCAPE.finditer(body):
        out += body[pos : m.start()].encode()
        octal, hexa, u4, u8, char = m.groups()
        if octal or hexa:
            out.append(int(octal, 8) & 0xFF if octal else int(hexa, 16))
        elif u4 or u8:
            out += chr(int(u4 or u8, 16)).encode("utf-8", "surrogatepass")
        elif char in _SIMPLE:
            out += _SIMPLE[char].encode()
        else:
            raise UserError(f"{source}: unknown escape '\\{char}' in the name {literal}")
        pos = m.end()
    out += body[pos:].encode()
    try:
        return out.decode()
    except UnicodeDecodeError:
        raise UserError(f"{source}: the name {literal} is not UTF-8 once its escapes are undone") from None


def label_map_text(classes: list[str]) -> str:
    """A TFOD label map: `item { id: 1 name: '...' }` per class, ids from 1, names escaped."""
    return "".join(f"item {{\n  id: {i}\n  name: {quote_name(name)}\n}}\n" for i, name in enumerate(classes, 1))


def read_class_list(value: str) -> list[str]:
    """Classes from a comma list, a classes.txt (one per line) or a TFOD label_map.pbtxt (ordered by id)."""
    path = Path(value)
    if path.is_file():
        text = read_text_file(path, "class list file")
        if path.suffix in (".pbtxt", ".pbtx") or re.search(r"\bitem\s*:?\s*[{<]", text):
            names = _read_label_map(path, text)
        else:
            names = name_lines(text)
    else:
        _refuse_file_names(value)
        names = comma_items(value, "--classes", "name") if value.strip() else []
    if not names:
        raise UserError(f"no class names in {value!r}")
    if len(set(names)) != len(names):
        raise UserError(f"class names repeat in {value!r}")
    return names


def _refuse_file_names(value: str) -> None:
    """A comma-list entry that names a file, not a class (a path separator, a file suffix such as .txt, .pbtxt,
    .pbtx or .yaml, or NAME.txt / NAME.pbtxt existing beside it), is refused: a mistyped file name would
    otherwise become a class of that name and every box would be dropped."""
    for piece in value.split(","):
        name = piece.strip()
        known = [f"{name}{s}" for s in (".txt", ".pbtxt") if name and Path(f"{name}{s}").is_file()]
        if not (known or re.search(r"[/\\]", name) or Path(name).suffix.lower().startswith(_FILE_SUFFIXES)):
            continue
        if Path(piece).exists():  # a FIFO or folder is named as such; a file beside class names is one or the other
            input_file(piece, "class list file")
            raise UserError(f"--classes {value!r} mixes the file {piece!r} with class names; give one or the other")
        try:
            with os.scandir(Path(name).parent) as entries:  # bounded: a few thousand names at most
                near = known or [Path(name).parent / n for n in difflib.get_close_matches(
                    Path(name).name, [e.name for e in itertools.islice(entries, 5000) if e.is_file()], 1, 0.75)]
        except OSError:
            near = known
        hint = f" (did you mean {str(near[0])!r}?)" if near else ""
        raise UserError(f"class list file {piece!r} not found{hint}; give an existing classes.txt or "
                        f"label_map.pbtxt, or class names as a comma list (--classes car,dog)")


def _tokens(path: Path, text: str) -> list[tuple[str, str, int, int]]:
    """The text-format tokens of `text` as (kind, text, start, end); comments and spaces dropped."""
    out = []
    for m in _TOKEN.finditer(text):
        if m.lastgroup == "open":
            raise UserError(f"{path} line {text.count(chr(10), 0, m.start()) + 1}: not a valid label map (an "
                            f"unclosed quote); quotes and backslashes in a name are escaped: name: 'driver\\'s seat'")
        if m.lastgroup:
            out.append((m.lastgroup, m.group(), m.start(), m.end()))
    return out


class _Reader:
    """Protobuf text format over the tokens of one label map: `field: value`, `field { ... }`, `field: { ... }`,
    `field < ... >` and `field: [a, b]`, each optionally ended by `;` or `,`; names checked against a table."""

    def __init__(self, path: Path, text: str) -> None:
        self.path, self.text, self.toks, self.pos = path, text, _tokens(path, text), 0

    def fail(self, what: str, at: int | None = None) -> UserError:
        start = self.toks[min(self.pos if at is None else at, len(self.toks) - 1)][2] if self.toks else 0
        return UserError(f"{self.path} line {self.text.count(chr(10), 0, start) + 1}: {what}")

    def peek(self, *texts: str) -> bool:
        return self.pos < len(self.toks) and self.toks[self.pos][0] == "punct" and self.toks[self.pos][1] in texts

    def message(self, table: dict[str, Any], close: str | None) -> list[tuple[str, Any, int, int]]:
        """The fields up to `close` (the end of the text at the top level) as (name, value, first token, end)."""
        fields: list[tuple[str, Any, int, int]] = []
        while not (self.peek(close) if close else self.pos == len(self.toks)):
            if self.pos == len(self.toks):
                raise self.fail(f"not a valid label map (an item's '{close}' is missing)")
            kind, word, at = self.toks[self.pos][0], self.toks[self.pos][1], self.pos
            if kind != "word" or not re.fullmatch(r"[A-Za-z_]\w*", word):
                raise self.fail(f"not a valid label map: expected a field name, got {word[:40]!r}")
            if word not in table:
                where = "a label map" if table is _MAP_FIELDS else "a label map item" if table is _ITEM_FIELDS \
                    else "a keypoint"
                raise self.fail(f"{where} has no field named '{word}' (it has {', '.join(table)}); correct its name")
            self.pos += 1
            colon = self.peek(":")
            self.pos += colon
            if not colon and not isinstance(table[word], dict):
                raise self.fail(f"a label map's '{word}' is a value: write {word}: VALUE", at)
            values = self.values(table[word], word) if not self.peek("[") else self.bracketed(table[word], word)
            fields += [(word, v, at, self.pos) for v in values]
            self.pos += self.peek(";", ",")
        self.pos += bool(close)
        return fields

    def bracketed(self, spec: Any, word: str) -> list[Any]:
        self.pos += 1
        out: list[Any] = []
        while not self.peek("]"):
            out += self.values(spec, word)
            if not self.peek(",", "]"):
                raise self.fail(f"not a valid label map: '{word}: [...]' needs commas between its values")
            self.pos += self.peek(",")
        self.pos += 1
        return out

    def values(self, spec: Any, word: str) -> list[Any]:
        """One value: a nested message for a message field, else a run of strings (adjacent literals join, as
        in protobuf) or one bare word."""
        if isinstance(spec, dict):
            if not self.peek("{", "<"):
                raise self.fail(f"a label map's '{word}' is a message: write {word} {{ ... }}")
            self.pos += 1
            return [self.message(spec, "}" if self.toks[self.pos - 1][1] == "{" else ">")]
        if self.pos < len(self.toks) and self.toks[self.pos][0] == "str":
            literals = []
            while self.pos < len(self.toks) and self.toks[self.pos][0] == "str":
                literals.append(self.toks[self.pos][1])
                self.pos += 1
            return [literals]
        if self.pos == len(self.toks) or self.toks[self.pos][0] != "word":
            raise self.fail(f"a label map's '{word}' has no value: write {word}: VALUE")
        self.pos += 1
        return [self.toks[self.pos - 1][1]]

    def shown(self, at: int, end: int) -> str:
        return repr(" ".join(self.text[self.toks[at][2] : self.toks[end - 1][3]].split()))[:120]


def _check_fields(reader: _Reader, fields: list[tuple[str, Any, int, int]], table: dict[str, Any],
                  shown: str) -> dict[str, Any]:
    """The single (not repeated) fields of one message, each kind checked as protobuf checks it."""
    single: dict[str, Any] = {}
    for key, value, _, _ in fields:
        spec = table[key]
        if isinstance(spec, dict):
            _check_fields(reader, value, spec, shown)
            continue
        if not spec.endswith("*"):
            if key in single:
                raise UserError(f"{reader.path}: the label map item {shown} gives '{key}' twice; keep one")
            single[key] = value
        if spec == "str" and isinstance(value, str):
            raise UserError(f"{reader.path}: the label map item {shown} has an unquoted {key}; write {key}: 'TEXT'")
        if spec.startswith("int") and not (isinstance(value, str) and re.fullmatch(rf"-?(?:{_WHOLE})", value)):
            raise UserError(f"{reader.path}: the label map item {shown} has {key} {value!r}, not a whole number")
        if spec == "freq" and value not in _FREQUENCY:
            raise UserError(f"{reader.path}: the label map item {shown} has frequency {value!r}; "
                            f"use one of {', '.join(_FREQUENCY[:4])}")
    return single


def _read_label_map(path: Path, text: str) -> list[str]:
    """Class names of a TFOD label map by id, read as protobuf's text_format.Parse reads a StringIntLabelMap:
    comments skipped, every field known to string_int_label_map.proto (keypoints and the LVIS fields are read
    and left aside), an integer id, each single field once; the class is `name` (display_name is a caption)."""
    reader = _Reader(path, text)
    items = reader.message(_MAP_FIELDS, None)
    pairs = []
    for _, fields, at, end in items:
        shown = reader.shown(at, end)
        single = _check_fields(reader, fields, _ITEM_FIELDS, shown)
        if "id" not in single or "name" not in single:
            raise UserError(f"{path}: every label map item needs an id and a name, got {shown}")
        if not re.fullmatch(_WHOLE, single["id"]):
            raise UserError(f"{path}: the label map item {shown} has id {single['id']!r}, not a whole number; "
                            f"ids are 1, 2, 3, ...")
        pairs.append((int(single["id"]), "".join(unquote_name(lit, path) for lit in single["name"])))
    pairs.sort()
    if [i for i, _ in pairs] != list(range(1, len(pairs) + 1)):
        raise UserError(f"{path}: label map ids must be 1..{len(pairs)} (0 is the background)")
    return [n for _, n in pairs]
