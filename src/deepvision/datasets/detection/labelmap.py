"""Class lists in and out of a built dataset: a comma list, classes.txt or a TFOD label_map.pbtxt."""

from __future__ import annotations

import re
from pathlib import Path

from deepvision.errors import UserError
from deepvision.safeload import input_file, name_lines, read_text_file

_STRING = r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\""  # a protobuf text-format string literal
_ITEM = re.compile(r"item\s*\{((?:[^}'\"]|" + _STRING + r")*)\}")
_COMMENT = re.compile(f"({_STRING})|#[^\n]*")  # `#` to the end of the line, outside a string, is a comment
# one `field: value` of an item: a string (adjacent literals concatenate, as in protobuf) or a bare token
_FIELD = re.compile(rf"\s*(\w+)\s*:\s*((?:{_STRING})(?:\s*(?:{_STRING}))*|[^\s'\"{{}}:;,#]+)\s*[;,]?\s*")
_SINGLE = ("id", "name", "display_name")  # not repeated fields: protobuf's Parse refuses a second one
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
        if path.suffix in (".pbtxt", ".pbtx") or re.search(r"item\s*\{", text):
            return _read_label_map(path, text)
        names = name_lines(text)
    else:
        if path.suffix in (".txt", ".pbtxt") or "/" in value:
            input_file(path, "class list file")  # a FIFO or folder is named as such, not "not found"
        names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise UserError(f"no class names in {value!r}")
    if len(set(names)) != len(names):
        raise UserError(f"class names repeat in {value!r}")
    return names



def _read_label_map(path: Path, text: str) -> list[str]:
    """Class names of a TFOD label map by id, read as protobuf's text_format.Parse reads a StringIntLabelMap:
    comments skipped, an integer id, each field once; the class is `name` (display_name is a caption)."""
    text = _COMMENT.sub(lambda m: m.group(1) or "", text)
    items = _ITEM.findall(text)
    if len(items) != len(re.findall(r"\bitem\s*\{", re.sub(_STRING, "''", text))):
        raise UserError(f"{path}: not a valid label map (an item with an unclosed quote or brace); "
                        f"quotes and backslashes in a name are escaped: name: 'driver\\'s seat'")
    pairs = []
    for item in items:
        shown = repr(" ".join(f"item {{ {item} }}".split()))[:120]
        fields: dict[str, str] = {}
        pos = 0
        while item[pos:].strip():
            m = _FIELD.match(item, pos)
            if m is None:
                raise UserError(f"{path}: cannot read the label map item {shown}; each field is `key: value`")
            key, value = m.groups()
            if key in _SINGLE and key in fields:
                raise UserError(f"{path}: the label map item {shown} gives '{key}' twice; keep one")
            fields[key], pos = value, m.end()
        if "id" not in fields or "name" not in fields:
            raise UserError(f"{path}: every label map item needs an id and a name, got {shown}")
        if not re.fullmatch(r"0|[1-9][0-9]*", fields["id"]):  # protobuf: 1.9 and 1e0 are not integers
            raise UserError(f"{path}: the label map item {shown} has id {fields['id']!r}, not a whole number; "
                            f"ids are 1, 2, 3, ...")
        if fields["name"][0] not in "'\"":
            raise UserError(f"{path}: the label map item {shown} has an unquoted name; write name: 'NAME'")
        name = "".join(unquote_name(lit, path) for lit in re.findall(_STRING, fields["name"]))
        pairs.append((int(fields["id"]), name))
    pairs.sort()
    if [i for i, _ in pairs] != list(range(1, len(pairs) + 1)):
        raise UserError(f"{path}: label map ids must be 1..{len(pairs)} (0 is the background)")
    return [n for _, n in pairs]
