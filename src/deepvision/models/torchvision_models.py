"""Every torchvision classification model by name: `tv:resnet50`, `tv:efficientnet_b0`, `tv:vit_b_16`, ...
(torchvision's detectors answer to `tv:NAME` too: they are registered in models/detection.py).

Models are built with `weights=None` and the requested `num_classes`. `in_channels` other than 3
replaces the first convolution (its weights are summed to one channel, or repeated and scaled by
3/C, as timm does), so grayscale data works with any architecture. The default input size and
preprocessing (resize, crop, ImageNet mean/std, interpolation) come from the default weights'
transform metadata: 224 for most models, 299 for inception_v3, 240-600 for the EfficientNets.

Options: `weights` loads torchvision's published weights (`DEFAULT`, a tag such as `IMAGENET1K_V2`,
or the full `ResNet50_Weights.IMAGENET1K_V2`) from torch's hub cache (`$TORCH_HOME/hub/checkpoints/`,
as torchvision resolves them), downloading them when missing and online; the file is loaded with
`weights_only=True` and the classifier is then replaced when `num_classes` differs. Any other option
is passed to the torchvision builder (e.g. `dropout`, `stochastic_depth_prob`). The options are those of
the torchvision model class, with its type hints, so a misspelt option or a value of the wrong kind is
named before anything is built; numbers are checked where torchvision takes any (a rate such as `dropout`
in [0, 1], every other number above 0: `width_mult: -1` built a model of 8-channel layers).
`tv:inception_v3` and `tv:googlenet` default to `aux_logits: false` so training gets one output tensor.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import pickle
import typing
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from deepvision.errors import UserError, suggest
from deepvision.models.registry import ModelSpec, register_provider, suggest_model
from deepvision.safeload import check_image_side, env_flag

_AUX_MODELS = ("inception_v3", "googlenet")


@functools.lru_cache(maxsize=1)
def torchvision_names() -> tuple[str, ...]:
    """Names of torchvision's classification models (the `tv:` namespace), sorted."""
    import torchvision.models

    return tuple(sorted(torchvision.models.list_models(module=torchvision.models)))


def _check_name(name: str) -> None:
    names = torchvision_names()
    if name not in names:
        raise UserError(f"unknown torchvision model 'tv:{name}'{suggest_model(f'tv:{name}')}; "
                        f"run `deepvision models --tv` for the {len(names)} classification models "
                        f"(detectors: `deepvision models`)")


def _default_entry(name: str):
    """The weights entry whose transforms describe the architecture's natural input."""
    from torchvision.models import get_model_weights

    enum = get_model_weights(name)
    if name.startswith("vit_"):  # built with weights=None, ViTs take 224 (vit_h_14's DEFAULT is 518)
        for entry in enum:
            if tuple(entry.meta.get("min_size", ())) == (224, 224):
                return entry
    return enum.DEFAULT


def weights_tag(weights: str) -> str:
    """The tag of a weights spelling: `torchvision` -> DEFAULT, `torchvision:TAG` -> TAG, `TAG` -> TAG
    (the same spellings in `model.pretrained` and on the command line's `--weights`)."""
    if weights == "torchvision":
        return "DEFAULT"
    return weights.removeprefix("torchvision:") or "DEFAULT"


def is_weights_tag(name: str, weights: str) -> bool:
    """Whether `weights` names published weights of tv model `name` (DEFAULT, a tag, Enum.TAG, any with
    the `torchvision:` prefix), rather than a file."""
    from torchvision.models import get_model_weights

    if name not in torchvision_names():
        return False
    enum = get_model_weights(name)
    tag = weights_tag(weights)
    tag = tag.split(".", 1)[1] if tag.startswith(f"{enum.__name__}.") else tag
    return tag == "DEFAULT" or tag in [e.name for e in enum]


def resolve_weights(name: str, weights: str):
    """torchvision's weights entry for `weights` ('DEFAULT', a tag, or 'Enum.TAG', each optionally written
    `torchvision:...`; `torchvision` alone is DEFAULT); UserError if unknown."""
    from torchvision.models import get_model_weights

    enum = get_model_weights(name)
    weights = weights_tag(weights)
    tag = weights.split(".", 1)[1] if weights.startswith(f"{enum.__name__}.") else weights
    if tag == "DEFAULT":
        return enum.DEFAULT
    tags = [e.name for e in enum]
    if tag not in tags:
        raise UserError(f"tv:{name} has no weights '{weights}'{suggest(tag, tags)}; "
                        f"available: DEFAULT, {', '.join(tags)}")
    return enum[tag]


