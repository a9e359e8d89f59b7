"""What the annotation readers share: image paths kept inside their dataset, numbers and yes/no flags
read from annotation text, bounded XML parsing, and `SPLIT=PATH` arguments."""

from __future__ import annotations

import os
import unicodedata
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from deepvision.data.detection.index import check_split_name
from deepvision.errors import UserError
from deepvision.fileio import special_kind
from deepvision.safeload import MAX_JSON_FILE_BYTES, input_file, plain_float, printable, read_bytes

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def file_problem(path: str | Path) -> str | None:
    """None for an existing regular file; else "missing" or what the path is ("a FIFO", "a directory")."""
    try:
        return special_kind(os.stat(path).st_mode)
    except (OSError, ValueError):
        return "missing"


def inside(base: Path, name: str, where: str, roots: tuple[Path, ...] = (),
           advice: str = " (or give the folder holding it with --images)") -> Path:
    """`base / name` for a path named by an annotation; refused when it would leave `base` (an absolute
    path, a drive, or '..' reaching above it), so an annotation can only name files of its dataset. A
    file that is there must also lie in one of the dataset's folders `roots` (default: `base`) once links
    are followed, so a symbolic link planted in the dataset cannot lead to a file outside it. `advice`
    ends the message of a link out."""
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise UserError(f"{where}: image path {name!r} holds a control character")
    rel = PurePosixPath(name.replace("\\", "/"))
    if not name or rel.is_absolute() or PureWindowsPath(name).drive \
            or os.path.normpath(str(rel)).split("/")[0] == "..":
        raise UserError(f"{where}: image path {name!r} is outside the dataset folder {base}; paths in "
                        f"annotations must be relative to it")
    path = base / rel
    if os.path.lexists(path):
        target = path.resolve()
        if not any(target.is_relative_to(top.resolve()) for top in roots or (base,)):
            raise UserError(f"{where}: {path} is a link to {target}, outside the dataset folder "
                            f"{(roots or (base,))[0]}; copy the file into the dataset{advice}")
    return path


def only_child(element: ET.Element, tag: str, where: str, scope: str = "one box") -> ET.Element | None:
    """`element`'s one <tag> child (None when there is none); two are refused, naming their values, since
    taking the first would drop the other without a word. `scope` names `element` ("one box")."""
    found = element.findall(tag)
    if len(found) > 1:
        values = [repr(_shown(e)[:40]) for e in found[:3]]
        shown = " and ".join(values) if len(found) == 2 else ", ".join(values) + (", ..." if len(found) > 3 else "")
        raise UserError(f"{where}: {len(found)} <{tag}> elements in {scope} ({shown}); give "
                        f"{scope.replace('one', 'each', 1)} one <{tag}>")
    return found[0] if found else None


def _shown(element: ET.Element) -> str:
    """An element's text, or for one with children (<size>) their texts: 'width=64 height=48 depth=3'."""
    if not len(element):
        return (element.text or "").strip()
    return " ".join(f"{c.tag}={(c.text or '').strip()}" if (c.text or "").strip() else f"<{c.tag}>" for c in element)


def only_text(element: ET.Element, tag: str, where: str, missing: str | None = "", scope: str = "one box"
              ) -> str | None:
    """The stripped text of `element`'s one <tag> child (`missing` when there is none); see `only_child`. A
    <tag> holding elements is refused: its text alone would be read, the nested elements dropped silently."""
    found = only_child(element, tag, where, scope)
    if found is not None and len(found):
        raise UserError(f"{where}: <{tag}> holds its value {(found.text or '').strip()[:40]!r} and an element "
                        f"<{found[0].tag}>; a value holds only text: remove the element (or close <{tag}> before it)")
    return (found.text or "").strip() if found is not None else missing


def parse_number(value: Any, where: str, what: str) -> float:
    """A number from annotation text; Python's digit separators ('3_8' is 38) are refused, not read."""
    if value is None:
        raise UserError(f"{where}: the box has no {what}")
    try:
        return plain_float(value) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: {what} {value!r} is not a number") from None


def parse_flag(value: str, where: str) -> bool:
    """An annotation's yes/no field: 1/0, true/false (any case) or empty (no); anything else is refused
    rather than guessed."""
    text = value.strip().lower()
    if text in ("", "0", "false"):
        return False
    if text in ("1", "true"):
        return True
    raise UserError(f"{where}: {value.strip()[:20]!r} is not 0, 1, true or false")


def parse_xml(path: Path) -> ET.Element:
    """The root element of an annotation XML file (2 GB at most), or a one-line UserError."""
    try:
        return ET.fromstring(read_bytes(path, "annotation file", MAX_JSON_FILE_BYTES))  # a 2 GB XML at most
    except ET.ParseError as exc:
        raise UserError(f"{path} is not valid XML ({exc})") from None
    except RecursionError:
        raise UserError(f"{path} is nested too deeply to be an annotation file") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None


def count_line(counter: Counter, limit: int = 6) -> str:
    """The `limit` most common entries of `counter` on one line: "a (3), b (1), ... (9 in all)"."""
    items = [f"{printable(name)} ({n:,})" for name, n in counter.most_common(limit)]  # tags are the file's text
    return ", ".join(items) + (f", ... ({len(counter)} in all)" if len(counter) > limit else "")


def split_files(items: list[str], default_names: dict[str, str] | None = None) -> dict[str, Path]:
    """`SPLIT=PATH` or plain `PATH` arguments -> {split: path}; plain names are mapped by their stem
    (training.xml -> train, testing.xml -> test, instances_val2017.json -> val). A split's name must be
    one its file SPLIT.json can take (`check_split_name`), refused before any file is read."""
    aliases = {"training": "train", "testing": "test", "validation": "val", "valid": "val", **(default_names or {})}
    out: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        where = printable(item)
        if not sep or os.path.exists(item):
            path, name = item, Path(item).stem
            where += " (a split named by the file's stem; SPLIT=PATH names it)"
            name = name.split("_", 1)[1] if name.startswith("instances_") else name
            name = aliases.get(name, name.rstrip("0123456789") or name)
            name = aliases.get(name, name)
        check_split_name(name, where)  # before any file is read: the name becomes the split's file
        p = input_file(path, "annotation file")
        if name in out:
            raise UserError(f"two files for split '{name}' ({out[name]} and {p}); name them SPLIT=PATH")
        out[name] = p
    return out
