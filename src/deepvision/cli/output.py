"""Printing results the way every command prints them."""

from __future__ import annotations

import json
from typing import Any


def print_top_k(results: list[Any], as_json: bool, name_width: int | None = None) -> None:
    """Top-k predictions (objects with `image`, `top` and `to_dict()`): JSON, or an image line followed
    by its ranked classes; `name_width` cuts long class names so lines fit the terminal."""
    if as_json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
        return
    for r in results:
        print(r.image)
        for rank, (name, prob) in enumerate(r.top, 1):
            print(f"  {rank}. {name[:name_width] if name_width else name}: {prob * 100:.2f}%")
