"""Names a config accepts, checked against their registries when the config loads.

The registries live in higher layers (optimizers and schedules in the engine, data sources in data,
models in models, tasks in engine.tasks); each registers its key here when imported, so this layer
imports none of them. `check_names` runs from `Config.validate`: an unknown optimizer, schedule,
source, model or task is a one-line error before any data is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from deepvision.errors import unknown

# dotted config key -> (kind for the message, names provider) or a checking function
_NAMES: dict[str, tuple[str, Callable[[], Iterable[str]]]] = {}
_CHECKS: dict[str, Callable[[str], Any]] = {}


def register_names(key: str, kind: str, names: Callable[[], Iterable[str]]) -> None:
    """Values of config key `key` (e.g. "optim.name") must be among `names()`."""
    _NAMES[key] = (kind, names)


def register_check(key: str, check: Callable[[str], Any]) -> None:
    """Values of `key` are checked by `check(value)`, which raises UserError (e.g. model names with namespaces)."""
    _CHECKS[key] = check


def choices(key: str) -> list[str]:
    """The registered names of `key` (for --help), or [] when none are registered."""
    return sorted(_NAMES[key][1]()) if key in _NAMES else []


def check_names(cfg: Any) -> None:
    for key, (kind, names) in _NAMES.items():
        value = _get(cfg, key)
        valid = list(names())
        if value is not None and valid and str(value).lower() not in valid:
            raise unknown(kind, str(value), valid)
    for key, check in _CHECKS.items():
        value = _get(cfg, key)
        if value is not None:
            check(str(value))


def _get(cfg: Any, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = getattr(node, part, None)
    return node
