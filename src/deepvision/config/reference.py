"""The configuration reference, generated from the schema (`deepvision train --help`).

Every section and key comes from the dataclasses in `config.schema`; allowed values come from
`Literal` types and from the registries (`config.names`), so the help cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import textwrap
import typing
from typing import Any, Literal, get_args, get_origin

from deepvision.config import names
from deepvision.config.schema import Config

ALIASES = {"data.format": "alias of source"}
SEE_ALSO = {"model.name": "see `deepvision models`"}


def _choices(tp: Any) -> list[str]:
    for arg in (tp, *get_args(tp)):
        if get_origin(arg) is Literal:
            return [str(a) for a in get_args(arg)]
    return []


def _keys(cls: type, prefix: str) -> list[str]:
    """'key (a|b)' entries of a dataclass; nested dataclasses as 'section.*'."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.append(f"{f.name}.*")
            continue
        values = names.choices(key) or _choices(tp)
        notes = ["|".join(values)] if values else []
        notes += [n for n in (ALIASES.get(key), SEE_ALSO.get(key)) if n]
        out.append(f"{f.name} ({'; '.join(notes)})" if notes else f.name)
    return out


def config_reference(width: int = 80) -> str:
    """'config keys' help text: one wrapped block per section, then the top-level keys."""
    hints = typing.get_type_hints(Config)
    lines = ["config keys (YAML sections; override any with --set section.key=value):"]
    top = []
    sections: list[tuple[str, list[str]]] = []
    for f in dataclasses.fields(Config):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            sections.append((f.name, _keys(tp, f"{f.name}.")))
            for sub in dataclasses.fields(tp):
                sub_tp = typing.get_type_hints(tp)[sub.name]
                if dataclasses.is_dataclass(sub_tp):
                    sections.append((f"{f.name}.{sub.name}", _keys(sub_tp, f"{f.name}.{sub.name}.")))
        else:
            top.append(_keys_of_field(f.name, tp))
    sections.append(("top level", top))
    label = max(len(s) for s, _ in sections) + 2
    for section, keys in sections:
        head = f"  {section + ':':<{label}}"
        wrapped = textwrap.wrap(", ".join(keys), width=width - len(head), break_on_hyphens=False)
        lines.append(head + wrapped[0])
        lines += [" " * len(head) + w for w in wrapped[1:]]
    return "\n".join(lines)


def _keys_of_field(name: str, tp: Any) -> str:
    values = names.choices(name) or _choices(tp)
    return f"{name} ({'|'.join(values)})" if values else name
