"""Shipped experiment configs ("recipes"), addressable by name: `deepvision train lenet_mnist`."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from deepvision.errors import UserError, suggest
from deepvision.safeload import input_file, refuse_name_and_file, shell_word


def recipe_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".yaml"))


def recipe_path(name: str) -> Path:
    """Path of the shipped recipe `name` (with or without .yaml): a recipe's name, never a path."""
    stem = name[:-5] if name.endswith(".yaml") else name
    if stem not in recipe_names():  # "../x" names no recipe: nothing outside the recipes is read
        raise _unknown(name, "recipe")
    return Path(str(resources.files(__name__).joinpath(f"{stem}.yaml")))


def show_recipe_path(name: str) -> Path:
    """The recipe `deepvision recipes show NAME` prints: a shipped recipe's name; an existing file or folder
    of that name is named as one (the command shows recipes only), not called missing."""
    stem = name[:-5] if name.endswith(".yaml") else name
    if stem not in recipe_names() and os.path.lexists(name):
        word = shell_word(name)
        hint = "" if os.path.isdir(name) else f" (see a config file with `cat {word}` or `deepvision data info {word}`)"
        raise UserError(f"recipes show prints a shipped recipe by name; {name} is a "
                        f"{'folder' if hint == '' else 'file'} of your own, not a recipe{hint}")
    return recipe_path(name)


def _unknown(name: str, what: str) -> UserError:
    stem = name[:-5] if name.endswith(".yaml") else name
    return UserError(f"no {what} named '{name}'{suggest(stem, recipe_names())}; recipes: {', '.join(recipe_names())}")


def resolve_config_arg(arg: str) -> Path:
    """A config argument is a YAML path, or else the name of a shipped recipe. A bare recipe name (no
    folder, no .yaml) that is also a file here is refused: which one was meant, the name does not say."""
    p = Path(arg)
    if arg in recipe_names():
        refuse_name_and_file(arg, "a shipped recipe", "or rename it to use the recipe")
    if p.is_file():
        return p
    stem = p.name[:-5] if p.name.endswith(".yaml") else p.name
    if p.parent == Path(".") and stem in recipe_names():
        return recipe_path(stem)
    if p.parent != Path(".") or p.suffix in (".yaml", ".yml") or os.path.lexists(p):
        return input_file(p, "config file")  # missing, or a FIFO or folder where the file belongs
    raise _unknown(arg, "config file or recipe")
