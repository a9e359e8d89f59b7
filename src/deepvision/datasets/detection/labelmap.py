"""Class lists in and out of a built dataset: a comma list, classes.txt or a TFOD label_map.pbtxt."""

from __future__ import annotations

import re
from pathlib import Path

from deepvision.errors import UserError
from deepvision.safeload import input_file, read_text_file


def label_map_text(classes: list[str]) -> str:
    return "".join(f"item {{\n  id: {i}\n  name: '{name}'\n}}\n" for i, name in enumerate(classes, 1))


def read_class_list(value: str) -> list[str]:
    """Classes from a comma list, a classes.txt (one per line) or a TFOD label_map.pbtxt (ordered by id)."""
    path = Path(value)
    if path.is_file():
        text = read_text_file(path, "class list file")
        if path.suffix in (".pbtxt", ".pbtx") or re.search(r"item\s*\{", text):
            items = re.findall(r"item\s*\{([^}]*)\}", text)
            pairs = []
            for item in items:
                ident = re.search(r"\bid\s*:\s*(\d+)", item)
                name = re.search(r"\b(?:display_)?name\s*:\s*['\"]([^'\"]*)['\"]", item)
                if not ident or not name:
                    raise UserError(f"{path}: every label map item needs an id and a name, got {item.strip()!r}")
                pairs.append((int(ident.group(1)), name.group(1)))
            pairs.sort()
            if [i for i, _ in pairs] != list(range(1, len(pairs) + 1)):
                raise UserError(f"{path}: label map ids must be 1..{len(pairs)} (0 is the background)")
            return [n for _, n in pairs]
        names = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        if path.suffix in (".txt", ".pbtxt") or "/" in value:
            input_file(path, "class list file")  # a FIFO or folder is named as such, not "not found"
        names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise UserError(f"no class names in {value!r}")
    if len(set(names)) != len(names):
        raise UserError(f"class names repeat in {value!r}")
    return names