def preprocess_of(entry: Any) -> dict[str, Any]:
    """The evaluation preprocessing a torchvision weights entry documents, in `Preprocess` terms."""
    t = entry.transforms()
    crop = int(t.crop_size[0])
    return {"size": [crop, crop], "resize": int(t.resize_size[0]), "scale": 1 / 255, "mean": list(t.mean),
            "std": list(t.std), "interpolation": t.interpolation.value,
            "weights": f"{type(entry).__name__}.{entry.name}"}


def replace_head(model: nn.Module, old_classes: int, num_classes: int) -> list[str]:
    """Give the classifier (the last Linear/Conv, plus auxiliary Linear heads) `num_classes` outputs.

    Returns the replaced module names; the new layers use PyTorch's default initialisation.
    """
    weighted = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not weighted:
        raise UserError(f"{type(model).__name__} has no Linear or Conv2d classifier to resize")
    last_name = weighted[-1][0]
    replaced = []
    for name, m in weighted:
        if isinstance(m, nn.Linear) and (name == last_name or m.out_features == old_classes):
            new: nn.Module = nn.Linear(m.in_features, num_classes, bias=m.bias is not None)
        elif isinstance(m, nn.Conv2d) and name == last_name:
            new = nn.Conv2d(m.in_channels, num_classes, m.kernel_size, m.stride, m.padding, bias=m.bias is not None)
        else:
            continue
        model.set_submodule(name, new.to(m.weight.device, m.weight.dtype))
        replaced.append(name)
    return replaced


@torch.no_grad()
def adapt_first_conv(model: nn.Module, in_channels: int) -> str | None:
    """Replace the first 3-channel Conv2d by one taking `in_channels`; returns its name (None if absent).

    The kernel is summed over RGB for one channel, else repeated and scaled by 3/C, which keeps the
    response to a gray image unchanged for pretrained weights.
    """
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and m.in_channels == 3 and m.groups == 1:
            new = nn.Conv2d(in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                            bias=m.bias is not None, padding_mode=m.padding_mode).to(m.weight.device, m.weight.dtype)
            new.weight.copy_(adapt_conv_weight(m.weight, in_channels))
            if m.bias is not None:
                new.bias.copy_(m.bias)
            model.set_submodule(name, new)
            if hasattr(model, "transform_input"):  # inception/googlenet's RGB re-normalisation
                model.transform_input = False
            return name
    return None


