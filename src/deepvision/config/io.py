"""Load, override and save experiment configs (YAML)."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from deepvision.config.coerce import from_dict, to_dict
from deepvision.config.schema import OPTIM_READ_BY, SCHEDULE_READ_BY, Config, augment_unread
from deepvision.errors import UserError
from deepvision.safeload import (
    MAX_YAML_FILE_BYTES,
    ParseError,
    SafeLoader,
    input_file,
    load_yaml,
    printable,
    read_bytes,
    shown_value,
)


class Loader(SafeLoader):
    """YAML with YAML 1.2 scalars: only true/false are booleans (so `amp: off` and `name: yes` stay
    strings), dates stay strings, and `1e-3` is a number; nesting and alias expansion bounded
    (deepvision.safeload)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    """A mapping that refuses a key given twice (PyYAML keeps the last one silently). Keys brought in
    by a '<<' merge may be overridden, as YAML intends."""
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.setdefault(key, key_node)
        except TypeError:  # an unhashable key: the base constructor reports it
            continue
        if first is not key_node:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}' (first given on line {first.start_mark.line + 1}); "
                            f"keep one of them", key_node.start_mark)
    return loader.construct_mapping(node, deep=True)


Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
Loader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                             list("tTfF"))
Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                             re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def load_yaml_text(text: str, source: str | None = None) -> Any:
    """Parse config YAML (plain data only, bounded); ParseError for bad syntax, LimitError past a limit."""
    return load_yaml(text, source, Loader)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with one-line errors for a missing file or bad syntax."""
    path = input_file(path, "config file")  # a FIFO is named as one, never opened
    raw = read_bytes(path, "config file", MAX_YAML_FILE_BYTES)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text file; give a YAML experiment config") from None
    data = load_yaml_text(raw, str(path))
    if data is not None and not isinstance(data, dict):
        raise UserError(f"{path} must hold a mapping of settings at the top level")
    if not data:  # an empty file (a save cut short) would train the defaults as if they were the experiment
        raise UserError(f"{path} sets nothing; an experiment config names at least its model and data (the "
                        f"shipped recipes: deepvision recipes)")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """'optim.lr=1e-3' -> (['optim', 'lr'], 0.001). Values are parsed as YAML scalars/lists."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise UserError(f"--set expects key=value with a dotted key, e.g. optim.lr=0.01; got {text!r}")
    try:
        value = load_yaml_text(raw, f"--set {key}") if raw.strip() else ""
    except ParseError:
        value = raw
    if isinstance(value, str) and not value.strip():  # a script's `--set data.val=$VAL` with VAL unset
        raise UserError(f"--set {printable(key)}: an empty value; give one, or null to leave the setting unset")
    return key.split("."), value


def override_list(overrides: str | Iterable[str] | None) -> list[str]:
    """The overrides as a list of 'key=value' strings: one string is one override (as `--set` takes
    one, and as `api.predict` takes one path), never its characters; anything but strings is refused."""
    if overrides is None:
        return []
    if isinstance(overrides, str):
        return [overrides]
    if not isinstance(overrides, Iterable) or isinstance(overrides, (bytes, dict)):
        raise UserError(f"overrides must be 'key=value' strings (one, or a list of them), got "
                        f"{type(overrides).__name__}")
    items = list(overrides)
    for item in items:
        if not isinstance(item, str):
            shown = f"{item!r} (an int)" if isinstance(item, int) and not isinstance(item, bool) else shown_value(item)
            raise UserError(f"overrides must be 'key=value' strings, e.g. 'optim.lr=0.01'; got {shown}")
    return items


def _leaves(keys: list[str], value: Any) -> Iterator[tuple[list[str], Any]]:
    """A mapping value sets the keys it names, as dotted keys would (`train={epochs: 2}` is `train.epochs=2`);
    an empty mapping empties the section."""
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _leaves([*keys, str(k)], v)
    else:
        yield keys, value


def override_keys(overrides: str | Iterable[str] | None) -> list[str]:
    """The dotted keys the overrides set, a mapping's keys spelled out (`optim={lr: 0.1}` sets `optim.lr`)."""
    return [".".join(keys) for text in override_list(overrides) for keys, _ in _leaves(*parse_override(text))]


