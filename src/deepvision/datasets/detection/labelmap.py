"""Class lists in and out of a built dataset: a comma list, classes.txt or a TFOD label_map.pbtxt."""

from __future__ import annotations

import re
from pathlib import Path

from deepvision.errors import UserError
from deepvision.safeload import input_file, name_lines, read_text_file

_STRING = r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\""  # a protobuf text-format string literal
_ITEM = re.compile(r"item\s*\{((?:[^}'\"]|" + _STRING + r")*)\}")
_NAME = re.compile(r"\b(?:display_)?name\s*:\s*(" + _STRING + ")")
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
            items = _ITEM.findall(text)
            if len(items) != len(re.findall(r"\bitem\s*\{", text)):
                raise UserError(f"{path}: not a valid label map (an item with an unclosed quote or brace); "
                                f"quotes and backslashes in a name are escaped: name: 'driver\\'s seat'")
            pairs = []
            for item in items:
                ident = re.search(r"\bid\s*:\s*(\d+)", re.sub(_STRING, "''", item))  # not an id inside a name
                name = _NAME.search(item)
                if not ident or not name:
                    raise UserError(f"{path}: every label map item needs an id and a name, got {item.strip()!r}")
                pairs.append((int(ident.group(1)), unquote_name(name.group(1), path)))
            pairs.sort()
            if [i for i, _ in pairs] != list(range(1, len(pairs) + 1)):
                raise UserError(f"{path}: label map ids must be 1..{len(pairs)} (0 is the background)")
            return [n for _, n in pairs]
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

