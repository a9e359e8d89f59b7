"""Printing results the way every command prints them."""

from __future__ import annotations

import json
from typing import Any

from deepvision.safeload import printable


def progress_bar(*columns: Any) -> Any:
    """A transient rich progress bar (its default columns, or `columns`) that draws only on a terminal:
    piped or redirected, rich would still end the bar with an empty line, before a refusal too."""
    import sys

    from rich.progress import Progress

    return Progress(*(columns or Progress.get_default_columns()), transient=True, disable=not sys.stdout.isatty())


def shown(text: object) -> str:
    """A path or name as the CLI prints it: control characters escaped ('a\\x1b[31m', 'b\\nc'), so a file
    name cannot clear the screen, colour the output or pass for two lines."""
    return printable(text)


def shorten_name(name: str, width: int) -> str:
    """`name` in at most `width` characters, cut after a whole synonym ('n03977966 police van, police
    wagon, ...') or word, never inside one."""
    if len(name) <= width:
        return name
    room = width - len(", ...")
    cut = name.rfind(", ", 0, room + 1)
    if cut > 0:
        return name[:cut] + ", ..."
    cut = name.rfind(" ", 0, width - len(" ...") + 1)
    return name[:cut] + " ..." if cut > 0 else name[: width - 3] + "..."


def print_top_k(results: list[Any], as_json: bool, name_width: int | None = None) -> None:
    """Top-k predictions (objects with `image`, `top` and `to_dict()`): JSON, or an image line followed
    by its ranked classes; `name_width` shortens long class names (at a synonym or word) so lines fit
    the terminal."""
    if as_json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
        return
    for r in results:
        print(shown(r.image))
        for rank, (name, prob) in enumerate(r.top, 1):
            name = shown(name)
            print(f"  {rank}. {shorten_name(name, name_width) if name_width else name}: {prob * 100:.2f}%")


MAX_WORD = 200  # a path or value in an error message longer than this is cut short
MAX_MESSAGE = 1000


def clip_message(message: str) -> str:
    """An error message fit for one line: every run of non-space characters longer than MAX_WORD (a
    50 MB config value quoted back, say) is cut to its first characters and '...', and the whole
    message to MAX_MESSAGE characters."""
    words = [w if len(w) <= MAX_WORD else w[: MAX_WORD - 3] + "..." for w in message.split(" ")]
    text = " ".join(words)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."
