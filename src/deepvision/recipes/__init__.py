"""Shipped experiment configs ("recipes"), addressable by name: `deepvision train lenet_mnist`."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from deepvision.errors import UserError, suggest
from deepvision.safeload import input_file


def recipe_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".yaml"))


def recipe_path(name: str) -> Path:
    """Path of the shipped recipe `name` (with or without .yaml)."""
    stem = name[:-5] if name.endswith(".yaml") else name
    path = Path(str(resources.files(__name__).joinpath(f"{stem}.yaml")))
    if not path.is_file():
        raise UserError(f"no config file or recipe named '{name}'{suggest(stem, recipe_names())}; "
                        f"recipes: {', '.join(recipe_names())}")
    return path


def resolve_config_arg(arg: str) -> Path:
    """A config argument is a YAML path, or else the name of a shipped recipe."""
    p = Path(arg)
    if p.is_file():
        return p
    stem = p.name[:-5] if p.name.endswith(".yaml") else p.name
    if p.parent == Path(".") and stem in recipe_names():
        return recipe_path(stem)
    if p.parent != Path(".") or p.suffix in (".yaml", ".yml") or os.path.lexists(p):
        return input_file(p, "config file")  # missing, or a FIFO or folder where the file belongs
    return recipe_path(arg)