def apply_overrides(data: dict[str, Any], overrides: str | Iterable[str] | None) -> dict[str, Any]:
    """Return a copy of `data` with each 'a.b.c=value' override applied; one key given two values is refused."""
    data = copy.deepcopy(data)
    given: dict[str, tuple[str, Any]] = {}
    for text in override_list(overrides):
        for keys, value in _leaves(*parse_override(text)):
            key = ".".join(keys)
            earlier = given.get(key) or next((given[g] for g in given if g.startswith(key + ".")), None)
            if earlier is not None and (earlier[1] != value or key not in given):  # the last one won without a word
                raise UserError(f"--set {key} is given twice ({earlier[0]!r}, then {text!r}); give it once")
            given[key] = (text, value)
            node = data
            for k in keys[:-1]:
                child = node.get(k)
                if child is None:
                    child = node[k] = {}
                if not isinstance(child, dict):
                    raise UserError(f"--set {text}: '{k}' is not a section")
                node = child
            node[keys[-1]] = value
    _leave_out_replaced_options(data, set(given))
    return data


def _leave_out_replaced_options(data: dict[str, Any], given: set[str]) -> None:
    """An override that names another schedule or optimizer (or switches augmentation) installs it: the options
    the config gave for the one it replaces (a recipe's piecewise ranges, SGD's momentum) are left out, not kept
    unread; an unread option given by an override itself stays, to be refused when training starts."""
    for section, read_by in (("schedule", SCHEDULE_READ_BY), ("optim", OPTIM_READ_BY)):
        part = data.get(section)
        if f"{section}.name" in given and isinstance(part, dict):
            name = str(part.get("name", "")).lower()
            for key in [k for k, readers in read_by.items() if name not in readers]:
                if f"{section}.{key}" not in given:
                    part.pop(key, None)
    aug = data.get("data", {}).get("augment") if isinstance(data.get("data"), dict) else None
    if isinstance(aug, dict) and any(k.startswith("data.augment.") for k in given):
        for key in augment_unread(aug):
            if f"data.augment.{key}" not in given:
                aug.pop(key, None)


def build_config(data: dict[str, Any], overrides: str | Iterable[str] | None = None) -> Config:
    """Validate a config mapping (plus overrides) into a Config."""
    return from_dict(Config, apply_overrides(data, overrides))


def load_config(path: str | Path, overrides: str | Iterable[str] | None = None) -> Config:
    """Read a YAML config file, apply `overrides`, validate."""
    return build_config(read_yaml(path), overrides)


class _Dumper(yaml.SafeDumper):
    """Block style for sections, flow style for short lists of scalars ([0.9, 0.999])."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(not isinstance(v, (dict, list)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def config_to_yaml(cfg: Config) -> str:
    return yaml.dump(to_dict(cfg), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)


def model_change(before: Config, after: Config) -> tuple[str, str, str] | None:
    """The first key of the model section that differs between two configs and its two values as shown,
    ("model.args.activation", "unset", "relu"); None when the sections are equal. A checkpoint's weights
    mean what they mean only under the model section they were trained with."""
    ours, theirs = flat_settings(to_dict(before)["model"]), flat_settings(to_dict(after)["model"])
    changed = [k for k in sorted(set(ours) | set(theirs)) if ours.get(k) != theirs.get(k)]
    if not changed:
        return None
    show = lambda v: "unset" if v is None else printable(str(v))[:40]
    return f"model.{changed[0]}", show(ours.get(changed[0])), show(theirs.get(changed[0]))


SPLIT_SETTINGS = ("val", "test", "val_fraction", "test_fraction", "split_seed")  # what draws the held-out splits


def split_change(before: Config, after: Config) -> tuple[str, str, str] | None:
    """The first data setting that draws the held-out splits (or, last, data.max_samples, which limits them)
    and differs between two configs, with its two values as shown ("data.split_seed", "42", "7"); None when
    they agree. data.val and data.test compare as given or unset: their paths may move with the data."""
    for key in (*SPLIT_SETTINGS, "max_samples"):
        old, new = getattr(before.data, key), getattr(after.data, key)
        if key in ("val", "test"):
            old, new = ("unset" if v is None else "given" for v in (old, new))
        if new != old:
            return f"data.{key}", "unset" if old is None else str(old), "unset" if new is None else str(new)
    return None


def refuse_flag_with_override(flag: str, key: str, value: str, overrides: str | Iterable[str] | None) -> None:
    """Refuse a command-line `flag` that sets `key` to `value` (spelt as --set takes it) given together with a
    --set that gives `key` another value: which of the two holds, the command line does not say."""
    wanted = parse_override(f"{key}={value}")[1]
    for text in override_list(overrides):
        for keys, given in _leaves(*parse_override(text)):
            if ".".join(keys) == key and given != wanted:
                raise UserError(f"{flag} and --set {printable(text)[:80]} give {key} two values; give one")


def flat_settings(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Settings by dotted key ("model.args.width"), tuples as lists, so two configs compare key by key; an
    empty mapping adds no key (`args: {}` holds no setting)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flat_settings(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = _as_lists(value)
    return out


def _as_lists(value: Any) -> Any:
    return [_as_lists(v) for v in value] if isinstance(value, (list, tuple)) else value
