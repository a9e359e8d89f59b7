"""timm models by name (`timm:resnet50`, `timm:convnext_tiny.fb_in1k`, ...) when timm is installed.

timm is optional (`pip install 'deepvision[timm]'`); without it, a `timm:` name raises a UserError
saying how to install it. timm adapts `num_classes` and `in_chans` itself. The default input size and
preprocessing come from the model's pretrained config (input_size, mean, std, crop_pct,
interpolation). Option `pretrained: true` lets timm download its published weights when online.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import Any

from torch import nn

from deepvision.errors import UserError, suggest
from deepvision.models.registry import ModelSpec, register_provider


def import_timm() -> ModuleType:
    """The timm module, or a UserError explaining how to install it."""
    try:
        return importlib.import_module("timm")
    except ImportError:
        raise UserError("timm models need the timm package, which is not installed: "
                        "pip install timm (or pip install 'deepvision[timm]')") from None


def _cfg_value(cfg: Any, key: str, default: Any) -> Any:
    if cfg is None:
        return default
    value = cfg.get(key) if isinstance(cfg, dict) else getattr(cfg, key, None)
    return default if value is None else value


def _builder(name: str):
    def build(num_classes: int = 1000, in_channels: int = 3, pretrained: bool = False, **kwargs: Any) -> nn.Module:
        timm = import_timm()
        model = timm.create_model(name, pretrained=bool(pretrained), num_classes=num_classes, in_chans=in_channels,
                                  **kwargs)
        model.num_classes = num_classes
        return model

    build.__name__ = build.__qualname__ = f"timm_{name.replace('.', '_')}"
    build.__doc__ = f"timm {name}, adapted to num_classes and in_channels."
    return build


@functools.cache
def timm_spec(name: str) -> ModelSpec:
    """The ModelSpec of `timm:NAME` (input size and preprocessing from timm's pretrained config)."""
    timm = import_timm()
    if not timm.is_model(name):
        raise UserError(f"unknown timm model 'timm:{name}'{suggest(name, timm.list_models())}; "
                        f"`python -c \"import timm; print(timm.list_models())\"` lists them")
    get_cfg = getattr(timm, "get_pretrained_cfg", None)
    cfg = get_cfg(name) if get_cfg is not None else None
    channels, height, width = (int(v) for v in _cfg_value(cfg, "input_size", (3, 224, 224)))
    crop_pct = float(_cfg_value(cfg, "crop_pct", 0.875))
    pre = {"size": [height, width], "resize": int(round(min(height, width) / crop_pct)), "scale": 1 / 255,
           "mean": list(_cfg_value(cfg, "mean", (0.485, 0.456, 0.406))),
           "std": list(_cfg_value(cfg, "std", (0.229, 0.224, 0.225))),
           "interpolation": str(_cfg_value(cfg, "interpolation", "bilinear"))}
    classes = int(_cfg_value(cfg, "num_classes", 1000))
    return ModelSpec(f"timm:{name}", _builder(name), (channels, height, width), classes, f"timm {name}", pre)


def timm_names() -> list[str]:
    """timm's model names (the `timm:` namespace); UserError when timm is not installed."""
    return list(import_timm().list_models())


register_provider("timm", timm_spec, names=timm_names)