def adapt_conv_weight(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """An (O, 3, k, k) kernel adapted to (O, C, k, k): summed for C = 1, else repeated and scaled by 3/C."""
    if weight.device.type == "meta":
        return torch.empty(weight.shape[0], in_channels, *weight.shape[2:], device="meta", dtype=weight.dtype)
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-in_channels // weight.shape[1])
    return weight.repeat(1, repeats, 1, 1)[:, :in_channels] * (weight.shape[1] / in_channels)


def weights_path(entry: Any) -> Path:
    """Where torch.hub keeps (or would download) the file of a torchvision weights entry:
    `$TORCH_HOME/hub/checkpoints/<file name of the URL>` (default TORCH_HOME: ~/.cache/torch)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(entry.url).path)


def cached_weights(name: str) -> list[Any]:
    """The weights entries of tv model `name` whose files are already in torch's hub cache."""
    from torchvision.models import get_model_weights

    return [e for e in get_model_weights(name) if weights_path(e).is_file()]


def missing_weights_message(name: str, entry: Any, why: str) -> str:
    """One line: which file to place where, and which other weights of the model are cached."""
    path = weights_path(entry)
    text = (f"could not fetch {type(entry).__name__}.{entry.name} from {entry.url} ({why}); without network, "
            f"download it elsewhere and place it at {path} (or set model.pretrained to the file)")
    others = [e.name for e in cached_weights(name) if e != entry]
    if others:
        text += (f"; cached weights of tv:{name}: {', '.join(others)} (select with model.pretrained: "
                 f"torchvision:{others[0]} or --weights {others[0]})")
    return text


def fetch_weights_model(name: str, entry: Any, **kwargs: Any) -> nn.Module:
    """Build tv model `name` with torchvision's published weights `entry`.

    The file is resolved exactly as torchvision does (torch.hub's cache, `weights_path`), so it works
    offline once the file is there; otherwise it is downloaded, unless DEEPVISION_OFFLINE is set.
    torchvision's own loader calls torch.hub without `weights_only`; it is wrapped here so the file is
    unpickled with `weights_only=True`.
    """
    from unittest import mock

    import torchvision.models as tvm
    import torchvision.models._api as api

    path = weights_path(entry)
    if not path.is_file() and env_flag("DEEPVISION_OFFLINE"):
        raise UserError(missing_weights_message(name, entry, "DEEPVISION_OFFLINE is set"))
    loader = functools.partial(torch.hub.load_state_dict_from_url, weights_only=True)
    try:
        with mock.patch.object(api, "load_state_dict_from_url", loader):
            return tvm.get_model(name, weights=entry, **kwargs)
    except OSError as exc:  # URLError, socket errors, a full disk
        raise UserError(missing_weights_message(name, entry, str(exc))) from None
    except (RuntimeError, pickle.UnpicklingError, EOFError) as exc:
        if not path.is_file():
            raise
        raise UserError(f"{path} (cached {type(entry).__name__}.{entry.name}) cannot be loaded "
                        f"({str(exc).splitlines()[0]}); delete it and fetch it again") from None


def _drop_aux_heads(model: nn.Module) -> None:
    """Turn off inception_v3's / googlenet's auxiliary classifiers, so training sees one output tensor."""
    model.aux_logits = False
    for attr in ("AuxLogits", "aux1", "aux2"):
        if hasattr(model, attr):
            setattr(model, attr, None)


def _class_parameters(name: str) -> list[inspect.Parameter]:
    """The options of torchvision's model class for `name` (keyword-only, type hints evaluated), a
    `**kwargs` last when the class takes one; [] when the class cannot be read."""
    import torchvision.models as tvm

    try:
        cls = typing.get_type_hints(tvm.get_model_builder(name)).get("return")
        params = inspect.signature(cls.__init__, eval_str=True).parameters.values()
    except Exception:
        return []
    named = [p.replace(kind=p.KEYWORD_ONLY) for p in params
             if p.name not in ("self", "num_classes") and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return named + [p for p in params if p.kind is p.VAR_KEYWORD]


def check_numbers(name: str, options: dict[str, Any], params: dict[str, inspect.Parameter]) -> None:
    """Numbers torchvision takes without a check: a whole number where the class wants an int, a rate
    (dropout, drop_rate, *_prob) in [0, 1], any other number above 0."""
    for key, value in options.items():
        hint = params[key].annotation if key in params else None
        kinds = set(typing.get_args(hint)) | {hint}
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not kinds & {int, float}:
            continue
        rate = float in kinds and ("dropout" in key or key.endswith(("_rate", "_prob")))  # not DenseNet's growth_rate
        if float not in kinds and not (math.isfinite(value) and float(value).is_integer()):
            raise UserError(f"model 'tv:{name}' option '{key}' must be a whole number, got {value}")
        if float not in kinds:
            options[key] = int(value)  # YAML reads 1e3 as a float; torch sizes take ints only
        if key == "image_size":
            check_image_side(f"model 'tv:{name}' option image_size", int(value))
        if not math.isfinite(value) or (not 0 <= value <= 1 if rate else value <= 0):
            raise UserError(f"model 'tv:{name}' option '{key}' must be {'in [0, 1]' if rate else 'above 0'}, "
                            f"got {value}")


def _builder(name: str):
    def build(num_classes: int = 1000, in_channels: int = 3, weights: str | None = None, **kwargs: Any) -> nn.Module:
        from torchvision.models import get_model

        check_numbers(name, kwargs, inspect.signature(build).parameters)
        aux = kwargs.pop("aux_logits", False) if name in _AUX_MODELS else None
        if name in _AUX_MODELS and not weights:
            kwargs.setdefault("init_weights", True)
        if weights:
            entry = resolve_weights(name, str(weights))
            # torchvision builds these with their auxiliary heads when loading its weights; drop them after
            model = fetch_weights_model(name, entry, **kwargs)
            if name in _AUX_MODELS and not aux:
                _drop_aux_heads(model)
            categories = len(entry.meta["categories"])
            if num_classes != categories:
                replace_head(model, categories, num_classes)
        else:
            if aux is not None:
                kwargs["aux_logits"] = aux
            model = get_model(name, weights=None, num_classes=num_classes, **kwargs)
        if in_channels != 3:
            adapt_first_conv(model, in_channels)
        model.num_classes = num_classes
        return model

    build.__name__ = build.__qualname__ = f"tv_{name}"
    own = list(inspect.signature(build).parameters.values())[:-1]  # num_classes, in_channels, weights
    tv_params = _class_parameters(name)
    if tv_params:  # the registry reads a builder's options and their kinds from its signature
        build.__signature__ = inspect.Signature([*own, *tv_params])  # type: ignore[attr-defined]
    build.__doc__ = f"torchvision {name}, adapted to num_classes and in_channels."
    return build


@functools.cache
def torchvision_spec(name: str) -> ModelSpec:
    """The ModelSpec of `tv:NAME` (input size and preprocessing from the default weights' transforms)."""
    _check_name(name)
    entry = _default_entry(name)
    pre = preprocess_of(entry)
    size = pre["size"][0]
    return ModelSpec(f"tv:{name}", _builder(name), (3, size, size), 1000,
                     f"torchvision {name}; preprocessing of {pre['weights']}", pre)


register_provider("tv", torchvision_spec, names=torchvision_names)
