"""Build a run's model from its config, and load weights into it with clear errors."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from deepvision.config.schema import Config
from deepvision.data.preprocess import Preprocess
from deepvision.errors import UserError
from deepvision.models.registry import create_model, get_model_spec


def model_options(cfg: Config, pre: Preprocess) -> dict[str, Any]:
    """Builder options: the config's model.args, plus the profile and input size when accepted."""
    spec = get_model_spec(cfg.model.name)
    opts = dict(cfg.model.args)
    params = inspect.signature(spec.builder).parameters
    if "reference" in params and "reference" not in opts:
        opts["reference"] = cfg.profile == "reference"
    if "input_size" in params and "input_size" not in opts:
        opts["input_size"] = pre.size[0] if pre.size[0] == pre.size[1] else tuple(pre.size)
    return opts


def build_model(cfg: Config, pre: Preprocess) -> nn.Module:
    """The model named by cfg.model, adapted to the data, with pretrained weights when configured.

    `pretrained` is a weights file (only the classifier head may differ; see models/pretrained.py) or,
    for tv: models, `torchvision[:TAG]` to fetch torchvision's published weights, or for detectors
    `coco` (torchvision's COCO weights, new class head) or `imagenet` (backbone only).
    """
    from deepvision.models.detection import detection_family
    from deepvision.models.pretrained import load_pretrained, torchvision_tag

    opts = model_options(cfg, pre)
    if detection_family(cfg.model.name) and cfg.model.pretrained in ("coco", "imagenet"):
        # detectors: torchvision's COCO weights, or ImageNet weights for the backbone only
        opts["weights"] = cfg.model.pretrained
        return create_model(cfg.model.name, cfg.model.num_classes, cfg.model.in_channels, **opts)
    tag = torchvision_tag(cfg.model.name, cfg.model.pretrained)
    if tag:
        opts.setdefault("weights", tag)
    model = create_model(cfg.model.name, cfg.model.num_classes, cfg.model.in_channels, **opts)
    if cfg.model.pretrained and not tag:
        report = load_pretrained(model, cfg.model.pretrained, cfg.model.name)
        model.pretrained_report = report  # type: ignore[attr-defined]
    return model


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], strict: bool = True,
                 source: str = "weights") -> dict[str, list[str]]:
    """Load `state` into `model`.

    Shape mismatches are always an error (naming the first few). With strict=False, keys missing on
    either side are reported (e.g. a new classifier head) instead of failing.
    """
    own = model.state_dict()
    state = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()}
    mismatched = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
                  if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if mismatched and strict:
        raise UserError(f"{source} do not fit this model: {len(mismatched)} tensors differ in shape "
                        f"(first: {'; '.join(mismatched[:2])}); they come from another architecture or class count")
    if strict and (missing or unexpected):
        raise UserError(f"{source} do not fit this model: {len(missing)} missing keys (e.g. {missing[:2]}), "
                        f"{len(unexpected)} unexpected (e.g. {unexpected[:2]}); they come from another architecture")
    if not strict and len(missing) == len(own):
        raise UserError(f"{source} share no parameter names with this model; they come from another architecture")
    filtered = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(filtered, strict=False)
    return {"missing": missing + [m.split()[0] for m in mismatched], "unexpected": unexpected,
            "mismatched": mismatched}
