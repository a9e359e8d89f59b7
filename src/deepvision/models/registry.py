"""Model registry: build any network by name, like timm's `create_model`.

Hand-built reference architectures register themselves with `@register_model`. Names with the
prefix `tv:` build torchvision models and `timm:` builds timm models (when timm is installed); both
are adapted to `num_classes` and `in_channels`. A registered model may answer to other names too
(`tv:ssdlite320_mobilenet_v3_large` is the detector `ssdlite320_mobilenet_v3_large`); configs are
rewritten to the registered name when they load.
"""

from __future__ import annotations

import inspect
import math
import re
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from deepvision.config.names import register_canonical, register_check
from deepvision.errors import UserError, suggest
from deepvision.models.shapes import InputSizeError


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about a model before building it."""

    name: str
    builder: Callable[..., nn.Module]
    input_size: tuple[int, int, int]  # default (C, H, W)
    num_classes: int = 1000
    description: str = ""
    # Preprocessing the architecture expects when its own docs say so (e.g. torchvision weights).
    preprocess: dict[str, Any] = field(default_factory=dict)

    @property
    def options(self) -> list[str]:
        """Keyword options the builder accepts besides num_classes/in_channels."""
        params = inspect.signature(self.builder).parameters.values()
        return [p.name for p in params if p.name not in ("num_classes", "in_channels") and p.kind is not p.VAR_KEYWORD]

    @property
    def accepts_reference(self) -> bool:
        return "reference" in inspect.signature(self.builder).parameters


_REGISTRY: dict[str, ModelSpec] = {}
_ALIASES: dict[str, str] = {}  # other name -> registered name
_PROVIDERS: dict[str, Callable[[str], ModelSpec]] = {}  # prefix ("tv", "timm") -> spec factory
_PROVIDER_NAMES: dict[str, Callable[[], Any]] = {}  # prefix -> names it can build (for suggestions)


def register_model(
    name: str,
    *,
    input_size: tuple[int, int, int],
    num_classes: int = 1000,
    description: str = "",
    preprocess: dict[str, Any] | None = None,
    aliases: tuple[str, ...] = (),
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a builder `fn(num_classes, in_channels, **options) -> nn.Module`;
    `aliases` are other names that build the same model (e.g. `tv:NAME` for a torchvision detector)."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY or any(a in _ALIASES for a in aliases):
            raise ValueError(f"model {name!r} registered twice")
        doc = description or (inspect.getdoc(fn) or "").split("\n")[0]
        _REGISTRY[name] = ModelSpec(name, fn, tuple(input_size), num_classes, doc, dict(preprocess or {}))
        _ALIASES.update(dict.fromkeys(aliases, name))
        return fn

    return wrap


def register_provider(prefix: str, factory: Callable[[str], ModelSpec],
                      names: Callable[[], Any] | None = None) -> None:
    """Register a namespace like 'tv' whose names ('tv:resnet50') are resolved by `factory`;
    `names()` lists them for "did you mean" suggestions."""
    _PROVIDERS[prefix] = factory
    if names is not None:
        _PROVIDER_NAMES[prefix] = names


# Importing this module imports its package first, and `deepvision.models` imports every built-in
# architecture and provider: the registry is complete whenever one of these functions runs.


def list_models() -> list[str]:
    """Names of the registered (hand-built) models, sorted."""
    return sorted(_REGISTRY)


def canonical_name(name: str) -> str:
    """The registered name `name` stands for (itself unless it is an alias)."""
    return _ALIASES.get(name, name)


def model_names() -> list[str]:
    """Every name a model answers to: registered names, aliases, and each namespace's `prefix:NAME`
    (timm's only when timm is installed)."""
    names = [*_REGISTRY, *_ALIASES]
    for prefix, listing in _PROVIDER_NAMES.items():
        try:
            names += [f"{prefix}:{n}" for n in listing()]
        except UserError:  # an optional library that is not installed
            continue
    return names


def suggest_model(name: str) -> str:
    """' (did you mean: ...?)' for the model names closest to `name`, across every registry.

    Each name is compared both whole and without its namespace, so `resnet18` finds `tv:resnet18`
    and `tv:fasterrcnn_resnet50` finds `tv:fasterrcnn_resnet50_fpn`."""
    import difflib

    names = model_names()
    bare = name.partition(":")[2] or name
    scored: dict[str, float] = {}
    for candidate in names:
        tail = candidate.partition(":")[2] or candidate
        score = max(difflib.SequenceMatcher(None, name, candidate).ratio(),
                    difflib.SequenceMatcher(None, bare, tail).ratio())
        if score >= 0.6:
            scored[candidate] = max(score, scored.get(candidate, 0.0))
    # an alias and its registered name are one model: offer the spelling the user is writing
    with_prefix = ":" in name
    for alias, target in _ALIASES.items():
        if alias in scored and target in scored:
            del scored[target if with_prefix else alias]
    best = sorted(scored, key=lambda c: (-scored[c], c))[:3]
    return f" (did you mean: {', '.join(best)}?)" if best else ""


def get_model_spec(name: str) -> ModelSpec:
    """The spec for `name`; unknown names raise UserError with the closest matches in every registry."""
    name = canonical_name(name)
    if name in _REGISTRY:
        return _REGISTRY[name]
    prefix, sep, rest = name.partition(":")
    if sep:
        if prefix not in _PROVIDERS:
            raise UserError(f"unknown model namespace '{prefix}:' in '{name}'; valid namespaces: "
                            f"{', '.join(sorted(_PROVIDERS))}")
        return _PROVIDERS[prefix](rest)
    raise UserError(f"unknown model '{name}'{suggest_model(name)}; run `deepvision models` for the list "
                    f"(torchvision models are named tv:NAME, timm models timm:NAME)")


register_check("model.name", get_model_spec)
register_canonical("model.name", canonical_name)


_NUMBER = (int, float)
_LIST = (list, tuple)


def _hint(builder: Callable[..., nn.Module], option: str) -> Any:
    """The builder's evaluated type hint for `option`; Any (no claim) when it has none or it does not
    evaluate (a name only a type checker sees)."""
    try:
        param = inspect.signature(builder, eval_str=True).parameters.get(option)
    except Exception:
        return Any
    return param.annotation if param is not None else Any


def _expected_kinds(builder: Callable[..., nn.Module], option: str) -> dict[str, tuple[type, ...]]:
    """What the builder's hint for `option` admits ({"a number": ..., "a list": ...}) when it admits only
    numbers and lists (`bn_eps: float | None`, `stages: Sequence[int]`); empty when it makes no such claim."""
    hint = _hint(builder, option)
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    kinds = [k for k in (typing.get_args(hint) if union else (hint,)) if k is not type(None)]
    out: dict[str, tuple[type, ...]] = {}
    for kind in kinds:
        origin = typing.get_origin(kind) or kind
        if origin in _NUMBER:
            out["a number"] = _NUMBER
        elif isinstance(origin, type) and issubclass(origin, Sequence) and not issubclass(origin, str):
            out["a list"] = _LIST
        else:
            return {}
    return out


def refuse_own_settings(name: str, options: dict[str, Any]) -> None:
    """UserError when builder options name the class count or input channels, which a model takes from its
    own settings (given twice, Python raises a TypeError)."""
    own = next((k for k in ("num_classes", "in_channels") if k in options), None)
    if own is not None:
        raise UserError(f"model '{name}': {own} is the model's own setting, not a builder option; give it as "
                        f"model.{own} in a config (models show: --classes / --input)")


def _is_flag(builder: Callable[..., nn.Module], option: str) -> bool:
    """Whether the builder's hint for `option` admits true/false (`bool`, `bool | None`)."""
    hint = _hint(builder, option)
    return bool in {hint, *typing.get_args(hint)}


def _lists_counts(builder: Callable[..., nn.Module], option: str) -> bool:
    """Whether the builder's hint for `option` is a list of whole numbers only (`hidden: tuple[int, ...]`,
    `stages: Sequence[int]`): widths and counts, each at least 1."""
    hint = _hint(builder, option)
    origin = typing.get_origin(hint)
    items = {a for a in typing.get_args(hint) if a is not Ellipsis}
    return isinstance(origin, type) and issubclass(origin, Sequence) and items == {int}


def _plan(builder: Callable[..., nn.Module], kwargs: dict[str, Any]) -> nn.Module | None:
    """The model built on the meta device (shapes only, nothing allocated), or None for a builder that
    cannot run there (e.g. one reading values back from tensors: it is built normally)."""
    import torch

    try:
        with torch.device("meta"):
            return builder(**kwargs)
    except (InputSizeError, TypeError, ValueError):
        raise
    except Exception:
        return None


def check_parameter_bytes(planned: nn.Module, subject: str) -> None:
    """Refuse in one line a model (planned on the meta device) whose parameters and buffers would need
    more than `max_read_bytes()`: a LeNet for 8,192 x 8,192 inputs asks for 418 GB. `subject` names it."""
    from deepvision.safeload import format_bytes, max_read_bytes

    tensors = [*planned.parameters(), *planned.buffers()]
    need = sum(t.numel() * t.element_size() for t in tensors)
    ceiling = max_read_bytes()
    if need > ceiling:
        raise UserError(f"{subject} would need {format_bytes(need)} for its parameters, above the "
                        f"{format_bytes(ceiling)} this machine allows (DEEPVISION_MAX_READ_GB raises it); "
                        f"use a smaller input size")


def _published_or_meta(kwargs: dict[str, Any]) -> bool:
    import torch

    return bool(kwargs.get("weights") or kwargs.get("pretrained")) or torch.empty(()).is_meta


MAX_OPTION_ITEMS = 256  # values in one list-valued builder option (stages, filters, widths)


def create_model(
    name: str,
    num_classes: int | None = None,
    in_channels: int | None = None,
    *,
    plan: bool = True,
    **options: Any,
) -> nn.Module:
    """Build model `name`. Unknown options raise UserError listing the valid ones.

    The model is first planned on the meta device and refused when its parameters exceed the memory
    ceiling (`check_parameter_bytes`). `plan=False` skips that for a caller that has just planned and
    checked the same model itself (runs.loading, which also compares the plan with a checkpoint); a
    model built on the meta device, or with published weights (a published size), is not planned.
    """
    spec = get_model_spec(name)
    if "reference" in options and not spec.accepts_reference:
        options.pop("reference")
    valid = spec.options
    params = inspect.signature(spec.builder).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    refuse_own_settings(name, options)
    bad = [k for k in options if k not in valid and not takes_any]
    if bad:
        raise UserError(f"model '{name}' has no option '{bad[0]}'{suggest(bad[0], valid)}; "
                        f"valid options: {', '.join(valid) or 'none'}")
    long = next((k for k, v in options.items() if isinstance(v, (list, tuple)) and len(v) > MAX_OPTION_ITEMS), None)
    if long is not None:  # each item is a stage or a block to build: a long list builds for minutes
        raise UserError(f"model '{name}' option '{long}' lists {len(options[long]):,} values; a model option "
                        f"lists at most {MAX_OPTION_ITEMS}")
    small = next((k for k, v in options.items() if isinstance(v, (list, tuple)) and _lists_counts(spec.builder, k)
                  and any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in v)), None)
    if small is not None:  # widths, block and unit counts: a negative one is a torch traceback, 0 an empty layer
        raise UserError(f"model '{name}' option '{small}' must list whole numbers from 1, got {list(options[small])}")
    odd = next((k for k, v in options.items() for x in (v if isinstance(v, (list, tuple)) else [v])
                if isinstance(x, float) and not math.isfinite(x)), None)
    if odd is not None:  # bn_eps inf answers one output for every image, elu_alpha nan answers NaN
        raise UserError(f"model '{name}' option '{odd}' must be finite, got {options[odd]}")
    flag = next((k for k, v in options.items() if v is not None and not isinstance(v, bool)
                 and _is_flag(spec.builder, k)), None)
    if flag is not None:  # any text is true: `zero_init_residual: abc` was taken as true
        raise UserError(f"model '{name}' option '{flag}' must be true or false, got {options[flag]!r}")
    boolean = next((k for k, v in options.items() for x in (v if isinstance(v, (list, tuple)) else [v])
                    if isinstance(x, bool) and _expected_kinds(spec.builder, k)), None)
    if boolean is not None:  # true is 1 to Python: `input_size: [true, 28]` built a 1x28 model
        raise UserError(f"model '{name}' option '{boolean}' takes numbers, not true/false; got {options[boolean]!r}")
    kwargs: dict[str, Any] = dict(options)
    kwargs["num_classes"] = spec.num_classes if num_classes is None else num_classes
    kwargs["in_channels"] = spec.input_size[0] if in_channels is None else in_channels
    try:
        if plan and not _published_or_meta(kwargs):
            planned = _plan(spec.builder, kwargs)
            if planned is not None:
                check_parameter_bytes(planned, f"model '{name}' with these options and input size")
        return spec.builder(**kwargs)
    except InputSizeError as exc:
        raise UserError(f"{name}: {exc}") from None
    except (TypeError, ValueError, RuntimeError, AssertionError) as exc:  # torchvision asserts on its options
        for key, value in options.items():  # name a value of the wrong kind rather than Python's TypeError
            wanted = _expected_kinds(spec.builder, key)
            if value is not None and wanted and not any(isinstance(value, t) for t in wanted.values()):
                raise UserError(f"model '{name}' option '{key}' must be {' or '.join(wanted)}, got {value!r}") from None
        fixed = re.search(r"multiple values for (?:keyword )?argument '(\w+)'", str(exc))
        if fixed:  # a class option the builder sets itself (a ViT's patch_size): Python's TypeError named a helper
            raise UserError(f"model '{name}' sets its option '{fixed[1]}' itself (it defines the variant); leave it "
                            f"out or choose another variant") from None
        if "can't allocate memory" in str(exc):  # torch's allocator: past what the plan could foresee
            raise UserError(f"cannot build model '{name}' with {options or 'default options'}: its parameters do "
                            f"not fit in the memory left to this process; choose smaller options") from None
        raise UserError(f"cannot build model '{name}' with {options or 'default options'}: {exc}") from None
