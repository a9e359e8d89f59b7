"""Names a config accepts, checked against their registries when the config loads.

The registries live in higher layers (optimizers and schedules in the engine, data sources in data,
models in models, tasks in engine.tasks); each registers its key here when imported, so this layer
imports none of them. `check_names` runs from `Config.validate`: an unknown optimizer, schedule,
source, model or task is a one-line error before any data is read. A registry may also rewrite a
value to its canonical spelling (`register_canonical`) and infer values a config leaves at their
default (`register_inference`: a detector trained on a detection source is the detection task).
A data source declares the `data.options` keys it reads (`register_source_options`); a new run refuses
any other key (`check_source_options`), so a misspelt one is never ignored without a word, while the
stored configs of earlier runs stay readable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from deepvision.errors import UserError, suggest, unknown

# dotted config key -> (kind for the message, names provider) or a checking function
_NAMES: dict[str, tuple[str, Callable[[], Iterable[str]]]] = {}
_CHECKS: dict[str, Callable[[str], Any]] = {}
_CANONICAL: dict[str, Callable[[str], str]] = {}
_INFERENCES: list[Callable[[Any], None]] = []
_SOURCE_OPTIONS: dict[str, tuple[str, ...]] = {}  # data.source -> the data.options keys it reads


def register_names(key: str, kind: str, names: Callable[[], Iterable[str]]) -> None:
    """Values of config key `key` (e.g. "optim.name") must be among `names()`."""
    _NAMES[key] = (kind, names)


def register_check(key: str, check: Callable[[str], Any]) -> None:
    """Values of `key` are checked by `check(value)`, which raises UserError (e.g. model names with namespaces)."""
    _CHECKS[key] = check


def register_canonical(key: str, canonical: Callable[[str], str]) -> None:
    """Values of `key` are rewritten to `canonical(value)` once checked (e.g. a model alias to its name)."""
    _CANONICAL[key] = canonical


def register_inference(infer: Callable[[Any], None]) -> None:
    """`infer(cfg)` fills in what the rest of a checked config implies (it may change cfg in place)."""
    _INFERENCES.append(infer)


def register_source_options(source: str, keys: Iterable[str]) -> None:
    """`data.source: source` reads exactly the `data.options` keys `keys`."""
    _SOURCE_OPTIONS[source] = tuple(keys)


def source_option_keys(source: str, options: dict[str, Any]) -> tuple[str, ...]:
    """The `data.options` keys `source` reads (all of `options` for a source that declares none)."""
    return _SOURCE_OPTIONS.get(source, tuple(options))


def check_source_options(data: Any) -> None:
    """Refuse a `data.options` key that the config's data source does not read."""
    valid = source_option_keys(data.source, data.options)
    for key in data.options:
        if key not in valid:
            raise UserError(f"data.options.{key} is not an option of the {data.source} source"
                            f"{suggest(key, valid)}; valid: {', '.join(valid) or 'none'}")


def choices(key: str) -> list[str]:
    """The registered names of `key` (for --help), or [] when none are registered."""
    return sorted(_NAMES[key][1]()) if key in _NAMES else []


def check_names(cfg: Any) -> None:
    for key, check in _CHECKS.items():
        value = _get(cfg, key)
        if value is not None:
            check(str(value))
            if key in _CANONICAL:
                _set(cfg, key, _CANONICAL[key](str(value)))
    for infer in _INFERENCES:
        infer(cfg)
    for key, (kind, names) in _NAMES.items():
        value = _get(cfg, key)
        valid = list(names())
        if value is not None and valid and str(value).lower() not in valid:
            raise unknown(kind, str(value), valid)


def _get(cfg: Any, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = getattr(node, part, None)
    return node


def _set(cfg: Any, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = cfg
    for part in parents:
        node = getattr(node, part)
    setattr(node, last, value)
