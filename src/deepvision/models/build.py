"""Build a run's model from its config: registry name, builder options, initial weights."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from deepvision.config.profile import model_reference
from deepvision.config.schema import Config
from deepvision.errors import UserError
from deepvision.models.registry import create_model, get_model_spec


def _size(input_size: Any) -> tuple[int, int]:
    """(H, W) from a size pair or anything with a `.size` pair (a data Preprocess)."""
    size = getattr(input_size, "size", input_size)
    return int(size[0]), int(size[1])


def model_options(cfg: Config, input_size: Any) -> dict[str, Any]:
    """Builder options: the config's model.args, plus the profile and input size when accepted."""
    spec = get_model_spec(cfg.model.name)
    opts = dict(cfg.model.args)
    params = inspect.signature(spec.builder).parameters
    if "reference" in params and "reference" not in opts:
        opts["reference"] = model_reference(cfg)
    h, w = _size(input_size)
    if "input_size" in params and "input_size" not in opts:
        opts["input_size"] = h if h == w else (h, w)
    return opts


def build_model(cfg: Config, input_size: Any, *, plan: bool = True) -> nn.Module:
    """The model named by cfg.model for inputs of `input_size` ((H, W), or a Preprocess), with
    pretrained weights when configured. `plan=False`: the caller has planned it (`plan_model`) and
    checked its size already (see `create_model`).

    `pretrained` is a weights file (only the classifier head may differ; see models/pretrained.py) or,
    for tv: models, `torchvision[:TAG]` to fetch torchvision's published weights, or for detectors
    `coco` (torchvision's COCO weights, new class head) or `imagenet` (backbone only).
    """
    from deepvision.models.detection import detection_family
    from deepvision.models.pretrained import head_modules, load_pretrained, torchvision_tag
    from deepvision.safeload import refuse_name_and_file

    opts = model_options(cfg, input_size)
    if detection_family(cfg.model.name) and cfg.model.pretrained in ("coco", "imagenet"):
        # detectors: torchvision's COCO weights with a new class head, or ImageNet weights for the backbone only
        refuse_name_and_file(cfg.model.pretrained, "a detector weights keyword", "or rename it", folders=False)
        opts["weights"] = cfg.model.pretrained
        return create_model(cfg.model.name, cfg.model.num_classes, cfg.model.in_channels, plan=plan, **opts)
    tag = torchvision_tag(cfg.model.name, cfg.model.pretrained)
    if tag:
        opts.setdefault("weights", tag)
    model = create_model(cfg.model.name, cfg.model.num_classes, cfg.model.in_channels, plan=plan, **opts)
    if tag and cfg.model.num_classes not in (None, get_model_spec(cfg.model.name).num_classes):
        init_head(model, head_modules(model))  # torchvision's weights with a new classifier
    if cfg.model.pretrained and not tag:
        report = load_pretrained(model, cfg.model.pretrained, cfg.model.name)
        model.pretrained_report = report  # type: ignore[attr-defined]
        fresh = {k.rsplit(".", 1)[0] for k in report["missing"]}
        init_head(model, [h for h in head_modules(model) if h in fresh])
    return model


def plan_model(cfg: Config, input_size: Any) -> nn.Module | None:
    """`build_model` on the meta device (shapes only, nothing allocated); None for a model that is not
    planned: configured pretrained weights (a published size), or a builder that computes with real
    tensors (it is built normally). The caller checks the plan (`registry.check_parameter_bytes`)
    and then builds with `plan=False`."""
    import torch

    if cfg.model.pretrained:
        return None
    try:
        with torch.device("meta"):
            return build_model(cfg, input_size, plan=False)
    except UserError:
        raise
    except Exception:
        return None


def init_head(model: nn.Module, names: list[str]) -> None:
    """Xavier-initialise a new classifier head (weights uniform, biases zero), as the reference's
    network surgery did (docs/transfer.md)."""
    modules = dict(model.named_modules())
    for name in names:
        m = modules[name]
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
