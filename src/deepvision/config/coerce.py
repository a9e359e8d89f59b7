"""Build typed dataclasses from plain dicts (YAML), with one-line errors for unknown keys and wrong types."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from deepvision.errors import UserError, suggest
from deepvision.safeload import is_plain_number_text


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp) if a is not type(None))
    if origin is list:
        (inner,) = get_args(tp) or (Any,)
        return f"a list of {_type_name(inner)}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Convert `value` to type `tp` or raise UserError naming `path`."""
    if tp is Any:
        return value
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        # Try the non-string alternatives first so "3" becomes 3 for `int | str`.
        for alt in sorted((a for a in args if a is not type(None)), key=lambda a: a is str):
            try:
                return _coerce(value, alt, path)
            except UserError as exc:
                errors.append(exc)
        raise UserError(f"{path} must be {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = get_args(tp)
        if value in choices:
            return value
        text = str(value)
        hint = suggest(text, map(str, choices))
        raise UserError(f"{path} must be one of {', '.join(map(str, choices))}, got {value!r}{hint}")
    if origin is list:
        (inner,) = get_args(tp) or (Any,)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise UserError(f"{path} must be {_type_name(tp)}, got {value!r}")
        return [_coerce(v, inner, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{path} must be a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise UserError(f"{path} must be a mapping of settings, got {value!r}")
        return from_dict(tp, value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off"):
            return value.lower() in ("true", "yes", "on")
        raise UserError(f"{path} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise UserError(f"{path} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and is_plain_number_text(value):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise UserError(f"{path} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise UserError(f"{path} must be a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str) and is_plain_number_text(value):  # YAML 1.1 reads `1e-3` as a string
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise UserError(f"{path} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise UserError(f"{path} must be a string, got {value!r}")
    return value


def from_dict(cls: type, data: dict[str, Any], path: str = "") -> Any:
    """Instantiate dataclass `cls` from `data`, validating keys and value types recursively."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in fields:
            valid = ", ".join(sorted(fields))
            section = f"in '{path}' " if path else ""
            raise UserError(f"unknown config key '{where}' {section}{suggest(str(key), fields)}; valid keys: {valid}")
        if isinstance(value, str) and not value.strip() and fields[key].default != "":  # `val: ''` dropped a split
            raise UserError(f"{where}: an empty value; give one, or null to leave the setting unset")
        kwargs[key] = _coerce(value, hints[key], where)
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        check(path)
    return obj


def to_dict(obj: Any) -> Any:
    """Plain-data (YAML-safe) view of a dataclass tree."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
